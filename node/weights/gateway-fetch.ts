/**
 * Fetching a weights DAG from another steward's IPFS trustless gateway (gateway.ts), for fast
 * verified HTTP fetches.
 *
 * One request, `GET <gateway>/ipfs/<root>?format=car&dag-scope=all&car-order=dfs&car-dups=n`,
 * streamed: the CAR's blocks go into the node's blockstore as they arrive. Nothing about the
 * gateway is trusted:
 *
 * - A block is taken only if it is *wanted*: the root, or a block a taken dag-pb node links to.
 *   So a gateway can only send blocks of this DAG; anything else ends the fetch (`block-unwanted`).
 * - Every block is hashed and compared with its CID before it is stored (`block-corrupt`).
 * - Codec and hash must be the profile's (dag-pb or raw, sha2-256), and the byte and block
 *   budgets are those of `fetchWeights` (`oversize`).
 *
 * A gateway that stops early, or omits blocks, is not an error here: the result says how many
 * blocks are still wanted, and `fetchWeights` (which walks the DAG afterwards) gets the rest over
 * bitswap or reports them missing. The keys of blocks hashed here are returned, so that walk need
 * not hash them a second time.
 *
 * Why HTTP beside bitswap, and how it keeps up with the disk: docs/adr/0012-weights-transfer-speed.md.
 */

import type { IncomingMessage } from 'node:http'
import { get as httpGet } from 'node:http'
import { get as httpsGet } from 'node:https'
import * as dagPb from '@ipld/dag-pb'
import type { CID } from 'multiformats/cid'
import { equalBytes } from '../../protocol/bytes.js'
import { DAG_PB_CODE, RAW_CODE, SHA2_256_CODE } from '../../protocol/cid.js'
import { isNodeError, NodeError } from '../errors.js'
import { nativeSha256 } from '../sha256.js'
import { BlockFiles } from './block-files.js'
import { carSections } from './car-sections.js'
import { DfsFileDigests } from './dfs-files.js'
import { CAR_TYPE } from './http-contract.js'
import { LeafHasher, type Placed } from './leaf-hasher.js'
import type { FileDigest } from './local-files.js'
import { MAX_BLOCK_BYTES } from './profile.js'

/**
 * How long a gateway may send nothing (no answer, no byte) before it is left for the next one or
 * bitswap: the fetch's own deadline is long enough for GiBs, and one silent host must not use it up.
 */
const STALL_MS = 20_000

/** Blocks between the stream and the disk (hashed or written), 1 MiB each at most. */
const IN_FLIGHT = 8

export interface GatewayBlockstore {
  put(cid: CID, bytes: Uint8Array): Promise<unknown>
}

export interface GatewayFetchOptions {
  /** The gateway's base URL, e.g. `http://steward-b.example.org:7070`. */
  readonly gateway: string
  readonly root: CID
  readonly blockstore: GatewayBlockstore
  readonly signal: AbortSignal
  readonly maxBytes: number
  readonly maxBlocks: number
  /** A gateway that sends nothing for this long is left (default STALL_MS). */
  readonly stallMs?: number
}

export interface GatewayFetchResult {
  /** Blocks taken from the stream (hashed, stored or already held). */
  readonly blocks: number
  readonly bytes: number
  /** Blocks linked to but not sent: `fetchWeights` looks for them elsewhere. */
  readonly missing: number
  /** Keys (`cid.toString()`) of the blocks hashed here, with their sizes. */
  readonly verified: ReadonlyMap<string, number>
  /** Each file's sha256 taken on the way, by file node CID, for files that came whole and in order. */
  readonly files: ReadonlyMap<string, FileDigest>
}

/** Streams the DAG under `root` from `gateway` into `blockstore`, every block checked. */
export async function fetchFromGateway(options: GatewayFetchOptions): Promise<GatewayFetchResult> {
  const { gateway, root, signal } = options
  const stallMs = options.stallMs ?? STALL_MS
  const stall = new AbortController()
  const timer = setTimeout(
    () =>
      stall.abort(
        new NodeError('gateway-stalled', `the gateway ${gateway} sent nothing for ${stallMs / 1000} s`, {
          status: 504,
        }),
      ),
    stallMs,
  )
  const live = AbortSignal.any([signal, stall.signal])
  // The trustless gateway spec's CAR parameters, in the query and in Accept: depth-first order
  // (which DfsFileDigests follows) and no repeated blocks.
  const url = `${gateway.replace(/\/+$/, '')}/ipfs/${root}?format=car&dag-scope=all&car-version=1&car-order=dfs&car-dups=n`
  // Started first, so the worker boots while the request goes out.
  const hasher = new LeafHasher(IN_FLIGHT)
  try {
    let res: IncomingMessage
    try {
      res = await request(url, live)
    } catch (e) {
      if (stall.signal.aborted && !signal.aborted) throw stall.signal.reason
      throw fetchFailure(e, signal, 'gateway-unreachable', `cannot reach the gateway ${gateway}`)
    }
    timer.refresh()
    try {
      if (res.statusCode !== 200)
        throw new NodeError(
          'gateway-refused',
          `the gateway ${gateway} answered ${res.statusCode} for ${root}`,
          {
            status: 502,
          },
        )
      const type = (res.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
      if (type !== CAR_TYPE)
        throw new NodeError(
          'gateway-refused',
          `the gateway ${gateway} answered ${JSON.stringify(type.slice(0, 80))} for ${root}, not a CAR`,
          { status: 502 },
        )
      const body = (async function* () {
        for await (const chunk of res) {
          timer.refresh()
          yield chunk as Uint8Array
        }
      })()
      return await readCar(body, { ...options, hasher, stalled: () => stall.signal.aborted })
    } finally {
      res.destroy()
    }
  } finally {
    clearTimeout(timer)
    await hasher.stop()
  }
}

type ReadCarOptions = GatewayFetchOptions & { readonly hasher: LeafHasher; readonly stalled: () => boolean }

/**
 * What a fetch has taken from the stream so far, and the checks each section meets: it must be
 * wanted (the root, or linked from a node taken), of the profile and within the budgets.
 */
class Intake {
  readonly wanted: Set<string>
  readonly verified = new Map<string, number>()
  readonly files: DfsFileDigests
  readonly tasks = new Set<Promise<unknown>>()
  failed: { error: unknown } | undefined
  bytes = 0
  /** Where the section being read went: a hashing slot (raw leaves), or its own buffer. */
  placed: Placed | undefined
  /** Whether the section being read is a block taken before (read past). */
  repeat = false
  private repeated = 0
  /** A store that may keep what it is given (in memory) gets a copy of a leaf: its slot is reused. */
  readonly storeCopies: boolean

  constructor(readonly options: ReadCarOptions) {
    this.wanted = new Set<string>([options.root.toString()])
    this.files = new DfsFileDigests(options.root, options.hasher, (key) => this.verified.has(key))
    this.storeCopies = !(options.blockstore instanceof BlockFiles)
  }

  /** Where a section's block goes; each block is checked for what it is before its bytes are read. */
  readonly place = async (cid: CID, length: number): Promise<Uint8Array> => {
    const { gateway, root, maxBytes, hasher } = this.options
    this.placed = undefined
    const key = cid.toString()
    this.repeat = !this.wanted.has(key) && this.verified.has(key)
    if (this.repeat) {
      // A repeat despite dups=n: read past, harmless, but counted, so repeats cannot go on forever.
      this.repeated += length
      if (this.repeated > maxBytes)
        throw new NodeError('oversize', `the gateway ${gateway} repeated over ${maxBytes} bytes of blocks`, {
          status: 413,
        })
      return new Uint8Array(length)
    }
    if (!this.wanted.has(key))
      throw new NodeError('block-unwanted', `the gateway ${gateway} sent ${cid}, which is not in ${root}`, {
        status: 502,
      })
    if (cid.multihash.code !== SHA2_256_CODE || (cid.code !== RAW_CODE && cid.code !== DAG_PB_CODE))
      throw new NodeError('not-unixfs', `block ${cid} is not a sha2-256 dag-pb or raw block`, { status: 422 })
    if (this.bytes + length > maxBytes)
      throw new NodeError('oversize', `the DAG under ${root} is over ${maxBytes} bytes`, { status: 413 })
    if (cid.code === RAW_CODE) this.placed = await hasher.place(length)
    return this.placed?.bytes ?? new Uint8Array(length)
  }

  corrupt(cid: CID): NodeError {
    return new NodeError(
      'block-corrupt',
      `the gateway ${this.options.gateway} sent ${cid} with other bytes`,
      {
        status: 502,
      },
    )
  }

  /**
   * A block read: taken (counted, its links wanted), hashed against its CID (a node here, a leaf
   * on the workers) and then stored; a few blocks in flight, so the stream never waits on the
   * worker or the disk.
   */
  async take(cid: CID, block: Uint8Array): Promise<void> {
    const { root, maxBlocks } = this.options
    const slot = this.placed
    const key = cid.toString()
    this.wanted.delete(key)
    this.bytes += block.length
    if (this.verified.size + this.wanted.size >= maxBlocks)
      throw new NodeError('oversize', `the DAG under ${root} has over ${maxBlocks} blocks`, { status: 413 })
    this.verified.set(key, block.length)
    const checked = cid.code === DAG_PB_CODE ? this.checkNode(cid, block) : this.checkLeaf(cid, block, slot)
    // Written even when a copy is held: that copy may be damaged, and the check trusts what this
    // stream hashed (the write replaces the file atomically).
    const { blockstore, hasher } = this.options
    const task: Promise<unknown> = checked
      .then(() => blockstore.put(cid, this.storeCopies && slot ? block.slice() : block))
      .finally(() => slot && hasher.release(slot))
      .then(
        () => void this.tasks.delete(task),
        (e: unknown) => {
          this.tasks.delete(task)
          this.failed ??= { error: e }
        },
      )
    this.tasks.add(task)
    // Leaves wait for a slot (there are IN_FLIGHT); this bounds the nodes and large blocks.
    if (this.tasks.size >= 4 * IN_FLIGHT) await Promise.race(this.tasks)
    if (this.failed) throw this.failed.error
  }

  /**
   * A node's links decide what is wanted next, so it is hashed here, before it is decoded (nodes
   * are small; leaves, nearly all the bytes, go to the workers).
   */
  private checkNode(cid: CID, block: Uint8Array): Promise<void> {
    if (!equalBytes(nativeSha256(block), cid.multihash.digest)) throw this.corrupt(cid)
    let node: dagPb.PBNode
    try {
      node = dagPb.decode(block)
    } catch (e) {
      throw new NodeError('not-unixfs', `block ${cid} is not a dag-pb node: ${(e as Error).message}`, {
        status: 422,
      })
    }
    for (const link of node.Links) {
      const k = link.Hash.toString()
      if (!this.verified.has(k)) this.wanted.add(k)
    }
    this.files.block(cid, block, node)
    return Promise.resolve()
  }

  /** A leaf hashed on the workers, from its slot (or a copy), as the next part of its file. */
  private checkLeaf(cid: CID, block: Uint8Array, slot: Placed | undefined): Promise<void> {
    const { hasher } = this.options
    const file = this.files.block(cid, block, undefined)
    const hashFailed = (e: unknown) => {
      throw new NodeError('hash-failed', `cannot hash block ${cid}: ${(e as Error)?.message ?? e}`, {
        status: 500,
      })
    }
    return (slot ? hasher.hash(slot, file) : hasher.block(block, file)).then((digest) => {
      if (!equalBytes(digest, cid.multihash.digest)) throw this.corrupt(cid)
    }, hashFailed)
  }
}

/** The CAR's blocks: checked, hashed (leaves on the worker), stored; see `fetchFromGateway`. */
async function readCar(
  body: AsyncIterable<Uint8Array>,
  options: ReadCarOptions,
): Promise<GatewayFetchResult> {
  const { signal } = options
  const intake = new Intake(options)
  try {
    for await (const { cid, bytes: block } of carSections(body, {
      maxBlockBytes: MAX_BLOCK_BYTES,
      place: intake.place,
    })) {
      if (signal.aborted) throw signal.reason
      if (intake.repeat) continue
      await intake.take(cid, block)
    }
    await Promise.all(intake.tasks)
    if (intake.failed) throw intake.failed.error
  } catch (e) {
    await Promise.allSettled(intake.tasks)
    if (signal.aborted) throw fetchAbortError(signal)
    endedEarly(e, intake.failed, options)
  }
  return {
    blocks: intake.verified.size,
    bytes: intake.bytes,
    missing: intake.wanted.size,
    verified: intake.verified,
    files: await intake.files.finish(),
  }
}

/**
 * Why the stream ended before its end: a stream cut short (the gateway stopped or went silent, the
 * connection broke) returns, keeping what came, and the caller looks for the rest elsewhere;
 * anything else is thrown as a failure. Blocks already stored stay: each was checked against its
 * CID and belongs to this DAG.
 */
function endedEarly(e: unknown, failed: { error: unknown } | undefined, options: ReadCarOptions): void {
  const { gateway, signal } = options
  const error = failed?.error ?? e
  if (failed) throw fetchFailure(error, signal, 'store-failed', 'cannot store a block')
  const cut =
    options.stalled() || (isNodeError(error) ? error.code === 'car-truncated' : isConnectionError(error))
  if (cut) return
  throw isNodeError(error)
    ? error
    : new NodeError(
        'gateway-failed',
        `reading the CAR from ${gateway} failed: ${(error as Error)?.message}`,
        {
          status: 502,
          cause: error,
        },
      )
}

/** An error of the connection itself (reset, closed early), as node:http reports it. */
function isConnectionError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code
  return (
    typeof code === 'string' &&
    ['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE'].includes(code)
  )
}

/** `GET url` for a CAR, with node:http(s): a plain byte stream, lighter than fetch's web streams. */
function request(url: string, signal: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? httpsGet : httpGet
    const accept = `${CAR_TYPE}; version=1; order=dfs; dups=n`
    const req = get(url, { headers: { accept }, signal }, resolve)
    req.once('error', reject)
  })
}

/** What an aborted fetch ends with: `fetch-timeout` when its signal timed out, else `aborted`. */
export function fetchAbortError(signal: AbortSignal): NodeError {
  const reason = signal.reason as Error | undefined
  return reason?.name === 'TimeoutError'
    ? new NodeError('fetch-timeout', 'the weights fetch timed out', { status: 504, cause: reason })
    : new NodeError('aborted', 'the weights fetch was aborted', { status: 499, cause: reason })
}

/** Any failure of a fetch as a `NodeError`: the abort when aborted, else `code` (502) with `message`. */
export function fetchFailure(e: unknown, signal: AbortSignal, code: string, message: string): NodeError {
  if (signal.aborted) return fetchAbortError(signal)
  if (isNodeError(e)) return e
  return new NodeError(code, `${message}: ${(e as Error)?.message ?? String(e)}`, { status: 502, cause: e })
}
