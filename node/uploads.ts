/**
 * Weights uploads (DESIGN.md §6 "Weights", SPEC.md §7): a CARv1 stream written into the node's
 * own blockstore, every block checked against its CID before it is stored, and the root pinned.
 *
 * How an upload goes:
 * - The body is read as a stream through a small CARv1 reader (header, then `varint ‖ CID ‖
 *   bytes` sections). At most `WRITES_IN_FLIGHT` blocks are in memory at a time, being hashed
 *   and written while the next sections are read (plus the root block, held back), and the total
 *   is bounded by `maxBytes`; a section longer than a block can be is refused before its bytes
 *   are read.
 * - The header must name exactly one root. `onRoot` runs before any block is stored, so an
 *   uploader who is not allowed can be refused after a few bytes.
 * - Every block: CIDv0/v1, codec raw or dag-pb (what UnixFS weights are made of), hash sha2-256,
 *   recomputed and compared before the block is written. A mismatch ends the upload with 400
 *   `block-hash-mismatch`.
 * - The root block is written last, after the DAG under it was found complete in the blockstore
 *   (directory and file nodes read, leaves checked with `has`) and its file bytes counted. So the
 *   root is reachable (served by the gateway, pinnable) only when everything under it is held.
 * - On failure, blocks this upload wrote are deleted again, unless they were already held before
 *   it or another upload in flight, or one that completed, also brought them: nothing that was
 *   there before is ever deleted. The bookkeeping for that lives in `claims` (in memory, per
 *   node); a crash mid-upload leaves valid but unreferenced blocks, which are harmless.
 *
 * Pins and garbage collection: a completed upload's root is pinned with Helia's pins API
 * (recursive; its pin records live in the node's LevelDatastore, so they survive restarts; the
 * walk reads only the DAG's nodes, not its leaves: pin-walker.ts). The
 * node runs no garbage collection of its own: nothing ever calls `helia.gc()`, and blocks are only
 * deleted by the failed-upload cleanup above. If an operator ever runs GC, pinned weights survive
 * it. Records never live in the blockstore: they are in the record log (record-log.ts), so no GC
 * of blocks can touch them.
 */
import { webcrypto } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { UnixFS } from 'ipfs-unixfs'
import type { ReadableStorage } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'
import { equalBytes } from '../protocol/bytes.js'
import { DAG_PB_CODE, IDENTITY_CODE, RAW_CODE, SHA2_256_CODE } from '../protocol/cid.js'
import {
  type Did,
  type Fold,
  type ManifestBody,
  parseDid,
  uploadStatementBytes,
  zip215,
} from '../protocol/index.js'
import { NodeError } from './errors.js'
import { CAR_TYPE } from './gateway.js'
import { type Logger, silentLogger } from './log.js'
import { CHUNK_BYTES } from './weights/directory.js'
import { type PinWalker, unixfsPinWalker } from './weights/pin-walker.js'
import { verifyDag } from './weights/verify.js'

/** What uploads need of a blockstore (blockstore-fs 4). */
export interface UploadBlockstore {
  put(cid: CID, bytes: Uint8Array): Promise<unknown>
  has(cid: CID): Promise<boolean>
  delete(cid: CID): Promise<void>
  get(cid: CID, options?: { signal?: AbortSignal }): AsyncIterable<Uint8Array> | Promise<Uint8Array>
}

/** The slice of Helia's pins API used here. */
export interface UploadPins {
  add(cid: CID, options?: { signal?: AbortSignal; offline?: boolean; walker?: PinWalker }): AsyncIterable<CID>
}

export interface UploadResult {
  readonly root: CID
  /** Blocks in the CAR (each distinct block once). */
  readonly blocks: number
  /** Total bytes of the file data under the root: a manifest's `size`, the `size` an upload statement signs. */
  readonly bytes: number
  /** Bytes of the CAR read. */
  readonly carBytes: number
  /** Whether the root is pinned now. */
  readonly pinned: boolean
}

export interface ReceiveOptions {
  /** The largest CAR accepted, in bytes. */
  readonly maxBytes: number
  /** The most blocks a CAR may carry (bounds memory and work). */
  readonly maxBlocks: number
  /** Runs once the root is known, before any block is stored; throw to refuse the upload. */
  readonly onRoot?: (root: CID) => void | Promise<void>
  /** Runs once the DAG is complete and its file bytes counted, before the root is stored. */
  readonly onComplete?: (root: CID, bytes: number) => void | Promise<void>
  readonly signal?: AbortSignal
}

export interface Weights {
  receive(source: AsyncIterable<Uint8Array>, options: ReceiveOptions): Promise<UploadResult>
  /** Pins a complete DAG held locally (never fetches). Idempotent; false when no pins API is available. */
  pin(root: CID, signal?: AbortSignal): Promise<boolean>
  /** Waits for uploads in flight to finish (or fail and clean up). */
  drain(): Promise<void>
}

/** The largest block accepted: twice the profile's 1 MiB leaf (directory and file nodes are smaller). */
export const MAX_UPLOAD_BLOCK_BYTES = 2 * CHUNK_BYTES
const MAX_HEADER_BYTES = 64 * 1024
/** A CID is at most a few bytes of varints and a 32-byte sha2-256 digest; be generous. */
const MAX_CID_BYTES = 128

/**
 * Blocks written at once. Why more than one: a put is a temp file and a rename on the thread
 * pool; waiting for each before reading the next section left the CPU idle for most of an
 * upload. Bounded, so at most this many blocks (of at most 2 MiB) wait in memory.
 */
const WRITES_IN_FLIGHT = 16

/** CAR overhead over file bytes: per block a section header and interior nodes, plus directories. */
export function carBudget(maxModelBytes: number): { maxBytes: number; maxBlocks: number } {
  const leaves = Math.ceil(maxModelBytes / CHUNK_BYTES)
  return { maxBytes: maxModelBytes + leaves * 128 + 16 * 1024 * 1024, maxBlocks: 2 * leaves + 65_536 }
}

function bad(code: string, message: string, status = 400): NodeError {
  return new NodeError(code, message, { status })
}

/** Reads exact byte counts from a chunked stream, bounded in total. */
class ByteReader {
  private chunks: Uint8Array[] = []
  private have = 0
  private done = false
  total = 0
  private readonly it: AsyncIterator<Uint8Array>

  constructor(
    source: AsyncIterable<Uint8Array>,
    private readonly max: number,
  ) {
    this.it = source[Symbol.asyncIterator]()
  }

  /** True if `n` bytes are buffered (reading more as needed), false at the end of the stream. */
  async ensure(n: number): Promise<boolean> {
    while (this.have < n && !this.done) {
      const next = await this.it.next()
      if (next.done) {
        this.done = true
        break
      }
      const chunk = next.value instanceof Uint8Array ? next.value : new Uint8Array(next.value as ArrayBuffer)
      this.total += chunk.byteLength
      if (this.total > this.max)
        throw bad('upload-too-large', `uploads are at most ${this.max} bytes (CAR included)`, 413)
      if (chunk.byteLength > 0) {
        this.chunks.push(chunk)
        this.have += chunk.byteLength
      }
    }
    return this.have >= n
  }

  private byteAt(i: number): number {
    for (const c of this.chunks) {
      if (i < c.byteLength) return c[i]!
      i -= c.byteLength
    }
    throw new RangeError('byteAt past the buffer')
  }

  /** An unsigned varint (≤ 2^53), or null at a clean end of the stream. */
  async varint(): Promise<number | null> {
    let value = 0
    for (let i = 0; i < 8; i++) {
      if (!(await this.ensure(i + 1))) {
        if (i === 0) return null
        throw bad('bad-car', 'the CAR ends inside a section length')
      }
      const b = this.byteAt(i)
      value += (b & 0x7f) * 2 ** (7 * i)
      if ((b & 0x80) === 0) {
        this.skip(i + 1)
        return value
      }
    }
    throw bad('bad-car', 'a section length in the CAR is too long')
  }

  /** The next `n` bytes, copied into `into` (at least `n` long) or a fresh buffer. */
  async take(n: number, into?: Uint8Array): Promise<Uint8Array> {
    if (!(await this.ensure(n))) throw bad('bad-car', 'the CAR ends inside a section')
    // Every byte is overwritten below: no need to zero it first.
    const out = into ? into.subarray(0, n) : Buffer.allocUnsafe(n)
    let off = 0
    while (off < n) {
      const c = this.chunks[0]!
      const part = Math.min(c.byteLength, n - off)
      out.set(c.subarray(0, part), off)
      off += part
      if (part === c.byteLength) this.chunks.shift()
      else this.chunks[0] = c.subarray(part)
    }
    this.have -= n
    return out
  }

  private skip(n: number): void {
    let left = n
    while (left > 0) {
      const c = this.chunks[0]!
      if (c.byteLength <= left) {
        left -= c.byteLength
        this.chunks.shift()
      } else {
        this.chunks[0] = c.subarray(left)
        left = 0
      }
    }
    this.have -= n
  }
}

/**
 * Buffers for sections, reused once their block is stored. Why: a fresh buffer per 1 MiB block
 * made a GiB of short-lived allocations per GiB uploaded, and the garbage collector's work on
 * them cost more than hashing the blocks.
 */
class SectionBuffers {
  private readonly free: Uint8Array[] = []
  static readonly BYTES = MAX_UPLOAD_BLOCK_BYTES + MAX_CID_BYTES

  get(): Uint8Array {
    return this.free.pop() ?? Buffer.allocUnsafe(SectionBuffers.BYTES)
  }

  release(buffer: Uint8Array): void {
    if (this.free.length < WRITES_IN_FLIGHT + 1) this.free.push(buffer)
  }
}

async function readHeader(reader: ByteReader): Promise<CID> {
  const length = await reader.varint()
  if (length === null) throw bad('bad-car', 'the body is empty: send a CARv1 file')
  if (length === 0 || length > MAX_HEADER_BYTES) throw bad('bad-car', `a CAR header of ${length} bytes`)
  let header: unknown
  try {
    header = dagCbor.decode(await reader.take(length))
  } catch (e) {
    if (e instanceof NodeError) throw e
    throw bad('bad-car', `the CAR header is not dag-cbor: ${(e as Error).message}`)
  }
  const h = header as { version?: unknown; roots?: unknown }
  if (typeof header !== 'object' || header === null || h.version !== 1)
    throw bad('car-version', 'send a CARv1 file (version 1 header)')
  if (!Array.isArray(h.roots) || h.roots.length !== 1 || CID.asCID(h.roots[0]) === null)
    throw bad('car-roots', 'the CAR must name exactly one root: the UnixFS root of the weights')
  return CID.asCID(h.roots[0])!
}

/** The block of a section, its CID's form checked; a sha2-256 hash is checked by `checkHash`. */
function checkSection(section: Uint8Array): { cid: CID; bytes: Uint8Array } {
  let cid: CID
  let bytes: Uint8Array
  try {
    ;[cid, bytes] = CID.decodeFirst(section)
    // The CID is kept (claims, the walk, the pin) after the section's buffer is reused: its own bytes.
    cid = CID.decode(cid.bytes.slice())
  } catch (e) {
    throw bad('bad-car', `a CAR section does not start with a CID: ${(e as Error).message}`)
  }
  if (cid.code !== RAW_CODE && cid.code !== DAG_PB_CODE)
    throw bad(
      'unsupported-codec',
      `block ${cid} has codec 0x${cid.code.toString(16)}; weights are raw and dag-pb`,
    )
  if (cid.multihash.code === IDENTITY_CODE) {
    if (!equalBytes(cid.multihash.digest, bytes))
      throw bad('block-hash-mismatch', `block ${cid} is not its CID`)
    return { cid, bytes }
  }
  if (cid.multihash.code !== SHA2_256_CODE)
    throw bad('unsupported-hash', `block ${cid} is not hashed with sha2-256`)
  if (bytes.byteLength > MAX_UPLOAD_BLOCK_BYTES)
    throw bad('block-too-large', `block ${cid} is over ${MAX_UPLOAD_BLOCK_BYTES} bytes`)
  return { cid, bytes }
}

/**
 * Throws `block-hash-mismatch` unless `bytes` hash to the sha2-256 `cid`. Web Crypto's digest
 * runs on the libuv thread pool, so blocks are hashed on other cores while this thread reads the
 * next sections; hashing on this thread made it the slowest part of an upload.
 */
async function checkHash(cid: CID, bytes: Uint8Array): Promise<void> {
  const digest = new Uint8Array(await webcrypto.subtle.digest('SHA-256', bytes))
  if (!equalBytes(digest, cid.multihash.digest))
    throw bad('block-hash-mismatch', `the bytes sent for block ${cid} do not hash to its CID`)
}

async function readAll(store: UploadBlockstore, cid: CID, signal?: AbortSignal): Promise<Uint8Array | null> {
  try {
    const got = store.get(cid, signal ? { signal } : {})
    if (got instanceof Promise) return await got
    const chunks: Uint8Array[] = []
    for await (const c of got) chunks.push(c)
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
  } catch (e) {
    if ((e as Error).name === 'NotFoundError' || (e as { code?: string }).code === 'ERR_NOT_FOUND')
      return null
    throw e
  }
}

function missing(cid: CID): NodeError {
  return bad('dag-incomplete', `block ${cid} under the root is neither in the CAR nor held here`)
}

/**
 * Checks the DAG under `root` is complete in `store` and counts its file bytes: the sizes of the
 * files reached through directories (or of the root itself, when it is a file).
 */
async function walkDag(
  store: UploadBlockstore,
  root: CID,
  rootBytes: Uint8Array,
  budget: number,
  signal?: AbortSignal,
): Promise<number> {
  const seen = new Set<string>()
  const stack: { cid: CID; entry: boolean }[] = [{ cid: root, entry: true }]
  let size = 0
  let steps = 0
  while (stack.length > 0) {
    if (signal?.aborted) throw bad('aborted', 'the upload was aborted', 499)
    if (++steps > budget) throw bad('dag-too-large', `the DAG under ${root} has more than ${budget} nodes`)
    const { cid, entry } = stack.pop()!
    const key = cid.toString()
    if (!entry && seen.has(key)) continue
    seen.add(key)
    if (cid.multihash.code === IDENTITY_CODE) {
      if (entry) size += cid.multihash.digest.byteLength
      continue
    }
    if (cid.code === RAW_CODE && !entry) {
      if (!(await store.has(cid))) throw missing(cid)
      continue
    }
    const bytes = cid.equals(root) ? rootBytes : await readAll(store, cid, signal)
    if (bytes === null) throw missing(cid)
    if (cid.code === RAW_CODE) {
      size += bytes.byteLength
      continue
    }
    if (cid.code !== DAG_PB_CODE) throw bad('not-unixfs', `block ${cid} is neither raw nor dag-pb`)
    let node: dagPb.PBNode
    let fs: UnixFS | undefined
    try {
      node = dagPb.decode(bytes)
      if (node.Data) fs = UnixFS.unmarshal(node.Data)
    } catch (e) {
      throw bad('not-unixfs', `block ${cid} is not a UnixFS node: ${(e as Error).message}`)
    }
    const directory = fs?.type === 'directory' || fs?.type === 'hamt-sharded-directory'
    if (entry && !directory) {
      if (fs === undefined || (fs.type !== 'file' && fs.type !== 'raw'))
        throw bad(
          'not-unixfs',
          `block ${cid} is a ${fs?.type ?? 'plain dag-pb'} node, not a file or directory`,
        )
      size += Number(fs.fileSize())
    }
    for (let i = node.Links.length - 1; i >= 0; i--) {
      const link = node.Links[i]!
      stack.push({ cid: link.Hash, entry: entry && directory })
    }
  }
  return size
}

/** Yields `blocks` (the root first) as the nodes of a walk, reading none of them. */
export function createWeights(options: {
  blockstore: UploadBlockstore
  pins?: UploadPins | undefined
  log?: Logger
}): Weights {
  const { blockstore, pins } = options
  const log = options.log ?? silentLogger
  /**
   * Blocks written by uploads still in flight that were not held before: key → how many of those
   * uploads brought it. A completed upload removes its keys (they are kept for good); a failed one
   * deletes a block only when it was the last upload in flight holding it.
   */
  const claims = new Map<string, { cid: CID; holders: number }>()
  const inFlight = new Set<Promise<unknown>>()

  /** Stores a block this upload brought unless it is held or being written by another upload. */
  const write = async (key: string, cid: CID, bytes: Uint8Array, mine: Map<string, CID>): Promise<void> => {
    const claimed = claims.get(key)
    if (claimed) {
      claimed.holders++
      mine.set(key, cid)
      return
    }
    if (await blockstore.has(cid)) return
    // Another upload may have claimed it while `has` was asked.
    const claim = claims.get(key)
    if (claim) claim.holders++
    else claims.set(key, { cid, holders: 1 })
    mine.set(key, cid)
    if (!claim) await blockstore.put(cid, bytes)
  }

  const receive = async (source: AsyncIterable<Uint8Array>, opts: ReceiveOptions): Promise<UploadResult> => {
    const mine = new Map<string, CID>()
    const writes = new Set<Promise<void>>()
    const buffers = new SectionBuffers()
    let writeFailed: { error: unknown } | undefined
    let ok = false
    try {
      const reader = new ByteReader(source, opts.maxBytes)
      const root = await readHeader(reader)
      await opts.onRoot?.(root)
      let rootBytes: Uint8Array | undefined
      const distinct = new Set<string>()
      for (;;) {
        if (opts.signal?.aborted) throw bad('aborted', 'the upload was aborted', 499)
        const length = await reader.varint()
        if (length === null) break
        if (length === 0 || length > MAX_UPLOAD_BLOCK_BYTES + MAX_CID_BYTES)
          throw bad('block-too-large', `a CAR section of ${length} bytes`)
        const buffer = buffers.get()
        const { cid, bytes } = checkSection(await reader.take(length, buffer))
        const key = cid.toString()
        if (distinct.has(key) || cid.multihash.code === IDENTITY_CODE || cid.equals(root)) {
          buffers.release(buffer)
          if (distinct.has(key)) continue
        }
        if (distinct.size >= opts.maxBlocks)
          throw bad('too-many-blocks', `uploads hold at most ${opts.maxBlocks} blocks`, 413)
        distinct.add(key)
        if (cid.multihash.code === IDENTITY_CODE) continue
        if (cid.equals(root)) {
          rootBytes = new Uint8Array(bytes)
          await checkHash(cid, rootBytes)
          continue
        }
        // Checked, then stored: nothing is written before its hash matched.
        const stored = checkHash(cid, bytes).then(() => write(key, cid, bytes, mine))
        const task: Promise<void> = stored.then(
          () => {
            writes.delete(task)
            buffers.release(buffer)
          },
          (error: unknown) => {
            writes.delete(task)
            writeFailed ??= { error }
          },
        )
        writes.add(task)
        if (writes.size >= WRITES_IN_FLIGHT) await Promise.race(writes)
        if (writeFailed) throw writeFailed.error
      }
      await Promise.all(writes)
      if (writeFailed) throw writeFailed.error
      if (rootBytes === undefined) {
        rootBytes = (await readAll(blockstore, root, opts.signal)) ?? undefined
        if (rootBytes === undefined) throw bad('root-missing', `the CAR does not hold its root ${root}`)
      }
      const bytes = await walkDag(blockstore, root, rootBytes, opts.maxBlocks + 65_536, opts.signal)
      await opts.onComplete?.(root, bytes)
      await blockstore.put(root, rootBytes)
      ok = true
      const pinned = await pin(root, opts.signal).catch((e) => {
        log.warn('weights-pin-failed', { root: root.toString(), error: e as Error })
        return false
      })
      log.info('weights-uploaded', { root: root.toString(), blocks: distinct.size, bytes, pinned })
      return { root, blocks: distinct.size, bytes, carBytes: reader.total, pinned }
    } finally {
      // Writes still running finish first: a block they put is then deleted with the rest.
      await Promise.allSettled([...writes])
      for (const [key, cid] of mine) {
        const claim = claims.get(key)
        if (!claim) continue
        if (ok) claims.delete(key)
        else if (--claim.holders === 0) {
          claims.delete(key)
          await blockstore.delete(cid).catch((e) => log.warn('weights-cleanup-failed', { error: e as Error }))
        }
      }
    }
  }

  /** Pins `root`, reading only the DAG's nodes (pin-walker.ts says why). */
  const pin = async (root: CID, signal?: AbortSignal): Promise<boolean> => {
    if (!pins) return false
    try {
      // `offline`: the DAG is complete here; a pin must never wait on bitswap.
      for await (const _ of pins.add(root, {
        offline: true,
        walker: unixfsPinWalker,
        ...(signal ? { signal } : {}),
      })) {
        // Each block walked gets its pin count; nothing to do with it here.
      }
    } catch (e) {
      if ((e as Error).name !== 'AlreadyPinnedError') throw e
    }
    return true
  }

  return {
    receive(source, opts) {
      const p = receive(source, opts)
      const tracked = p.catch(() => {}).finally(() => inFlight.delete(tracked))
      inFlight.add(tracked)
      return p
    },
    pin,
    async drain() {
      await Promise.allSettled([...inFlight])
    },
  }
}

// ---------------------------------------------------------------- HTTP routes

/** How far an upload statement's `at` may be from the node's clock. */
export const UPLOAD_WINDOW_MS = 10 * 60 * 1000

export const UPLOAD_HEADERS = {
  author: 'allmende-upload-author',
  at: 'allmende-upload-at',
  signature: 'allmende-upload-signature',
  /** Optional: the signed `size`, so the signature is checked before any block is stored. */
  size: 'allmende-upload-size',
} as const

export interface WeightsRoutesOptions {
  readonly weights: Weights
  /** The node's own blockstore, read by the checks. */
  readonly blockstore: ReadableStorage
  readonly fold: Pick<Fold, 'get' | 'headState' | 'state' | 'electorate' | 'knownMember'>
  readonly clock: () => number
  /** Throws `NodeError('unauthorized')` unless the request carries the admin token. */
  readonly requireAdmin: (req: FastifyRequest) => void
  /** The largest CAR accepted; by default the head state's `maxModelBytes` plus CAR overhead. */
  readonly maxUploadBytes?: number
}

interface Statement {
  readonly author: Did
  readonly publicKey: Uint8Array
  readonly at: number
  readonly signature: Uint8Array
  readonly size?: number
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

function statementError(message: string): NodeError {
  return new NodeError('upload-statement-invalid', message, { status: 401 })
}

const UINT = /^(0|[1-9][0-9]{0,15})$/

/** The upload statement in the headers, checked for form and freshness (not yet the signature). */
function readStatement(req: FastifyRequest, now: number): Statement {
  const author = header(req, UPLOAD_HEADERS.author) ?? ''
  const key = parseDid(author)
  if (!key.ok) throw statementError(`${UPLOAD_HEADERS.author} is not a did:key: ${key.message}`)
  const atText = header(req, UPLOAD_HEADERS.at) ?? ''
  if (!UINT.test(atText) || !Number.isSafeInteger(Number(atText)))
    throw statementError(`${UPLOAD_HEADERS.at} must be the signing time in ms since the epoch`)
  const at = Number(atText)
  if (Math.abs(at - now) > UPLOAD_WINDOW_MS) {
    throw new NodeError(
      'upload-stale',
      `the upload statement was signed at ${at}, more than ${UPLOAD_WINDOW_MS / 60_000} minutes from this node's clock (${now})`,
      { status: 401 },
    )
  }
  const sigText = header(req, UPLOAD_HEADERS.signature) ?? ''
  const signature = /^[A-Za-z0-9+/_-]{86}={0,2}$/.test(sigText)
    ? new Uint8Array(
        Buffer.from(sigText, sigText.includes('-') || sigText.includes('_') ? 'base64url' : 'base64'),
      )
    : new Uint8Array()
  if (signature.length !== 64)
    throw statementError(`${UPLOAD_HEADERS.signature} must be a base64 Ed25519 signature (64 bytes)`)
  const sizeText = header(req, UPLOAD_HEADERS.size)
  if (sizeText !== undefined && (!UINT.test(sizeText) || !Number.isSafeInteger(Number(sizeText))))
    throw statementError(`${UPLOAD_HEADERS.size} must be the signed size in bytes`)
  return {
    author,
    publicKey: key.value,
    at,
    signature,
    ...(sizeText !== undefined ? { size: Number(sizeText) } : {}),
  }
}

/** A publisher in some governance state of the chain: the head, or the electorate of a governance proposal. */
export function isPublisher(fold: WeightsRoutesOptions['fold'], did: Did): boolean {
  const publisherIn = (members: ReadonlyMap<Did, { roles: readonly string[] }>) =>
    members.get(did)?.roles.includes('publisher') === true
  if (publisherIn(fold.headState().members)) return true
  if (!fold.knownMember(did)) return false
  // Every chain state but the head is the basis (the electorate) of its successor.
  for (const p of fold.state().proposals.values()) {
    if (!p.governance) continue
    const electorate = fold.electorate(p.cid)
    if (electorate && publisherIn(electorate.members)) return true
  }
  return false
}

function checkSignature(s: Statement, root: CID, size: number): void {
  if (!zip215.verify(s.signature, uploadStatementBytes(root, s.at, size), s.publicKey)) {
    throw new NodeError(
      'upload-signature-invalid',
      `the upload statement's signature by ${s.author} does not cover root ${root}, at ${s.at} and size ${size}`,
      { status: 401 },
    )
  }
}

function parseCid(text: string): CID {
  try {
    return CID.parse(text)
  } catch {
    throw new NodeError('bad-cid', `not a CID: ${text.slice(0, 80)}`, { status: 400 })
  }
}

/**
 * `POST /weights` (a CARv1 body, the admin token or a publisher's upload statement) and
 * `GET /weights/:cid/check?manifest=<cid>` (admin: `verifyDag` against a held manifest).
 * Registered in their own scope: the body of an upload is a stream, never a buffer.
 */
export async function registerWeightsRoutes(
  app: FastifyInstance,
  options: WeightsRoutesOptions,
): Promise<void> {
  const { weights, fold, clock } = options
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_req, payload, done) => done(null, payload))

    scope.post('/weights', async (req, reply) => {
      try {
        return await upload(req, reply)
      } catch (e) {
        // The rest of a refused body is not read: close the connection after the answer, or the
        // next request on it would wait behind unread bytes (a half-read stream is not dumped).
        if (!req.raw.complete) reply.header('connection', 'close')
        throw e
      }
    })

    const upload = async (req: FastifyRequest, reply: FastifyReply) => {
      const type = (header(req, 'content-type') ?? '').toLowerCase()
      if (!type.startsWith(CAR_TYPE)) {
        throw new NodeError('unsupported-media-type', `send the weights as ${CAR_TYPE} (a CARv1 file)`, {
          status: 415,
        })
      }
      const budget = carBudget(fold.headState().rules.maxModelBytes)
      const maxBytes = options.maxUploadBytes ?? budget.maxBytes
      const declared = Number(header(req, 'content-length') ?? 0)
      if (declared > maxBytes)
        throw new NodeError('upload-too-large', `uploads are at most ${maxBytes} bytes`, { status: 413 })

      let statement: Statement | undefined
      if (header(req, 'authorization') !== undefined) options.requireAdmin(req)
      else if (header(req, UPLOAD_HEADERS.author) !== undefined) {
        statement = readStatement(req, clock())
        if (!isPublisher(fold, statement.author)) {
          throw new NodeError(
            'not-a-publisher',
            `${statement.author} is not a publisher in any governance state of this federation`,
            { status: 403 },
          )
        }
      } else {
        throw new NodeError(
          'unauthorized',
          'uploads need the admin token or a publisher upload statement (Allmende-Upload-Author, -At, -Signature)',
          { status: 401 },
        )
      }

      const source = req.body as AsyncIterable<Uint8Array> | undefined
      if (source === undefined || source === null || typeof source[Symbol.asyncIterator] !== 'function')
        throw new NodeError('bad-car', 'the body is empty: send a CARv1 file', { status: 400 })
      const controller = new AbortController()
      reply.raw.once('close', () => {
        if (!reply.raw.writableFinished) controller.abort()
      })
      const s = statement
      const result = await weights.receive(source, {
        maxBytes,
        maxBlocks: budget.maxBlocks,
        signal: controller.signal,
        ...(s?.size !== undefined ? { onRoot: (root: CID) => checkSignature(s, root, s.size!) } : {}),
        onComplete: (root, bytes) => {
          if (!s) return
          if (s.size !== undefined && s.size !== bytes) {
            throw new NodeError(
              'upload-size-mismatch',
              `the statement signs ${s.size} bytes, the DAG under ${root} holds ${bytes}`,
              { status: 400 },
            )
          }
          checkSignature(s, root, bytes)
        },
      })
      return reply.code(201).send({
        root: result.root.toString(),
        blocks: result.blocks,
        bytes: result.bytes,
        carBytes: result.carBytes,
        pinned: result.pinned,
      })
    }

    scope.get('/weights/:cid/check', async (req) => {
      options.requireAdmin(req)
      const root = parseCid((req.params as { cid: string }).cid)
      const manifestText = (req.query as Record<string, string | undefined>).manifest
      if (typeof manifestText !== 'string')
        throw new NodeError('bad-request', 'name the manifest to check against: ?manifest=<cid>', {
          status: 400,
        })
      const manifestCid = parseCid(manifestText)
      const r = fold.get(manifestCid)
      if (r?.record.kind !== 'manifest')
        throw new NodeError('unknown-manifest', `no manifest ${manifestCid} is held here`, { status: 404 })
      const body = r.record.body as ManifestBody
      if (!body.weights.equals(root)) {
        return {
          ok: false,
          problems: [
            {
              code: 'root-mismatch',
              message: `manifest ${manifestCid} names weights ${body.weights}, not ${root}`,
            },
          ],
        }
      }
      const controller = new AbortController()
      req.raw.socket.once('close', () => controller.abort())
      return verifyDag(options.blockstore, body, {
        maxModelBytes: fold.headState().rules.maxModelBytes,
        signal: controller.signal,
      })
    })
  })
}
