/**
 * Exporting a certificate (SPEC.md §12.1) from a node's fold: the blocks of contents.ts for the
 * mode asked for, in the canonical order, behind a version 2 header. Deterministic: two nodes
 * holding the same records write the same bytes (docs/adr/0020). A `since` certificate is written
 * only when it verifies from that head; otherwise the chain starts at the genesis and the export
 * says why (docs/adr/0021).
 */
import * as CarBufferWriter from '@ipld/car/buffer-writer'
import type { CID } from 'multiformats/cid'
import { checkpointFor } from '../checkpoint.js'
import { cidKey } from '../cid.js'
import type { Block } from '../cidlist.js'
import { createFold, type Fold } from '../fold/index.js'
import { applyAction, type GovState, genesisState } from '../govstate.js'
import { type AnyVerified, attachLists, decodeOwnRecord, type Verified } from '../record.js'
import { type MapValue, proveKey, verifyProof } from '../stateroot.js'
import { type Contents, collectContents } from './contents.js'
import {
  type BuildCertificateOptions,
  type CertificateExport,
  type CertificateMode,
  MAX_CERTIFICATE_BYTES,
  STATUS_PROBLEMS,
  type TrustedHead,
} from './format.js'
import { headerBlock } from './header.js'
import { verifyCertificate } from './verify.js'

/** The certificate for `model` (name@version) under the fold's newest counted checkpoint. */
export function buildCertificate(
  fold: Fold,
  model: string,
  options: BuildCertificateOptions = {},
): Uint8Array {
  return exportCertificate(fold, model, options).bytes
}

/**
 * The certificate and what it is: its mode, where its chain starts, and why a `since` asked for
 * was not used. Throws when nothing can be certified yet, or when the file would exceed the cap.
 */
export function exportCertificate(
  fold: Fold,
  model: string,
  options: BuildCertificateOptions = {},
): CertificateExport {
  const mode = options.mode ?? 'compact'
  const proven = provenEntry(fold, model)
  let sinceRefused: string | undefined
  if (options.since) {
    const attempt = sinceExport(fold, model, mode, options.since, proven)
    if ('bytes' in attempt) return capped({ bytes: attempt.bytes, mode, since: options.since }, options)
    sinceRefused = attempt.refused
  }
  const bytes = writeCertificate(fold, model, mode, null, proven)
  return capped({ bytes, mode, since: null, ...(sinceRefused ? { sinceRefused } : {}) }, options)
}

interface ProvenEntry {
  readonly entry: MapValue | null
  readonly proof: readonly Block[]
}

/** The model's proof under the newest counted checkpoint's root, rebuilt (it is deterministic). */
function provenEntry(fold: Fold, model: string): ProvenEntry {
  const state = fold.state()
  const newest = state.checkpoint
  if (!newest)
    throw new Error(
      'no checkpoint has been counted yet: a certificate needs one signed by the seal threshold of stewards',
    )
  const content = checkpointFor(state, newest.epoch)
  if (!content.root.root.equals(newest.stateRoot))
    throw new Error(
      'this node cannot rebuild the checkpointed state root; it may lack records the checkpoint covers',
    )
  const proof = proveKey(content.root, model)
  const read = verifyProof(newest.stateRoot, model, proof)
  return { entry: read.ok ? read.value.value : null, proof }
}

function capped(made: CertificateExport, options: BuildCertificateOptions): CertificateExport {
  const cap = options.maxBytes ?? MAX_CERTIFICATE_BYTES
  if (made.bytes.length <= cap) return made
  const error = new Error(
    `the certificate would be ${made.bytes.length} bytes, over the cap of ${cap}: export it --since a head the verifier already trusts`,
  )
  throw Object.assign(error, { code: 'cert-too-large' })
}

/**
 * The blocks of the certificate, as the verifier will find them: collected from the node's fold,
 * then again from the fold of the collected records alone, until nothing changes (a node knows
 * more than the file, e.g. auditors admitted after the checkpoint's head).
 */
function writeCertificate(
  fold: Fold,
  model: string,
  mode: CertificateMode,
  since: TrustedHead | null,
  proven: ProvenEntry,
): Uint8Array {
  const request = { mode, since: since?.head ?? null, ...proven }
  let contents = collectContents({ fold, ...request })
  for (let round = 0; round < 4; round++) {
    const again = collectContents({ fold: foldOfContents(fold, contents, mode, since), ...request })
    if (sameKeys(again, contents)) return carOf(fold, model, mode, since?.head ?? null, contents)
    contents = again
  }
  throw new Error('the certificate’s blocks do not settle: its records fold differently alone')
}

/** The fold a verifier makes of these records: bare seals without lists, the options of the mode. */
function foldOfContents(
  fold: Fold,
  contents: Contents,
  mode: CertificateMode,
  since: TrustedHead | null,
): Fold {
  const state = fold.state()
  const fileFold = createFold(state.genesis, {
    ...(mode === 'compact' ? { declaredGovernanceSeals: true } : {}),
    ...(since ? { anchor: { head: since.head, state: since.state } } : {}),
  })
  const source = (cid: CID) => contents.blocks.get(cidKey(cid))?.bytes
  for (const [key, record] of contents.records) {
    if (record.cid.equals(state.genesis.cid)) continue
    fileFold.add(contents.bare.has(key) ? bareRecord(record, source) : record)
  }
  return fileFold
}

/** A seal as a compact file holds it: without the lists its blocks are absent for. */
function bareRecord(record: AnyVerified, source: (cid: CID) => Uint8Array | undefined): AnyVerified {
  const plain = decodeOwnRecord(record.bytes)!
  const listed = attachLists(plain, source)
  return listed.ok ? listed.value : plain
}

function sameKeys(a: Contents, b: Contents): boolean {
  if (a.blocks.size !== b.blocks.size || a.bare.size !== b.bare.size) return false
  for (const key of a.blocks.keys()) if (!b.blocks.has(key)) return false
  return true
}

/** The CARv1 bytes: the header, then every block by CID bytes (binary keys sort as the bytes do). */
function carOf(
  fold: Fold,
  model: string,
  mode: CertificateMode,
  since: CID | null,
  contents: Contents,
): Uint8Array {
  const state = fold.state()
  const header = headerBlock({
    federation: state.federation,
    model,
    genesis: state.genesis.cid,
    checkpoint: state.checkpoint!.cid,
    mode,
    since,
  })
  const keys = [...contents.blocks.keys()].sort()
  const blocks = keys.map((key) => contents.blocks.get(key)!)
  const size =
    CarBufferWriter.headerLength({ roots: [header.cid] }) +
    CarBufferWriter.blockLength(header) +
    blocks.reduce((n, b) => n + CarBufferWriter.blockLength(b), 0)
  const writer = CarBufferWriter.createWriter(new ArrayBuffer(size), { roots: [header.cid] })
  writer.write(header)
  for (const block of blocks) writer.write(block)
  return writer.close({ resize: true })
}

/**
 * A certificate whose chain starts after `since`, if it verifies from there: `since` must be on
 * the checkpoint's chain, and the deciding proposal's basis at or after it.
 */
function sinceExport(
  fold: Fold,
  model: string,
  mode: CertificateMode,
  since: CID,
  proven: ProvenEntry,
): { bytes: Uint8Array } | { refused: string } {
  const trusted = trustedHeadAt(fold, since)
  if (!trusted)
    return { refused: `${since} is not a governance head on the chain of the newest counted checkpoint` }
  const bytes = writeCertificate(fold, model, mode, trusted, proven)
  const newest = fold.state().checkpoint!
  const verdict = verifyCertificate(fold.federation, bytes, {
    now: newest.epoch + newest.rules.sealDeadlineMs,
    trusted,
  })
  const problems = verdict.problems.filter((p) => !STATUS_PROBLEMS.has(p.code) && p.code !== 'cert-future')
  if (problems.length === 0) return { bytes }
  const codes = [...new Set(problems.map((p) => p.code))].join(', ')
  return { refused: `a certificate since ${since} would not verify from that head (${codes})` }
}

/** The trusted head a verifier would hold at `since`, if it is on the checkpoint's chain. */
function trustedHeadAt(fold: Fold, since: CID): TrustedHead | undefined {
  const state = fold.state()
  const chain = chainTo(fold, state.checkpoint!.head)
  const at = chain?.findIndex((step) => step.cid.equals(since)) ?? -1
  if (!chain || (at < 0 && !since.equals(state.federation))) return undefined
  const genesis = state.genesis.record.body
  let headState: GovState = genesisState(genesis.members, genesis.rules)
  for (const step of chain.slice(0, at + 1)) {
    const next = applyAction(headState, step.record.body.action)
    if (!next.ok) return undefined
    headState = next.state
  }
  return { height: headState.height, epoch: 0, head: since, state: headState }
}

/** The governance steps from the genesis to `head`, in order; undefined if one is not held. */
function chainTo(fold: Fold, head: CID): Verified<'proposal'>[] | undefined {
  const federation = fold.state().federation
  const steps: Verified<'proposal'>[] = []
  for (let at = head; !at.equals(federation); ) {
    const step = fold.get(at) as Verified<'proposal'> | undefined
    if (!step) return undefined
    steps.push(step)
    at = step.record.body.basis
  }
  return steps.reverse()
}
