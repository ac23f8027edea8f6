/**
 * An IPFS trustless gateway (DESIGN.md §6 "Weights"; specs.ipfs.tech
 * http-gateways/trustless-gateway): `GET`/`HEAD /ipfs/<cid>[/<path>]` as one
 * raw block (`application/vnd.ipld.raw`) or a CARv1 stream
 * (`application/vnd.ipld.car; version=1; order=dfs; dups=n|y`), so any IPFS
 * client, and our own fetcher, can download weights over plain HTTP and verify
 * every block against its CID. Nothing here needs to be trusted.
 *
 * Why it is built this way:
 * - It serves only blocks under a pinned root (`pins`: Helia's per-block pin
 *   records, kept for every block a recursive pin walked). A block the store
 *   holds but no pin reaches — one left over by an upload that failed, or put
 *   there by anything but an upload, import or fetch — is a 404 exactly like a
 *   block that is not held, so the answer does not even say whether it is
 *   there. The root's record is checked before the store is read; every block
 *   on a path and in a CAR is checked again before it is sent.
 * - It reads the blockstore it is given and nothing else: never Helia's
 *   networked blockstore, which may ask bitswap and wait. A block that is not
 *   held is a 404 at once; the gateway is non-recursive by design.
 * - CARs are streamed with a hand-rolled CARv1 writer (an async generator
 *   behind a byte-mode `Readable`): backpressure comes from the socket, one
 *   block is in memory at a time, and an error mid-walk simply ends the
 *   response. @ipld/car's `CarWriter` also streams, but it splits every block
 *   into three writes through a channel whose producer and consumer run as two
 *   tasks, which makes "stop at the first missing block and cut the response"
 *   harder to get right than twenty lines of framing.
 * - Once the root block has been found the status is 200 and headers are
 *   sent; a child block missing (or undecodable) later makes the gateway log
 *   it and destroy the connection, so the client sees a truncated CAR and
 *   must treat it as a failed retrieval (spec: "Streaming and Missing Child
 *   Blocks").
 * - The walk is depth-first pre-order over dag-pb, raw and dag-cbor links,
 *   with an explicit stack (no recursion on untrusted depth). Blocks of other
 *   codecs are sent but not looked into. Identity CIDs are never sent.
 * - A response never carries a block twice, so what one request can make the
 *   node send is bounded by the blocks it stores under the root, not by how
 *   often they are linked (one leaf linked 2,000 times is one leaf). `dups=y`
 *   is answered as asked only for a DAG in which no block repeats (then the two
 *   streams are the same); otherwise the CAR is sent with `dups=n`, and its
 *   Content-Type says so (docs/adr/0001-gateway-pinned-and-no-repeats.md).
 * - Paths: plain UnixFS directories are resolved (their blocks are sent first,
 *   as the spec asks); a HAMT-sharded directory or a dag-cbor path answers 501.
 *   `entity-bytes` answers 501 too. Raw block requests take no path (400).
 *
 * Errors are JSON `{error: {code, message}}`: 400 `bad-cid`, `bad-dag-scope`,
 * `format-required`, `path-not-allowed`; 404 `block-not-found` (not held, or
 * held but under no pin: the same answer), `path-not-found`; 406
 * `not-acceptable`; 412 `not-cached`; 501 `path-unsupported`,
 * `entity-bytes-unsupported`; 500 `internal`.
 */
import { createHash } from 'node:crypto'
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { decode as decodeCbor } from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import { DAG_CBOR_CODE } from '../../protocol/cbor.js'
import { DAG_PB_CODE, IDENTITY_CODE, RAW_CODE } from '../../protocol/cid.js'
import { type Logger, silentLogger } from '../log.js'
import { carHeader, sectionPrefix } from './car-sections.js'

/** What the gateway needs of a blockstore: `get` (blockstore-fs 4 and interface-blockstore 7 shape). */
export interface GatewayBlockstore {
  get(
    cid: CID,
    options?: { signal?: AbortSignal },
  ): AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Uint8Array | Promise<Uint8Array>
  /**
   * Optional (BlockFiles): reads a block into `target`, giving its length, or undefined when it
   * may not fit (then `get` reads it); throws as `get` does for a block not held.
   */
  readInto?(cid: CID, target: Uint8Array, options?: { signal?: AbortSignal }): Promise<number | undefined>
}

/**
 * Which blocks may be served: Helia's `pins` fits. `isPinned` must be true for every block a
 * recursive pin walked (Helia keeps a record per block, by multihash, for each one its walker
 * yields, leaves included) and false for a block no pin reaches.
 */
export interface GatewayPins {
  isPinned(cid: CID, options?: { signal?: AbortSignal }): Promise<boolean>
}

export interface GatewayOptions {
  /** A local store (e.g. `FsBlockstore`), never one that fetches from the network. */
  blockstore: GatewayBlockstore
  /** Only blocks under a pinned root are served; any other block is a 404. */
  pins: GatewayPins
  log?: Logger
}

export type DagScope = 'all' | 'entity' | 'block'

export const RAW_TYPE = 'application/vnd.ipld.raw'
export const CAR_TYPE = 'application/vnd.ipld.car'
export const IMMUTABLE = 'public, max-age=29030400, immutable'
/** Larger blocks are refused: IPFS blocks are at most a few MiB, and one block is held in memory. */
export const MAX_BLOCK_BYTES = 4 * 1024 * 1024
const MAX_CID_TEXT = 256

class GatewayError extends Error {
  override name = 'GatewayError'
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

/** Thrown inside the CAR walk; the response is cut (headers are already sent). */
class WalkError extends Error {
  override name = 'WalkError'
  constructor(
    readonly code: 'block-not-found' | 'block-not-pinned' | 'block-invalid' | 'block-too-large',
    readonly cid: CID,
    message: string,
  ) {
    super(message)
  }
}

type Negotiated =
  | { format: 'raw'; viaAccept: boolean }
  | { format: 'car'; viaAccept: boolean; dups: 'n' | 'y' }

interface MediaRange {
  type: string
  params: Map<string, string>
  q: number
}

/** `Accept` as media ranges, best first (stable for equal q); q=0 entries dropped. */
export function parseAccept(header: string | undefined): MediaRange[] {
  if (!header) return []
  const out: MediaRange[] = []
  for (const part of header.split(',')) {
    const [type, ...rest] = part.split(';')
    const params = new Map<string, string>()
    let q = 1
    for (const p of rest) {
      const eq = p.indexOf('=')
      if (eq < 0) continue
      const key = p.slice(0, eq).trim().toLowerCase()
      const value = p
        .slice(eq + 1)
        .trim()
        .replace(/^"(.*)"$/, '$1')
      if (key === 'q') q = Number.isFinite(Number(value)) ? Number(value) : 0
      else params.set(key, value.toLowerCase())
    }
    const t = (type ?? '').trim().toLowerCase()
    if (t && q > 0) out.push({ type: t, params, q })
  }
  return out
    .map((m, i) => ({ m, i }))
    .sort((a, b) => b.m.q - a.m.q || a.i - b.i)
    .map(({ m }) => m)
}

/** CAR parameters we can honour, or null: version 1, order dfs (or unknown), dups n or y. */
function carParams(get: (key: string) => string | undefined): { dups: 'n' | 'y' } | null {
  const version = get('version')
  const order = get('order')
  const dups = get('dups')
  if (version !== undefined && version !== '1') return null
  if (order !== undefined && order !== 'dfs' && order !== 'unk') return null
  if (dups !== undefined && dups !== 'n' && dups !== 'y') return null
  return { dups: dups === 'y' ? 'y' : 'n' }
}

function negotiate(query: Record<string, string | undefined>, accept: string | undefined): Negotiated {
  const ranges = parseAccept(accept)
  const fromAccept = ranges.find((r) => r.type === CAR_TYPE && carParams((k) => r.params.get(k)))
  const carQuery = (fallback: MediaRange | undefined) =>
    carParams((k) => query[`car-${k}`] ?? fallback?.params.get(k))

  const format = query.format
  if (format !== undefined) {
    if (format === 'raw') return { format: 'raw', viaAccept: false }
    if (format === 'car') {
      const p = carQuery(fromAccept)
      if (!p) throw notAcceptable()
      return { format: 'car', viaAccept: false, ...p }
    }
    throw new GatewayError(
      406,
      'not-acceptable',
      `format=${format.slice(0, 40)} is not served here: this trustless gateway serves format=raw and format=car`,
    )
  }
  for (const r of ranges) {
    if (r.type === RAW_TYPE) return { format: 'raw', viaAccept: true }
    if (r.type === CAR_TYPE) {
      const p = carQuery(r)
      if (p) return { format: 'car', viaAccept: true, ...p }
    }
  }
  if (ranges.length === 0) {
    throw new GatewayError(
      400,
      'format-required',
      `this is a trustless gateway: send Accept: ${RAW_TYPE} or ${CAR_TYPE}, or add ?format=raw or ?format=car`,
    )
  }
  throw notAcceptable()
}

function notAcceptable(): GatewayError {
  return new GatewayError(
    406,
    'not-acceptable',
    `this trustless gateway serves ${RAW_TYPE} and ${CAR_TYPE}; version=1; order=dfs; dups=n|y`,
  )
}

function parseCid(text: string): CID {
  if (text.length > MAX_CID_TEXT) throw new GatewayError(400, 'bad-cid', 'the CID is too long')
  try {
    return CID.parse(text)
  } catch (e) {
    throw new GatewayError(400, 'bad-cid', `not a CID: ${text.slice(0, 80)} (${(e as Error).message})`)
  }
}

function parseScope(value: string | undefined): DagScope {
  if (value === undefined || value === 'all' || value === 'entity' || value === 'block') return value ?? 'all'
  throw new GatewayError(
    400,
    'bad-dag-scope',
    `dag-scope must be all, entity or block, not ${value.slice(0, 40)}`,
  )
}

function isNotFound(e: unknown): boolean {
  const name = (e as { name?: unknown } | null)?.name
  const code = (e as { code?: unknown } | null)?.code
  return name === 'NotFoundError' || code === 'ERR_NOT_FOUND' || code === 'ENOENT'
}

/** A piece of a response; `release` gives its buffer back once the socket is done with it. */
interface Part {
  readonly bytes: Uint8Array
  readonly release?: () => void
}

/**
 * Buffers for the blocks of CAR responses, reused once written to the socket. Why: a buffer per
 * block read makes 256 MiB of short-lived memory outside the heap for a 256 MiB model, and the
 * full collections that sets off took more of the serving node's time than reading and sending
 * (bench/fetch.ts). At most `count` exist, shared by every response; when all are in use a block
 * is read into a buffer of its own, as before.
 */
class BlockBuffers {
  private readonly free: Uint8Array[] = []
  private made = 0

  constructor(
    private readonly capacity: number,
    private readonly count: number,
  ) {}

  take(): Uint8Array | undefined {
    const reused = this.free.pop()
    if (reused) return reused
    if (this.made >= this.count) return undefined
    this.made++
    return new Uint8Array(this.capacity)
  }

  give(buffer: Uint8Array): void {
    this.free.push(buffer)
  }
}

/** A block as a `Part`: into a reused buffer when the store can, else as `readBlock` reads it. */
async function readPart(
  store: GatewayBlockstore,
  cid: CID,
  signal: AbortSignal,
  buffers: BlockBuffers,
): Promise<Part | null> {
  // Raw leaves only (nearly all the bytes): a decoded node's CIDs are views of its bytes, which
  // must not be overwritten while its links wait on the walk's stack.
  const buffer = store.readInto && cid.code === RAW_CODE ? buffers.take() : undefined
  if (buffer !== undefined) {
    let length: number | undefined
    try {
      length = await store.readInto!(cid, buffer, { signal })
    } catch (e) {
      buffers.give(buffer)
      if (isNotFound(e)) return null
      throw e
    }
    if (length !== undefined)
      return { bytes: buffer.subarray(0, length), release: () => buffers.give(buffer) }
    buffers.give(buffer)
  }
  const bytes = await readBlock(store, cid, signal)
  return bytes === null ? null : { bytes }
}

/** Whether `cid` may be sent: an identity CID carries its own bytes; any other must be pinned. */
async function servable(pins: GatewayPins, cid: CID, signal?: AbortSignal): Promise<boolean> {
  if (cid.multihash.code === IDENTITY_CODE) return true
  return pins.isPinned(cid, signal ? { signal } : {})
}

/** What the walk reads: the store, the pins that say what may leave it, the shared buffers. */
interface Source {
  readonly store: GatewayBlockstore
  readonly pins: GatewayPins
  readonly buffers: BlockBuffers
  readonly signal: AbortSignal
}

/** A block for the walk once its pin record was found, or why it cannot be sent. */
async function readServable(source: Source, cid: CID): Promise<Part | 'not-held' | 'not-pinned'> {
  if (!(await servable(source.pins, cid, source.signal))) return 'not-pinned'
  return (await readPart(source.store, cid, source.signal, source.buffers)) ?? 'not-held'
}

/** One block's bytes from the local store, or null if it is not held. Identity CIDs hold their bytes. */
async function readBlock(
  store: GatewayBlockstore,
  cid: CID,
  signal?: AbortSignal,
): Promise<Uint8Array | null> {
  if (cid.multihash.code === IDENTITY_CODE) return cid.multihash.digest
  try {
    const got = store.get(cid, signal ? { signal } : {})
    const value = got instanceof Promise ? await got : got
    if (value instanceof Uint8Array) return value
    const chunks: Uint8Array[] = []
    let size = 0
    for await (const chunk of value) {
      size += chunk.byteLength
      if (size > MAX_BLOCK_BYTES)
        throw new WalkError('block-too-large', cid, `block ${cid} is over ${MAX_BLOCK_BYTES} bytes`)
      chunks.push(chunk)
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
  } catch (e) {
    if (isNotFound(e)) return null
    throw e
  }
}

function unixfsOf(node: dagPb.PBNode): UnixFS | null {
  if (!node.Data) return null
  try {
    return UnixFS.unmarshal(node.Data)
  } catch {
    return null
  }
}

/** dag-cbor map keys in their canonical order (length first, then bytes), as they were encoded. */
function cborKeyOrder(a: string, b: string): number {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length - y.length || Buffer.compare(x, y)
}

function cborLinks(value: unknown): CID[] {
  const out: CID[] = []
  const stack: unknown[] = [value]
  while (stack.length > 0) {
    const v = stack.pop()
    const cid = CID.asCID(v)
    if (cid) {
      out.push(cid)
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push(v[i])
    } else if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) {
      const o = v as Record<string, unknown>
      const keys = Object.keys(o).sort(cborKeyOrder)
      for (let i = keys.length - 1; i >= 0; i--) stack.push(o[keys[i]!])
    }
  }
  return out
}

interface Step {
  cid: CID
  scope: DagScope
}

/** The links to follow from one block under a scope, in link order. */
function children(cid: CID, bytes: Uint8Array, scope: DagScope): Step[] {
  if (scope === 'block') return []
  try {
    if (cid.code === DAG_PB_CODE) {
      const node = dagPb.decode(bytes)
      if (scope === 'all') return node.Links.map((l) => ({ cid: l.Hash, scope: 'all' }))
      // entity: a file's blocks, or a sharded directory's shards (not its entries); nothing else.
      const fs = unixfsOf(node)
      if (fs?.type === 'file' || fs?.type === 'raw')
        return node.Links.map((l) => ({ cid: l.Hash, scope: 'all' }))
      if (fs?.type === 'hamt-sharded-directory' && fs.fanout !== undefined && fs.fanout > 1n) {
        const pad = (fs.fanout - 1n).toString(16).length
        return node.Links.filter((l) => (l.Name ?? '').length === pad).map((l) => ({ cid: l.Hash, scope }))
      }
      return []
    }
    if (cid.code === DAG_CBOR_CODE && scope === 'all') {
      return cborLinks(decodeCbor(bytes)).map((c) => ({ cid: c, scope: 'all' }))
    }
  } catch (e) {
    throw new WalkError(
      'block-invalid',
      cid,
      `block ${cid} does not decode as its codec: ${(e as Error).message}`,
    )
  }
  return []
}

/** Blocks read ahead of the one being sent (1 MiB leaves: a few MiB of memory per stream). */
const READ_AHEAD = 8

interface CarPlan {
  root: CID
  /** Blocks of the directories on the path, in path order (already read, pins checked). */
  pathBlocks: { cid: CID; bytes: Uint8Array }[]
  /** The CID at the end of the path and its bytes (pin checked). */
  terminal: { cid: CID; bytes: Uint8Array }
  scope: DagScope
}

/**
 * The CAR body: header, the path's blocks, then the terminal DAG depth-first, each block once
 * (`dups=n`; `dups=y` is only ever labelled so for a DAG without repeats, where the two are the
 * same stream). Throws `WalkError` at the first block it cannot read, decode or may not send.
 */
async function* carBody(source: Source, plan: CarPlan): AsyncGenerator<Part> {
  yield { bytes: carHeader([plan.root]) }
  const sent = new Set<string>()
  const expanded = new Set<string>()
  const send = function* (cid: CID, part: Part) {
    const key = cid.toString()
    if (cid.multihash.code === IDENTITY_CODE || sent.has(key)) {
      part.release?.()
      return
    }
    sent.add(key)
    yield { bytes: sectionPrefix(cid, part.bytes.byteLength) }
    if (part.bytes.byteLength > 0) yield part
    else part.release?.()
  }
  for (const b of plan.pathBlocks) yield* send(b.cid, { bytes: b.bytes })

  const stack: Step[] = [{ cid: plan.terminal.cid, scope: plan.scope }]
  let first: Part | null = { bytes: plan.terminal.bytes }
  // Read-ahead: the next blocks on the stack are read while this one is being sent, so the
  // socket never waits on the disk (at most READ_AHEAD blocks in memory).
  const reads = new Map<string, Promise<Part | 'not-held' | 'not-pinned'>>()
  const readAhead = () => {
    for (let i = stack.length - 1, n = 0; i >= 0 && n < READ_AHEAD; i--, n++) {
      const cid = stack[i]!.cid
      const k = cid.toString()
      if (reads.has(k) || sent.has(k)) continue
      const read = readServable(source, cid)
      read.catch(() => {}) // observed when it is its turn; never unhandled if the walk ends first
      reads.set(k, read)
    }
  }
  try {
    while (stack.length > 0) {
      const step = stack.pop()!
      const key = `${step.scope}:${step.cid}`
      // A block is sent once and its subtree walked once per scope (identity blocks too: they
      // are never sent, but walking one again would only find blocks already sent).
      if (expanded.has(key)) continue
      let got: Part | 'not-held' | 'not-pinned'
      if (first !== null) got = first
      else {
        const k = step.cid.toString()
        const pending = reads.get(k)
        reads.delete(k)
        readAhead()
        got = await (pending ?? readServable(source, step.cid))
      }
      first = null
      if (got === 'not-held')
        throw new WalkError('block-not-found', step.cid, `block ${step.cid} is not held here`)
      if (got === 'not-pinned')
        throw new WalkError('block-not-pinned', step.cid, `block ${step.cid} is not under a pinned root`)
      // Its links are taken before it is sent: once written, its buffer may be reused.
      let next: Step[]
      try {
        next = children(step.cid, got.bytes, step.scope)
      } catch (e) {
        got.release?.()
        throw e
      }
      yield* send(step.cid, got)
      expanded.add(key)
      for (let i = next.length - 1; i >= 0; i--) stack.push(next[i]!)
      if (next.length > 0) readAhead()
    }
  } finally {
    // Reads ahead that were never sent give their buffers back.
    for (const read of reads.values())
      void read.then(
        (p) => (typeof p === 'object' ? p.release?.() : undefined),
        () => {},
      )
  }
}

/**
 * Whether a `dups=y` stream of `plan` would carry some block twice: the same walk as `carBody`'s,
 * stopping at the first CID met again. Only blocks whose links it follows are read (dag-pb and
 * dag-cbor nodes, a small part of the bytes); raw leaves are not. A block it cannot read or may
 * not send counts as a repeat: the answer is then `dups=n`, and the walk cuts the stream there.
 */
async function repeatsBlocks(source: Source, plan: CarPlan): Promise<boolean> {
  const seen = new Set<string>(plan.pathBlocks.map((b) => b.cid.toString()))
  const stack: Step[] = [{ cid: plan.terminal.cid, scope: plan.scope }]
  let first: Uint8Array | null = plan.terminal.bytes
  while (stack.length > 0) {
    const step = stack.pop()!
    const key = step.cid.toString()
    if (seen.has(key)) return true
    seen.add(key)
    const linked = step.cid.code === DAG_PB_CODE || step.cid.code === DAG_CBOR_CODE
    if (!linked || step.scope === 'block') {
      first = null
      continue
    }
    let bytes = first
    first = null
    if (bytes === null) {
      if (!(await servable(source.pins, step.cid, source.signal))) return true
      bytes = await readBlock(source.store, step.cid, source.signal)
      if (bytes === null) return true
    }
    let next: Step[]
    try {
      next = children(step.cid, bytes, step.scope)
    } catch (e) {
      if (e instanceof WalkError) return true
      throw e
    }
    for (let i = next.length - 1; i >= 0; i--) stack.push(next[i]!)
  }
  return false
}

/**
 * Writes a CAR body to the socket, each part's buffer given back once the socket has taken it;
 * waits for the socket to drain when it is full. A failing walk cuts the response (the client
 * sees a truncated CAR, as the spec asks) and is rethrown.
 */
async function pump(res: ServerResponse, parts: AsyncIterable<Part>): Promise<void> {
  for await (const part of parts) {
    if (res.destroyed) {
      part.release?.()
      break
    }
    const release = part.release
    const room = res.write(part.bytes, release ? () => release() : undefined)
    if (!room && !res.destroyed)
      await new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done)
          res.off('close', done)
          resolve()
        }
        res.once('drain', done)
        res.once('close', done)
      })
  }
  if (!res.destroyed) res.end()
}

/** Query parameters, the first value of each repeated one. */
function firstValues(query: unknown): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {}
  for (const [k, v] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    const first = Array.isArray(v) ? v[0] : v
    if (typeof first === 'string') out[k] = first
  }
  return out
}

function fail(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.code(status).header('Cache-Control', 'no-store').send({ error: { code, message } })
}

function rawEtag(cid: CID): string {
  return `"${cid}.raw"`
}

function carEtag(cid: CID, dups: 'n' | 'y', scope: DagScope, path: string[]): string {
  const p =
    path.length > 0 ? `.${createHash('sha256').update(path.join('/')).digest('hex').slice(0, 16)}` : ''
  // The stream is deterministic (dfs, one traversal), so the tag is strong.
  return `"${cid}.car.${scope}.dfs.${dups}${p}"`
}

/**
 * The tags this URL's response may carry. A `dups=y` request is answered with `dups=n` for a DAG
 * that repeats blocks, which is known only after a walk; the content never changes, so a client
 * holding either tag for this URL holds what it would get again.
 */
function etagsFor(cid: CID, negotiated: Negotiated, scope: DagScope, path: string[]): string[] {
  if (negotiated.format === 'raw') return [rawEtag(cid)]
  const asked = carEtag(cid, negotiated.dups, scope, path)
  return negotiated.dups === 'y' ? [asked, carEtag(cid, 'n', scope, path)] : [asked]
}

/** The tag of `etags` that `If-None-Match` names (the first one for `*`), or undefined. */
function matchingEtag(header: string | undefined, etags: string[]): string | undefined {
  if (!header) return undefined
  for (const t of header.split(',')) {
    const tag = t.trim()
    if (tag === '*') return etags[0]
    const found = etags.find((etag) => tag === etag || tag === `W/${etag}`)
    if (found) return found
  }
  return undefined
}

/**
 * Resolves `path` from `root` through plain UnixFS directories; the blocks on the way and the end.
 * Each block on the way must be pinned, as any block sent.
 */
async function resolvePath(
  source: Source,
  root: { cid: CID; bytes: Uint8Array },
  path: string[],
): Promise<{ pathBlocks: { cid: CID; bytes: Uint8Array }[]; terminal: { cid: CID; bytes: Uint8Array } }> {
  const pathBlocks: { cid: CID; bytes: Uint8Array }[] = []
  let at = root
  for (const [i, name] of path.entries()) {
    const where = `/${path.slice(0, i).join('/')}`
    if (at.cid.code !== DAG_PB_CODE) {
      if (at.cid.code === DAG_CBOR_CODE)
        throw new GatewayError(
          501,
          'path-unsupported',
          'paths into dag-cbor are not served here; ask for the CID',
        )
      throw new GatewayError(404, 'path-not-found', `${where} is not a directory, so it has no ${name}`)
    }
    let node: dagPb.PBNode
    try {
      node = dagPb.decode(at.bytes)
    } catch {
      throw new GatewayError(404, 'path-not-found', `${where} is not a valid dag-pb block`)
    }
    const fs = unixfsOf(node)
    if (fs?.type === 'hamt-sharded-directory') {
      throw new GatewayError(
        501,
        'path-unsupported',
        `${where} is a sharded directory; paths through those are not served here, ask for the file's CID`,
      )
    }
    if (fs?.type !== 'directory') throw new GatewayError(404, 'path-not-found', `${where} is not a directory`)
    const link = node.Links.find((l) => l.Name === name)
    if (!link) throw new GatewayError(404, 'path-not-found', `${where} has no entry ${name}`)
    pathBlocks.push(at)
    const pinned = await servable(source.pins, link.Hash, source.signal)
    const bytes = pinned ? await readBlock(source.store, link.Hash, source.signal) : null
    if (bytes === null) {
      throw new GatewayError(
        404,
        'block-not-found',
        `block ${link.Hash} (at ${where}/${name}) is not held here`,
      )
    }
    at = { cid: link.Hash, bytes }
  }
  return { pathBlocks, terminal: at }
}

/**
 * Adds `GET` and `HEAD` `/ipfs/:cid` and `/ipfs/:cid/*` to `app`. The routes
 * answer their own errors, so any Fastify instance can carry them.
 */
export function registerGateway(app: FastifyInstance, options: GatewayOptions): void {
  const { blockstore, pins } = options
  const log = options.log ?? silentLogger
  // A profile leaf (1 MiB) fits with room to spare; enough for a few responses' read-ahead.
  const buffers = new BlockBuffers(1024 * 1024 + 64 * 1024, 4 * (READ_AHEAD + 4))

  const handle = async (req: FastifyRequest, reply: FastifyReply) => {
    const params = req.params as { cid: string; '*'?: string }
    const query = firstValues(req.query)
    const head = req.method === 'HEAD'
    const controller = new AbortController()
    reply.raw.once('close', () => controller.abort())
    const source: Source = { store: blockstore, pins, buffers, signal: controller.signal }
    try {
      const cid = parseCid(params.cid)
      const path = (params['*'] ?? '').split('/').filter((s) => s.length > 0)
      const negotiated = negotiate(query, req.headers.accept)
      const scope = negotiated.format === 'car' ? parseScope(query['dag-scope']) : 'block'
      if (negotiated.format === 'raw' && path.length > 0) {
        throw new GatewayError(
          400,
          'path-not-allowed',
          'raw block requests take no path: ask for the CID itself',
        )
      }
      if (negotiated.format === 'car' && query['entity-bytes'] !== undefined) {
        throw new GatewayError(
          501,
          'entity-bytes-unsupported',
          'entity-bytes is not supported by this gateway',
        )
      }

      // A block no pin reaches gets the answer of one not held, before the store is read: the
      // response does not tell whether the node has it.
      const notServed = () =>
        /only-if-cached/i.test(req.headers['cache-control'] ?? '')
          ? new GatewayError(412, 'not-cached', `block ${cid} is not held here`)
          : new GatewayError(
              404,
              'block-not-found',
              `block ${cid} is not held here (this gateway serves only the weights this node pins)`,
            )
      if (!(await servable(pins, cid, controller.signal))) throw notServed()

      // Set on success only: an error must not be cached as immutable.
      const headers: Record<string, string> = {
        'Cache-Control': IMMUTABLE,
        Vary: 'Accept',
        'X-Content-Type-Options': 'nosniff',
        'X-Ipfs-Path': `/ipfs/${params.cid}${path.length > 0 ? `/${path.join('/')}` : ''}`,
      }
      if (negotiated.viaAccept) {
        const sep = req.url.includes('?') ? '&' : '?'
        headers['Content-Location'] = `${req.url}${sep}format=${negotiated.format}`
      }
      // Content-addressed: a tag the client already holds for this URL can never go stale.
      const held = matchingEtag(req.headers['if-none-match'], etagsFor(cid, negotiated, scope, path))
      if (held)
        return reply
          .code(304)
          .headers({ ...headers, Etag: held })
          .send()

      const rootBytes = await readBlock(blockstore, cid, controller.signal)
      if (rootBytes === null) throw notServed()

      if (negotiated.format === 'raw') {
        reply.headers(headers)
        reply.header('Etag', rawEtag(cid))
        reply.header('Content-Disposition', `attachment; filename="${cid}.bin"`)
        reply.header('X-Ipfs-Roots', cid.toString())
        reply.type(RAW_TYPE)
        if (head) return reply.header('Content-Length', String(rootBytes.byteLength)).send()
        return reply.send(Buffer.from(rootBytes.buffer, rootBytes.byteOffset, rootBytes.byteLength))
      }

      const { pathBlocks, terminal } = await resolvePath(source, { cid, bytes: rootBytes }, path)
      const plan: CarPlan = { root: cid, pathBlocks, terminal, scope }
      // dups=y as asked only where it is the dups=n stream: no block may leave twice.
      let dups = negotiated.dups
      if (dups === 'y' && (await repeatsBlocks(source, plan))) {
        dups = 'n'
        log.debug('gateway-dups-n', { root: cid.toString() })
      }
      // One logical root per path segment: the requested CID, each directory passed, the end.
      const roots = path.length > 0 ? [...pathBlocks.map((b) => b.cid), terminal.cid] : [cid]
      reply.headers(headers)
      reply.header('Etag', carEtag(cid, dups, scope, path))
      reply.header('Content-Disposition', `attachment; filename="${cid}.car"`)
      reply.header('X-Ipfs-Roots', roots.join(','))
      reply.header('Accept-Ranges', 'none')
      reply.type(`${CAR_TYPE}; version=1; order=dfs; dups=${dups}`)
      if (head) return reply.send()

      // Written to the socket here, not through reply.send: only so is it known when a block's
      // buffer has been taken by the socket and may be reused (BlockBuffers).
      reply.hijack()
      const res = reply.raw
      res.writeHead(200, reply.getHeaders() as OutgoingHttpHeaders)
      try {
        await pump(res, carBody(source, plan))
      } catch (e) {
        // A client that left aborts the read in flight: that is not a missing block.
        if (controller.signal.aborted) {
          log.debug('gateway-car-aborted', { root: cid.toString() })
        } else if (e instanceof WalkError) {
          log.warn('gateway-car-truncated', { root: cid.toString(), cid: e.cid.toString(), reason: e.code })
        } else {
          log.error('gateway-car-failed', { root: cid.toString(), error: e as Error })
        }
        res.destroy()
      }
      return reply
    } catch (e) {
      if (e instanceof GatewayError) return fail(reply, e.status, e.code, e.message)
      if (e instanceof WalkError) return fail(reply, 500, e.code, e.message)
      // A client that left before the headers (a read or the dups=y walk aborted): nothing failed.
      if (controller.signal.aborted) {
        log.debug('gateway-aborted', { url: req.url })
        return reply
      }
      log.error('gateway-error', { url: req.url, error: e as Error })
      return fail(reply, 500, 'internal', 'the gateway could not read its blockstore; see the node log')
    }
  }

  for (const url of ['/ipfs/:cid', '/ipfs/:cid/*']) {
    app.route({ method: ['GET', 'HEAD'], url, handler: handle })
  }
}
