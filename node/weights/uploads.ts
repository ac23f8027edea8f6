/**
 * Weights uploads (DESIGN.md §6 "Weights", SPEC.md §7): a CARv1 stream from a publisher (or the
 * admin), authenticated before its first byte is read, staged outside the blockstore, and moved
 * in only once the DAG under its root is complete and checked. This file holds the receiving
 * side: the CAR reader, the checks of each block, the walk of the DAG (`measureDag`), the move
 * from staging into the blockstore, the pin, and the slots and nonces an upload takes. The HTTP
 * side, `POST /weights` and the upload statement in its headers, is in upload-routes.ts.
 *
 * How an upload goes:
 * - Before the body is read (upload-routes.ts): the admin token, or a publisher's upload
 *   statement (version 2, SPEC.md §7) in the headers — signed over this federation, this node's
 *   peer id, the root, the time, the size and a nonce never used before; the size within
 *   `maxModelBytes`. Then a slot (uploads at once, per author and in all) and the nonce, recorded
 *   durably. Anything else is refused with nothing read but the headers.
 * - The body is read as a stream through a small CARv1 reader (header, then `varint ‖ CID ‖
 *   bytes` sections), bounded by the CAR budget of the signed size (`carBudget`) and by an idle
 *   timeout: a body that sends nothing for `idleMs` ends the upload (`idleBounded`, in
 *   upload-routes.ts). At most `WRITES_IN_FLIGHT` blocks are in memory at a time, being hashed
 *   and written while the next sections are read; a section longer than a block can be is
 *   refused before its bytes are read.
 * - The header must name exactly one root, the one the statement signs. Every block: CIDv0/v1,
 *   codec raw or dag-pb (what UnixFS weights are made of), hash sha2-256, recomputed and compared
 *   before the block is staged (upload-staging.ts). A mismatch ends the upload with 400
 *   `block-hash-mismatch`.
 * - When the body has ended, the DAG under the root is walked (`measureDag`): every block must be
 *   staged or already held, every node UnixFS, and its logical size — the bytes every file yields
 *   when read, a block linked N times counted N times — must be within `maxModelBytes` and equal
 *   the signed size. Only then do the blocks reachable from the root move into the blockstore, the
 *   root last, so a root is reachable (served, pinnable) only with everything under it. Blocks of
 *   the CAR the root does not reach are dropped with the staging directory.
 * - On failure, or a stop, or a crash, the staging directory goes (a crash: when the node starts
 *   again); nothing in the blockstore is touched.
 *
 * Pins and garbage collection: a completed upload's root is pinned with Helia's pins API
 * (recursive; its pin records live in the node's LevelDatastore, so they survive restarts; the
 * walk reads only the DAG's nodes, not its leaves: pin-walker.ts). The node runs no garbage
 * collection of its own: nothing ever calls `helia.gc()`. If an operator ever runs GC, pinned
 * weights survive it. Records never live in the blockstore: they are in the record log
 * (record-log.ts), so no GC of blocks can touch them.
 */
import { webcrypto } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import { equalBytes } from '../../protocol/bytes.js'
import { DAG_PB_CODE, IDENTITY_CODE, RAW_CODE, SHA2_256_CODE } from '../../protocol/cid.js'
import { NodeError } from '../errors.js'
import { type Logger, silentLogger } from '../log.js'
import { openUploadNonces, type UploadNonces } from './upload-nonces.js'
import { type StagedUpload, type StagingTarget, UploadStaging } from './upload-staging.js'
import { CHUNK_BYTES } from './directory.js'
import { type PinWalker, unixfsPinWalker } from './pin-walker.js'

/** What uploads need of a blockstore (blockstore-fs 4, its default layout: see upload-staging.ts). */
export interface UploadBlockstore extends StagingTarget {
  has(cid: CID): Promise<boolean>
  get(cid: CID, options?: { signal?: AbortSignal }): AsyncIterable<Uint8Array> | Promise<Uint8Array>
}

/** The slice of Helia's pins API used here. */
export interface UploadPins {
  add(cid: CID, options?: { signal?: AbortSignal; offline?: boolean; walker?: PinWalker }): AsyncIterable<CID>
}

export interface UploadResult {
  readonly root: CID
  /** Blocks under the root (each distinct block once, identity CIDs aside). */
  readonly blocks: number
  /** The logical size of the DAG under the root: a manifest's `size`, the `size` a statement signs. */
  readonly bytes: number
  /** Bytes of the CAR read. */
  readonly carBytes: number
  /** Blocks of the CAR the root does not reach: dropped, never stored. */
  readonly dropped: number
  /** Whether the root is pinned now. */
  readonly pinned: boolean
}

export interface ReceiveOptions {
  /** The largest CAR accepted, in bytes. */
  readonly maxBytes: number
  /** The most blocks a CAR may carry (bounds memory and work). */
  readonly maxBlocks: number
  /** The largest logical size accepted (the head state's `maxModelBytes`). */
  readonly maxLogicalBytes: number
  /** The root the CAR must name (the one a statement signs). */
  readonly root?: CID
  /** The logical size the DAG must have (the one a statement signs). */
  readonly size?: number
  readonly signal?: AbortSignal
}

/** What POST /weights checks before it reads a body. */
export interface UploadGate {
  /** The federation and the node a statement must name. */
  readonly federation: CID
  readonly peerId: string
  readonly nonces: UploadNonces
  readonly slots: UploadSlots
  /** An upload whose body sends nothing for this long ends (`upload-idle`). */
  readonly idleMs: number
  /** How far a statement's `at` may be from the node's clock. */
  readonly windowMs: number
}

/** How far an upload statement's `at` may be from the node's clock. */
export const UPLOAD_WINDOW_MS = 10 * 60 * 1000

export interface Weights {
  receive(source: AsyncIterable<Uint8Array>, options: ReceiveOptions): Promise<UploadResult>
  /** Pins a complete DAG held locally (never fetches). Idempotent; false when no pins API is available. */
  pin(root: CID, signal?: AbortSignal): Promise<boolean>
  /** Waits for uploads in flight to finish (or fail and clean up). */
  drain(): Promise<void>
  readonly gate: UploadGate
  /** Closes the nonce file; after `drain`. */
  close(): Promise<void>
}

/** The largest block accepted: twice the profile's 1 MiB leaf (directory and file nodes are smaller). */
export const MAX_UPLOAD_BLOCK_BYTES = 2 * CHUNK_BYTES
const MAX_HEADER_BYTES = 64 * 1024
/** A CID is at most a few bytes of varints and a 32-byte sha2-256 digest; be generous. */
const MAX_CID_BYTES = 128

/**
 * Blocks written at once. Why more than one: a write is a few calls on the thread pool; waiting
 * for each before reading the next section left the CPU idle for most of an upload. Bounded, so
 * at most this many blocks (of at most 2 MiB) wait in memory.
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

  /** Lets go of the source (a generator's `finally` runs); the reader is not used after. */
  close(): void {
    this.it.return?.()?.catch(() => {})
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

function notUnixfs(cid: CID, why: string): NodeError {
  return bad('not-unixfs', `block ${cid} ${why}`)
}

/** Where the walk finds a block: staged by this upload, or held in the blockstore before it. */
export interface DagBlocks {
  /** The bytes of a dag-pb block, or null when it is neither staged nor held. */
  node(cid: CID): Promise<Uint8Array | null>
  /** The size of a raw block, or null when it is neither staged nor held. */
  leafSize(cid: CID): Promise<number | null>
}

type NodeKind = 'leaf' | 'file' | 'directory'

interface Measured {
  readonly cid: CID
  readonly kind: NodeKind
  /** The logical size: the bytes reading it yields. */
  readonly size: number
}

/** A dag-pb node read, waiting for its links to be measured. */
interface Opened {
  readonly cid: CID
  readonly key: string
  readonly kind: 'file' | 'directory'
  readonly links: CID[]
  /** A file node's own data bytes, and what it declares of each link. */
  readonly inline: number
  readonly blockSizes: readonly bigint[]
}

export interface DagLimits {
  /** The most distinct nodes walked. */
  readonly maxNodes: number
  /** The largest logical size accepted; the walk stops as soon as it is passed. */
  readonly maxLogicalBytes: number
  readonly signal?: AbortSignal
}

export interface DagMeasure {
  /** The logical size of the DAG: every file's bytes as read, a block linked N times counted N times. */
  readonly size: number
  /** Every block reachable from the root, once each (identity CIDs aside: they are not stored). */
  readonly reachable: readonly CID[]
}

async function openNode(cid: CID, blocks: DagBlocks): Promise<Measured | Opened> {
  const identity = cid.multihash.code === IDENTITY_CODE ? cid.multihash.digest : undefined
  if (cid.code === RAW_CODE) {
    const size = identity ? identity.byteLength : await blocks.leafSize(cid)
    if (size === null) throw missing(cid)
    return { cid, kind: 'leaf', size }
  }
  if (cid.code !== DAG_PB_CODE) throw notUnixfs(cid, 'is neither raw nor dag-pb')
  const bytes = identity ?? (await blocks.node(cid))
  if (bytes === null) throw missing(cid)
  let node: dagPb.PBNode
  let fs: UnixFS
  try {
    node = dagPb.decode(bytes)
    if (!node.Data) throw new Error('it has no UnixFS data')
    fs = UnixFS.unmarshal(node.Data)
  } catch (e) {
    throw notUnixfs(cid, `is not a UnixFS node: ${(e as Error).message}`)
  }
  const links = node.Links.map((l) => l.Hash)
  if (fs.type === 'directory' || fs.type === 'hamt-sharded-directory')
    return { cid, key: cid.toString(), kind: 'directory', links, inline: 0, blockSizes: [] }
  if (fs.type !== 'file' && fs.type !== 'raw')
    throw notUnixfs(cid, `is a ${fs.type} node; weights are files and directories`)
  if (fs.blockSizes.length !== links.length)
    throw notUnixfs(cid, `declares ${fs.blockSizes.length} block sizes for ${links.length} links`)
  return {
    cid,
    key: cid.toString(),
    kind: 'file',
    links,
    inline: fs.data?.byteLength ?? 0,
    blockSizes: fs.blockSizes,
  }
}

function tooLarge(root: CID, max: number): NodeError {
  return bad(
    'upload-too-large',
    `the DAG under ${root} holds more than ${max} bytes when read (the federation's maxModelBytes; a block linked N times counts N times)`,
    413,
  )
}

/** The logical size of an opened node whose links are all measured. */
function sizeOf(opened: Opened, measured: ReadonlyMap<string, Measured>, root: CID, max: number): number {
  let size = opened.inline
  for (let i = 0; i < opened.links.length; i++) {
    const link = opened.links[i]!
    const child = measured.get(link.toString())!
    if (opened.kind === 'file') {
      if (child.kind === 'directory') throw notUnixfs(opened.cid, `is a file that links directory ${link}`)
      if (opened.blockSizes[i] !== BigInt(child.size))
        throw notUnixfs(
          opened.cid,
          `declares ${opened.blockSizes[i]} bytes for its link ${i}, which holds ${child.size}`,
        )
    }
    size += child.size
    if (size > max) throw tooLarge(root, max)
  }
  return size
}

/**
 * Walks the DAG under `root` once per distinct node (depth-first, each node measured after its
 * links), checks it is complete and UnixFS (files of raw leaves and file nodes whose declared
 * block sizes are what their links hold, directories of files and directories), and computes its
 * logical size from the DAG itself: a node's size is its own data plus the size of every link, so
 * a leaf linked 2,000 times counts 2,000 times without being read again.
 */
export async function measureDag(root: CID, blocks: DagBlocks, limits: DagLimits): Promise<DagMeasure> {
  const { maxLogicalBytes: max, signal } = limits
  const measured = new Map<string, Measured>()
  const open = new Set<string>()
  const stack: ({ cid: CID; key: string } | Opened)[] = [{ cid: root, key: root.toString() }]
  let nodes = 0
  while (stack.length > 0) {
    if (signal?.aborted) throw bad('aborted', 'the upload was aborted', 499)
    const top = stack[stack.length - 1]!
    if (measured.has(top.key)) {
      stack.pop()
      continue
    }
    if ('links' in top) {
      stack.pop()
      open.delete(top.key)
      measured.set(top.key, { cid: top.cid, kind: top.kind, size: sizeOf(top, measured, root, max) })
      continue
    }
    if (++nodes > limits.maxNodes)
      throw bad('dag-too-large', `the DAG under ${root} has more than ${limits.maxNodes} nodes`, 413)
    const opened = await openNode(top.cid, blocks)
    if (!('links' in opened)) {
      stack.pop()
      if (opened.size > max) throw tooLarge(root, max)
      measured.set(top.key, opened)
      continue
    }
    stack[stack.length - 1] = opened
    open.add(opened.key)
    const queued = new Set<string>()
    for (let i = opened.links.length - 1; i >= 0; i--) {
      const link = opened.links[i]!
      const key = link.toString()
      // Content addressing rules out cycles; refusing one keeps a broken hash from looping here.
      if (open.has(key)) throw notUnixfs(opened.cid, `links ${link}, a node above it`)
      if (measured.has(key) || queued.has(key)) continue
      queued.add(key)
      stack.push({ cid: link, key })
    }
  }
  const reachable: CID[] = []
  for (const m of measured.values()) if (m.cid.multihash.code !== IDENTITY_CODE) reachable.push(m.cid)
  return { size: measured.get(root.toString())!.size, reachable }
}

/** The walk's view of an upload: its staged blocks first, then what the blockstore held before. */
function dagBlocks(staged: StagedUpload, blockstore: UploadBlockstore, signal?: AbortSignal): DagBlocks {
  return {
    async node(cid) {
      if (staged.sizeOf(cid.toString()) !== undefined) return staged.read(cid)
      return readAll(blockstore, cid, signal)
    },
    async leafSize(cid) {
      return staged.sizeOf(cid.toString()) ?? (await staged.heldSize(cid)) ?? null
    },
  }
}

/** Moves the staged blocks of `reachable` into the blockstore, `WRITES_IN_FLIGHT` at a time, the root last. */
async function moveIn(staged: StagedUpload, reachable: readonly CID[], root: CID): Promise<void> {
  const queue = reachable.filter((cid) => !cid.equals(root) && staged.sizeOf(cid.toString()) !== undefined)
  const worker = async () => {
    for (let cid = queue.pop(); cid !== undefined; cid = queue.pop()) await staged.moveIn(cid)
  }
  await Promise.all(Array.from({ length: WRITES_IN_FLIGHT }, worker))
  if (staged.sizeOf(root.toString()) !== undefined) await staged.moveIn(root)
}

/**
 * Uploads at once: at most `perAuthor` for one author (a publisher's DID, or the admin) and `total`
 * in all, so no one can hold every slot, or the disk, with uploads held open.
 */
export class UploadSlots {
  private readonly byAuthor = new Map<string, number>()
  private inUse = 0

  constructor(
    readonly perAuthor: number,
    readonly total: number,
  ) {}

  /** Takes a slot for `author`, or throws `upload-busy`; returns the slot's release (once). */
  acquire(author: string): () => void {
    const mine = this.byAuthor.get(author) ?? 0
    if (mine >= this.perAuthor)
      throw new NodeError(
        'upload-busy',
        `${author} has ${mine} uploads under way on this node, the most it takes at once; wait for one to end`,
        { status: 429 },
      )
    if (this.inUse >= this.total)
      throw new NodeError(
        'upload-busy',
        `this node has ${this.inUse} uploads under way, the most it takes at once; try again shortly`,
        { status: 429 },
      )
    this.byAuthor.set(author, mine + 1)
    this.inUse++
    let released = false
    return () => {
      if (released) return
      released = true
      this.inUse--
      const left = (this.byAuthor.get(author) ?? 1) - 1
      if (left === 0) this.byAuthor.delete(author)
      else this.byAuthor.set(author, left)
    }
  }
}

export function createWeights(options: {
  blockstore: UploadBlockstore
  staging: UploadStaging
  gate: UploadGate
  pins?: UploadPins | undefined
  log?: Logger
}): Weights {
  const { blockstore, pins, staging } = options
  const log = options.log ?? silentLogger
  const inFlight = new Set<Promise<unknown>>()

  const receive = async (source: AsyncIterable<Uint8Array>, opts: ReceiveOptions): Promise<UploadResult> => {
    const staged = await staging.begin()
    const writes = new Set<Promise<void>>()
    const buffers = new SectionBuffers()
    let writeFailed: { error: unknown } | undefined
    const reader = new ByteReader(source, opts.maxBytes)
    try {
      const root = await readHeader(reader)
      if (opts.root !== undefined && !root.equals(opts.root))
        throw bad(
          'upload-root-mismatch',
          `the CAR's root is ${root}; the upload statement signs ${opts.root}`,
        )
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
        if (distinct.has(key) || cid.multihash.code === IDENTITY_CODE) {
          buffers.release(buffer)
          if (distinct.has(key)) continue
        }
        if (distinct.size >= opts.maxBlocks)
          throw bad('too-many-blocks', `uploads hold at most ${opts.maxBlocks} blocks`, 413)
        distinct.add(key)
        if (cid.multihash.code === IDENTITY_CODE) continue
        // Checked, then staged: nothing is written before its hash matched.
        const task: Promise<void> = checkHash(cid, bytes)
          .then(() => staged.put(cid, bytes))
          .then(
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
      const dag = await measureDag(root, dagBlocks(staged, blockstore, opts.signal), {
        maxNodes: opts.maxBlocks + 65_536,
        maxLogicalBytes: opts.maxLogicalBytes,
        ...(opts.signal ? { signal: opts.signal } : {}),
      })
      if (opts.size !== undefined && dag.size !== opts.size)
        throw bad(
          'upload-size-mismatch',
          `the upload statement signs ${opts.size} bytes; the DAG under ${root} holds ${dag.size} when read`,
        )
      await moveIn(staged, dag.reachable, root)
      const pinned = await pin(root, opts.signal).catch((e) => {
        log.warn('weights-pin-failed', { root: root.toString(), error: e as Error })
        return false
      })
      const dropped =
        staged.blocks - dag.reachable.filter((c) => staged.sizeOf(c.toString()) !== undefined).length
      log.info('weights-uploaded', {
        root: root.toString(),
        blocks: dag.reachable.length,
        bytes: dag.size,
        dropped,
        pinned,
      })
      return {
        root,
        blocks: dag.reachable.length,
        bytes: dag.size,
        carBytes: reader.total,
        dropped,
        pinned,
      }
    } finally {
      reader.close()
      // Writes still running finish first: a block they stage then goes with the rest.
      await Promise.allSettled([...writes])
      await staged.discard().catch((e) => log.warn('upload-staging-cleanup-failed', { error: e as Error }))
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
    gate: options.gate,
    close: () => options.gate.nonces.close(),
  }
}

export interface OpenWeightsOptions {
  readonly blockstore: UploadBlockstore
  readonly pins?: UploadPins | undefined
  /** `HOME/upload-staging`: cleared now. */
  readonly stagingDir: string
  /** `HOME/upload-nonces`. */
  readonly noncesPath: string
  readonly federation: CID
  readonly peerId: string
  readonly clock: () => number
  readonly maxUploadsPerAuthor: number
  readonly maxUploads: number
  readonly idleMs: number
  readonly log?: Logger
}

/**
 * The uploads of a node as it starts: the staging directory cleared of what a stop or crash cut
 * off, the nonces of statements still fresh read back, and the slots.
 */
export async function openWeights(options: OpenWeightsOptions): Promise<Weights> {
  const log = options.log ?? silentLogger
  const { staging, cleared } = await UploadStaging.open(options.stagingDir, options.blockstore)
  if (cleared > 0) log.warn('upload-staging-cleared', { uploads: cleared })
  const nonces = await openUploadNonces(options.noncesPath, {
    clock: options.clock,
    windowMs: UPLOAD_WINDOW_MS,
  })
  return createWeights({
    blockstore: options.blockstore,
    staging,
    pins: options.pins,
    log,
    gate: {
      federation: options.federation,
      peerId: options.peerId,
      nonces,
      slots: new UploadSlots(options.maxUploadsPerAuthor, options.maxUploads),
      idleMs: options.idleMs,
      windowMs: UPLOAD_WINDOW_MS,
    },
  })
}
