/**
 * Reading an upload's CAR into staging (SPEC.md §7): the one CAR reader (car-sections.ts) with the
 * upload's own 4xx codes for each fault, then every block checked — CIDv0/v1, codec raw or dag-pb,
 * hash sha2-256 recomputed — before it is staged (upload-staging.ts). A mismatch ends the upload
 * with 400 `block-hash-mismatch`. At most `WRITES_IN_FLIGHT` blocks are in memory at a time, being
 * hashed and written while the next sections are read.
 */
import { webcrypto } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { equalBytes } from '../../protocol/bytes.js'
import { DAG_PB_CODE, IDENTITY_CODE, RAW_CODE, SHA2_256_CODE } from '../../protocol/cid.js'
import { NodeError } from '../errors.js'
import { type CarFault, CarReader, CID_PREFIX_BYTES } from './car-sections.js'
import { MAX_BLOCK_BYTES } from './profile.js'
import type { StagedUpload } from './upload-staging.js'

/** Blocks hashed and written at once (why more than one: ADR 0012); at most this many wait in memory. */
export const WRITES_IN_FLIGHT = 16

export function bad(code: string, message: string, status = 400): NodeError {
  return new NodeError(code, message, { status })
}

/** The upload's words for each fault of the CAR stream (its codes and messages since version 1). */
function uploadFault(fault: CarFault): NodeError {
  switch (fault.kind) {
    case 'empty':
      return bad('bad-car', 'the body is empty: send a CARv1 file')
    case 'too-many-bytes':
      return bad('upload-too-large', `uploads are at most ${fault.maxBytes} bytes (CAR included)`, 413)
    case 'length-too-long':
      return bad('bad-car', 'a section length in the CAR is too long')
    case 'ends-in-length':
      return bad('bad-car', 'the CAR ends inside a section length')
    case 'ends-in-section':
      return bad('bad-car', 'the CAR ends inside a section')
    case 'header-length':
      return bad('bad-car', `a CAR header of ${fault.length} bytes`)
    case 'header-not-cbor':
      return bad('bad-car', `the CAR header is not dag-cbor: ${fault.reason}`)
    case 'version':
      return bad('car-version', 'send a CARv1 file (version 1 header)')
    case 'roots':
      return rootsError()
    case 'section-length':
      return bad('block-too-large', `a CAR section of ${fault.length} bytes`)
    case 'not-a-cid':
      return bad('bad-car', `a CAR section does not start with a CID: ${fault.reason}`)
    case 'block-too-large':
      return bad('block-too-large', `block ${fault.cid} is over ${MAX_BLOCK_BYTES} bytes`)
  }
}

function rootsError(): NodeError {
  return bad('car-roots', 'the CAR must name exactly one root: the UnixFS root of the weights')
}

/** A section's CID decoded again from its own bytes: one that is not its own encoding is refused. */
function ownCid(cid: CID): CID {
  try {
    return CID.decode(cid.bytes.slice())
  } catch (e) {
    throw bad('bad-car', `a CAR section does not start with a CID: ${(e as Error).message}`)
  }
}

/**
 * A read block's CID and bytes checked, in the order the upload has always answered: codec, an
 * identity CID's bytes, the hash function, the size. A sha2-256 hash is checked by `checkHash`.
 */
function checkSection(cid: CID, bytes: Uint8Array): void {
  if (cid.code !== RAW_CODE && cid.code !== DAG_PB_CODE)
    throw bad(
      'unsupported-codec',
      `block ${cid} has codec 0x${cid.code.toString(16)}; weights are raw and dag-pb`,
    )
  if (cid.multihash.code === IDENTITY_CODE) {
    if (!equalBytes(cid.multihash.digest, bytes))
      throw bad('block-hash-mismatch', `block ${cid} is not its CID`)
    return
  }
  if (cid.multihash.code !== SHA2_256_CODE)
    throw bad('unsupported-hash', `block ${cid} is not hashed with sha2-256`)
  if (bytes.byteLength > MAX_BLOCK_BYTES)
    throw bad('block-too-large', `block ${cid} is over ${MAX_BLOCK_BYTES} bytes`)
}

/**
 * Throws `block-hash-mismatch` unless `bytes` hash to the sha2-256 `cid`. With Web Crypto, on the
 * libuv thread pool: other cores hash while this thread reads the next sections (ADR 0012).
 */
async function checkHash(cid: CID, bytes: Uint8Array): Promise<void> {
  const digest = new Uint8Array(await webcrypto.subtle.digest('SHA-256', bytes))
  if (!equalBytes(digest, cid.multihash.digest))
    throw bad('block-hash-mismatch', `the bytes sent for block ${cid} do not hash to its CID`)
}

/** Buffers for sections, reused once their block is stored (why: ADR 0012). */
class SectionBuffers {
  private readonly free: Uint8Array[] = []
  static readonly BYTES = MAX_BLOCK_BYTES + CID_PREFIX_BYTES

  get(): Uint8Array {
    return this.free.pop() ?? Buffer.allocUnsafe(SectionBuffers.BYTES)
  }

  release(buffer: Uint8Array): void {
    if (this.free.length < WRITES_IN_FLIGHT + 1) this.free.push(buffer)
  }
}

export interface StageCarOptions {
  /** The largest CAR accepted, in bytes. */
  readonly maxBytes: number
  /** The most distinct blocks the CAR may carry. */
  readonly maxBlocks: number
  /** The root the CAR must name (the one a statement signs). */
  readonly root?: CID | undefined
  readonly signal?: AbortSignal | undefined
}

/**
 * Hash-checked and staged block writes, `WRITES_IN_FLIGHT` at a time; the first failure is
 * thrown by the next `add` or by `finish`.
 */
class StagedWrites {
  private readonly writes = new Set<Promise<void>>()
  private failed: { error: unknown } | undefined

  constructor(private readonly staged: StagedUpload) {}

  async add(cid: CID, bytes: Uint8Array, done: () => void): Promise<void> {
    // Checked, then staged: nothing is written before its hash matched.
    const task: Promise<void> = checkHash(cid, bytes)
      .then(() => this.staged.put(cid, bytes))
      .then(
        () => {
          this.writes.delete(task)
          done()
        },
        (error: unknown) => {
          this.writes.delete(task)
          this.failed ??= { error }
        },
      )
    this.writes.add(task)
    if (this.writes.size >= WRITES_IN_FLIGHT) await Promise.race(this.writes)
    if (this.failed) throw this.failed.error
  }

  async finish(): Promise<void> {
    await Promise.all(this.writes)
    if (this.failed) throw this.failed.error
  }

  /** Waits for the writes still running, failed or not: a block they stage goes with the rest. */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.writes])
  }
}

/**
 * Reads the CAR from `source` and stages each distinct block under the root it names, checked;
 * returns the root and the bytes read. Writes still running when it fails are waited for.
 */
export async function stageCar(
  source: AsyncIterable<Uint8Array>,
  staged: StagedUpload,
  options: StageCarOptions,
): Promise<{ root: CID; carBytes: number }> {
  const buffers = new SectionBuffers()
  let buffer: Uint8Array | undefined
  const reader = new CarReader(source, {
    maxBytes: options.maxBytes,
    maxBlockBytes: MAX_BLOCK_BYTES,
    // Every check waits for the whole section, as the upload has always answered (checkSection).
    admit: () => {},
    longCids: true,
    place: (_cid, length) => {
      buffer = buffers.get()
      return buffer.subarray(0, length)
    },
    faults: uploadFault,
  })
  const writes = new StagedWrites(staged)
  try {
    const root = await readRoot(reader, options.root)
    const distinct = new Set<string>()
    for (;;) {
      if (options.signal?.aborted) throw bad('aborted', 'the upload was aborted', 499)
      const section = await reader.next()
      if (section === undefined) break
      const cid = ownCid(section.cid)
      const { bytes } = section
      const taken = buffer!
      checkSection(cid, bytes)
      const key = cid.toString()
      const identity = cid.multihash.code === IDENTITY_CODE
      if (distinct.has(key) || identity) buffers.release(taken)
      if (distinct.has(key)) continue
      if (distinct.size >= options.maxBlocks)
        throw bad('too-many-blocks', `uploads hold at most ${options.maxBlocks} blocks`, 413)
      distinct.add(key)
      if (!identity) await writes.add(cid, bytes, () => buffers.release(taken))
    }
    await writes.finish()
    return { root, carBytes: reader.bytesRead }
  } finally {
    reader.close()
    await writes.settle()
  }
}

/** The one root the CAR's header names, which must be `expected` when a statement signs one. */
async function readRoot(reader: CarReader, expected: CID | undefined): Promise<CID> {
  const roots = await reader.header()
  if (roots.length !== 1) throw rootsError()
  const root = roots[0]!
  if (expected !== undefined && !root.equals(expected))
    throw bad('upload-root-mismatch', `the CAR's root is ${root}; the upload statement signs ${expected}`)
  return root
}
