/**
 * The gateway's reads (gateway.ts): only from the local store, only blocks a pin reaches, raw
 * leaves into reused buffers, and a path resolved through plain UnixFS directories.
 */
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import type { CID } from 'multiformats/cid'
import { DAG_CBOR_CODE } from '../../protocol/cbor.js'
import { DAG_PB_CODE, IDENTITY_CODE, RAW_CODE } from '../../protocol/cid.js'
import { GatewayError, WalkError } from './gateway-errors.js'
import { MAX_BLOCK_BYTES } from './profile.js'

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
  /**
   * Optional (gateway-serving.ts): for a block `isPinned` refused, the version it is withheld for
   * when every pinned root holding it is withheld (answered 451), else undefined (404).
   */
  withheldBy?(cid: CID, options?: { signal?: AbortSignal }): Promise<WithheldVersion | undefined>
}

/** A version whose weights no node serves until it is decided: its `name@version` and status. */
export interface WithheldVersion {
  readonly model: string
  readonly status: string
}

export function isNotFound(e: unknown): boolean {
  const name = (e as { name?: unknown } | null)?.name
  const code = (e as { code?: unknown } | null)?.code
  return name === 'NotFoundError' || code === 'ERR_NOT_FOUND' || code === 'ENOENT'
}

/** A piece of a response; `release` gives its buffer back once the socket is done with it. */
export interface Part {
  readonly bytes: Uint8Array
  readonly release?: () => void
}

/**
 * Buffers for the blocks of CAR responses, reused once written to the socket (why: ADR 0012). At
 * most `count` exist, shared by every response; when all are in use a block is read into a buffer
 * of its own.
 */
export class BlockBuffers {
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
export async function readPart(
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
export async function servable(pins: GatewayPins, cid: CID, signal?: AbortSignal): Promise<boolean> {
  if (cid.multihash.code === IDENTITY_CODE) return true
  return pins.isPinned(cid, signal ? { signal } : {})
}

/** What the walk reads: the store, the pins that say what may leave it, the shared buffers. */
export interface Source {
  readonly store: GatewayBlockstore
  readonly pins: GatewayPins
  readonly buffers: BlockBuffers
  readonly signal: AbortSignal
}

/** A block for the walk once its pin record was found, or why it cannot be sent. */
export async function readServable(source: Source, cid: CID): Promise<Part | 'not-held' | 'not-pinned'> {
  if (!(await servable(source.pins, cid, source.signal))) return 'not-pinned'
  return (await readPart(source.store, cid, source.signal, source.buffers)) ?? 'not-held'
}

/** One block's bytes from the local store, or null if it is not held. Identity CIDs hold their bytes. */
export async function readBlock(
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

export function unixfsOf(node: dagPb.PBNode): UnixFS | null {
  if (!node.Data) return null
  try {
    return UnixFS.unmarshal(node.Data)
  } catch {
    return null
  }
}

/**
 * Resolves `path` from `root` through plain UnixFS directories; the blocks on the way and the end.
 * Each block on the way must be pinned, as any block sent.
 */
export async function resolvePath(
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
