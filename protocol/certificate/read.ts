/**
 * Reading a certificate file (SPEC.md §12.2 step 1): the size cap, CARv1, every block a CIDv1
 * with sha2-256 over dag-cbor or raw that matches its bytes; and, once the header is known, the
 * canonical order: the header first, then the other blocks by CID bytes, none twice
 * (docs/adr/0020).
 */
import { CarBufferReader } from '@ipld/car/buffer-reader'
import { sha256 } from '@noble/hashes/sha2.js'
import type { CID } from 'multiformats/cid'
import { equalBytes } from '../bytes.js'
import { DAG_CBOR_CODE } from '../cbor.js'
import { cidKey, compareCids, RAW_CODE, SHA2_256_CODE } from '../cid.js'
import type { Block } from '../cidlist.js'
import type { CertificateProblem } from './format.js'

export interface CertificateFile {
  readonly roots: readonly CID[]
  /** Blocks that match their CIDs, by CID key (the first of two copies). */
  readonly blocks: ReadonlyMap<string, Block>
  /** Every block as written, in file order (matching or not). */
  readonly written: readonly Block[]
}

export type FileRead =
  | { readonly file: CertificateFile; readonly problems: CertificateProblem[] }
  | { readonly stop: CertificateProblem }

/** The file's blocks, or the problem that stops verification (too large, not a CARv1 file). */
export function readCertificateFile(bytes: Uint8Array, cap: number): FileRead {
  if (bytes.length > cap)
    return {
      stop: {
        code: 'cert-too-large',
        message: `the certificate is ${bytes.length} bytes; at most ${cap} are read`,
      },
    }
  let reader: CarBufferReader
  let written: Block[]
  try {
    reader = CarBufferReader.fromBytes(bytes)
    written = [...reader.blocks()].map((b) => ({ cid: b.cid as CID, bytes: b.bytes }))
  } catch (e) {
    return { stop: { code: 'cert-car', message: `not a readable CARv1 file: ${(e as Error).message}` } }
  }
  if (reader.version !== 1)
    return { stop: { code: 'cert-car', message: `a CARv${reader.version} file; a certificate is CARv1` } }
  const problems: CertificateProblem[] = []
  const blocks = new Map<string, Block>()
  for (const block of written) {
    const problem = blockProblem(block)
    if (problem) problems.push({ code: 'cert-block-invalid', message: problem })
    else if (!blocks.has(cidKey(block.cid))) blocks.set(cidKey(block.cid), block)
  }
  return { file: { roots: reader.getRoots() as CID[], blocks, written }, problems }
}

/** Why a block is not one a certificate may hold: its CID's form, or bytes that do not match it. */
function blockProblem(block: Block): string | undefined {
  const { cid } = block
  if (cid.version !== 1) return `block ${cid} is not a CIDv1`
  if (cid.code !== DAG_CBOR_CODE && cid.code !== RAW_CODE) return `block ${cid} is neither dag-cbor nor raw`
  if (cid.multihash.code !== SHA2_256_CODE || cid.multihash.size !== 32)
    return `block ${cid} is not addressed by sha2-256`
  if (!equalBytes(sha256(block.bytes), cid.multihash.digest)) return `block ${cid} does not match its CID`
  return undefined
}

/**
 * The canonical order, one problem per block out of place: the root first, then the others by
 * strictly increasing CID bytes (a block's second copy is out of place wherever it stands).
 * Judged once the header is read: a file without one has no order to speak of.
 */
export function orderProblems(written: readonly Block[], root: CID): CertificateProblem[] {
  const problems: CertificateProblem[] = []
  const seen = new Set<string>()
  let previous: CID | undefined
  written.forEach((block, index) => {
    const key = cidKey(block.cid)
    if (seen.has(key)) {
      problems.push({ code: 'cert-not-canonical', message: `block ${block.cid} is in the file twice` })
      return
    }
    seen.add(key)
    if (block.cid.equals(root)) {
      if (index !== 0)
        problems.push({ code: 'cert-not-canonical', message: 'the header (the root) is not the first block' })
      return
    }
    if (previous && compareCids(previous, block.cid) > 0)
      problems.push({ code: 'cert-not-canonical', message: `block ${block.cid} is out of CID order` })
    previous = block.cid
  })
  return problems
}
