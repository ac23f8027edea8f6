/**
 * The records of a certificate (SPEC.md §12.2 step 3): every strict DAG-CBOR map with a `kind`
 * is a record and must pass §5 as a record of this federation; the fold of them is the fold every
 * node runs, with the options of the file's mode (docs/adr/0020, 0021). List blocks, state-root
 * nodes and raw blocks are not records: they are checked as members of the file's block set.
 */
import type { CID } from 'multiformats/cid'
import { DAG_CBOR_CODE, decodeStrict, GENESIS_SCAN_LIMITS } from '../cbor.js'
import { cidKey } from '../cid.js'
import { type Block, type BlockSource, type ListEntry, readList } from '../cidlist.js'
import type { Ed25519Backend } from '../ed25519.js'
import { createFold, type Fold } from '../fold/index.js'
import { type AnyVerified, attachLists, decodeRecord, type Verified, withSealLists } from '../record.js'
import { ok, type Result } from '../result.js'
import { isPlainMap } from '../schema.js'
import type { CidList } from '../types.js'
import type { Findings } from './findings.js'
import type { CertificateHeader, TrustedHead } from './format.js'

/** Codes of fold reports that mean a record waits for a block the file should hold. */
const WAITING_FOR_A_BLOCK: ReadonlySet<string> = new Set([
  'record-unknown',
  'proposal-unknown',
  'basis-unknown',
  'manifest-unknown',
  'seal-list-pending',
])

export interface RecordsInput {
  readonly blocks: ReadonlyMap<string, Block>
  readonly header: CertificateHeader
  readonly headerKey: string
  readonly genesis: Verified<'genesis'>
  /** The trusted head a `since` file continues from. */
  readonly anchor: TrustedHead | undefined
  readonly ed25519: Ed25519Backend | undefined
}

/** The fold of every record in the file; each record that cannot count or waits for a block is a problem. */
export function foldRecords(input: RecordsInput, findings: Findings): Fold {
  const { header, anchor } = input
  const fold = createFold(input.genesis, {
    ...(header.mode === 'compact' ? { declaredGovernanceSeals: true } : {}),
    ...(anchor ? { anchor: { head: anchor.head, state: anchor.state } } : {}),
  })
  const lists = listReader((cid: CID) => input.blocks.get(cidKey(cid))?.bytes)
  for (const [key, block] of input.blocks) {
    if (key === input.headerKey || key === input.genesis.key || !beginsWithMap(block)) continue
    const decoded = decodeRecord(block.bytes, {
      federation: input.header.federation,
      // The block matched its CID when the file was read: its digest is the record's hash.
      sha256: () => block.cid.multihash.digest,
      ...(input.ed25519 ? { ed25519: input.ed25519 } : {}),
    })
    if (decoded.ok) {
      const record = applicableRecord(decoded.value, input, lists, findings)
      if (record) fold.add(record)
    } else if (isRecord(block)) {
      const message = `block ${block.cid} is not a valid record of this federation (${decoded.code}): ${decoded.message}`
      findings.add('cert-record-invalid', message, key)
    }
  }
  for (const record of fold.records()) {
    const report = fold.report(record.key)
    if (report?.status === 'pending' && WAITING_FOR_A_BLOCK.has(report.code)) {
      const message = `${record.record.kind} ${record.cid} waits for a block the certificate lacks (${report.code})`
      findings.add('cert-block-missing', message, record.key)
    }
  }
  return fold
}

/** A DAG-CBOR block whose first byte begins a map (CBOR major type 5): only such a block can be a record. */
function beginsWithMap(block: Block): boolean {
  return block.cid.code === DAG_CBOR_CODE && block.bytes.length > 0 && (block.bytes[0]! & 0xe0) === 0xa0
}

/**
 * A record (valid or not) is a strict DAG-CBOR map, read under a genesis's limits, with a `kind`
 * key. Other maps — the proof's root block, a header, junk — are no records: the file's block set
 * decides about them (SPEC.md §12.1).
 */
function isRecord(block: Block): boolean {
  const decoded = decodeStrict(block.bytes, GENESIS_SCAN_LIMITS)
  return decoded.ok && isPlainMap(decoded.value) && Object.hasOwn(decoded.value, 'kind')
}

/** The record with its lists read from the file; undefined (and a problem) when it cannot count. */
function applicableRecord(
  record: AnyVerified,
  input: RecordsInput,
  lists: ListReader,
  findings: Findings,
): AnyVerified | undefined {
  if ((record.record as { v: unknown }).v !== 1) {
    const message = `record ${record.cid} is of a protocol version this verifier cannot apply: upgrade the verifier`
    findings.add('cert-version-unsupported', message, record.key)
    return undefined
  }
  const listed = withLists(record, lists)
  if (listed.ok) return listed.value
  // A compact file holds the seals of governance steps without their lists; the fold says
  // whether such a seal may go without them (any other waits, and is reported missing).
  if (
    listed.code === 'list-block-missing' &&
    input.header.mode === 'compact' &&
    record.record.kind === 'seal'
  )
    return record
  findings.add(
    listed.code === 'list-block-missing' ? 'cert-block-missing' : 'cert-record-invalid',
    `the lists of ${record.record.kind} ${record.cid} cannot be read (${listed.code}): ${listed.message}`,
    record.key,
  )
  return undefined
}

/** The file's blocks, and its lists read once each: the t seals of a decision usually name the same lists. */
interface ListReader {
  readonly source: BlockSource
  read(list: CidList): Result<readonly ListEntry[]>
}

function listReader(source: BlockSource): ListReader {
  const read = new Map<string, Result<readonly ListEntry[]>>()
  return {
    source,
    read(list) {
      const key = `${cidKey(list.root)}|${list.count}`
      let entries = read.get(key)
      if (!entries) {
        entries = readList(list, source)
        read.set(key, entries)
      }
      return entries
    },
  }
}

/** A seal or checkpoint with its lists read from the file, as `attachLists` does. */
function withLists(record: AnyVerified, lists: ListReader): Result<AnyVerified> {
  if (record.record.kind !== 'seal') return attachLists(record, lists.source)
  const seal = record as Verified<'seal'>
  const votes = lists.read(seal.record.body.votes)
  if (!votes.ok) return { ...votes, path: 'body.votes' }
  const attestations = lists.read(seal.record.body.attestations)
  if (!attestations.ok) return { ...attestations, path: 'body.attestations' }
  return ok(withSealLists(seal, { votes: votes.value as CID[], attestations: attestations.value as CID[] }))
}
