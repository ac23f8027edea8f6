/**
 * Fetching a weights DAG from another steward's IPFS trustless gateway (DESIGN.md §6 "Weights":
 * "an IPFS trustless gateway … for fast verified HTTP fetches").
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
 * Why HTTP beside bitswap: bitswap asks for blocks a few at a time in round trips and reached
 * about 65 MiB/s on loopback; one CAR stream is bounded by hashing and disk instead.
 */

import type { IncomingMessage } from 'node:http'
import { get as httpGet } from 'node:http'
import { get as httpsGet } from 'node:https'
import * as dagPb from '@ipld/dag-pb'
import type { CID } from 'multiformats/cid'
import { equalBytes } from '../../protocol/bytes.js'
import { DAG_PB_CODE, RAW_CODE, SHA2_256_CODE } from '../../protocol/cid.js'
import { isNodeError, NodeError } from '../errors.js'
import { CAR_TYPE } from './gateway.js'
import { nativeSha256 } from '../sha256.js'
import { BlockFiles } from './block-files.js'
import { carSections } from './car-sections.js'
import { DfsFileDigests } from './dfs-files.js'
import { type FileDigest, MAX_BLOCK_BYTES } from './directory.js'
import { LeafHasher, type Placed } from './leaf-hasher.js'

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

/** The CAR's blocks: checked, hashed (leaves on the worker), stored; see `fetchFromGateway`. */
async function readCar(
  body: AsyncIterable<Uint8Array>,
  options: GatewayFetchOptions & { readonly hasher: LeafHasher; readonly stalled: () => boolean },
): Promise<GatewayFetchResult> {
  const { gateway, root, blockstore, signal, maxBytes, maxBlocks, hasher } = options
  const wanted = new Set<string>([root.toString()])
  const tasks = new Set<Promise<unknown>>()
  let failed: { error: unknown } | undefined
  const verified = new Map<string, number>()
  const files = new DfsFileDigests(root, hasher, (key) => verified.has(key))
  let bytes = 0
  const corrupt = (cid: CID) =>
    new NodeError('block-corrupt', `the gateway ${gateway} sent ${cid} with other bytes`, { status: 502 })
  // Where the section being read went: a hashing slot (raw leaves), or its own buffer.
  let placed: Placed | undefined
  let repeat = false
  let repeated = 0
  // Each block is checked for what it is (wanted, codec, budget) before its bytes are read.
  const place = async (cid: CID, length: number): Promise<Uint8Array> => {
    placed = undefined
    const key = cid.toString()
    repeat = !wanted.has(key) && verified.has(key)
    if (repeat) {
      // A repeat despite dups=n: read past, harmless, but counted, so repeats cannot go on forever.
      repeated += length
      if (repeated > maxBytes)
        throw new NodeError('oversize', `the gateway ${gateway} repeated over ${maxBytes} bytes of blocks`, {
          status: 413,
        })
      return new Uint8Array(length)
    }
    if (!wanted.has(key))
      throw new NodeError('block-unwanted', `the gateway ${gateway} sent ${cid}, which is not in ${root}`, {
        status: 502,
      })
    if (cid.multihash.code !== SHA2_256_CODE || (cid.code !== RAW_CODE && cid.code !== DAG_PB_CODE))
      throw new NodeError('not-unixfs', `block ${cid} is not a sha2-256 dag-pb or raw block`, { status: 422 })
    if (bytes + length > maxBytes)
      throw new NodeError('oversize', `the DAG under ${root} is over ${maxBytes} bytes`, { status: 413 })
    if (cid.code === RAW_CODE) placed = await hasher.place(length)
    return placed?.bytes ?? new Uint8Array(length)
  }
  // A store that may keep what it is given (in memory) gets a copy of a leaf: its slot is reused.
  const storeCopies = !(blockstore instanceof BlockFiles)
  try {
    for await (const { cid, bytes: block } of carSections(body, { maxBlockBytes: MAX_BLOCK_BYTES, place })) {
      if (signal.aborted) throw signal.reason
      if (repeat) continue
      const slot = placed
      const key = cid.toString()
      wanted.delete(key)
      bytes += block.length
      if (verified.size + wanted.size >= maxBlocks)
        throw new NodeError('oversize', `the DAG under ${root} has over ${maxBlocks} blocks`, { status: 413 })
      verified.set(key, block.length)

      let checked: Promise<void>
      if (cid.code === DAG_PB_CODE) {
        // A node's links decide what is wanted next, so it is hashed here, before it is decoded
        // (nodes are small; leaves, nearly all the bytes, go to the workers).
        if (!equalBytes(nativeSha256(block), cid.multihash.digest)) throw corrupt(cid)
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
          if (!verified.has(k)) wanted.add(k)
        }
        files.block(cid, block, node)
        checked = Promise.resolve()
      } else {
        const file = files.block(cid, block, undefined)
        const hashFailed = (e: unknown) => {
          throw new NodeError('hash-failed', `cannot hash block ${cid}: ${(e as Error)?.message ?? e}`, {
            status: 500,
          })
        }
        checked = (slot ? hasher.hash(slot, file) : hasher.block(block, file)).then((digest) => {
          if (!equalBytes(digest, cid.multihash.digest)) throw corrupt(cid)
        }, hashFailed)
      }
      // Stored once its hash checks; a few blocks in flight, so the stream never waits on the
      // worker or the disk. Written even when a copy is held: that copy may be damaged, and the
      // check trusts what this stream hashed (the write replaces the file atomically).
      const task: Promise<unknown> = checked
        .then(() => blockstore.put(cid, storeCopies && slot ? block.slice() : block))
        .finally(() => slot && hasher.release(slot))
        .then(
          () => void tasks.delete(task),
          (e: unknown) => {
            tasks.delete(task)
            failed ??= { error: e }
          },
        )
      tasks.add(task)
      // Leaves wait for a slot (there are IN_FLIGHT); this bounds the nodes and large blocks.
      if (tasks.size >= 4 * IN_FLIGHT) await Promise.race(tasks)
      if (failed) throw failed.error
    }
    await Promise.all(tasks)
    if (failed) throw failed.error
  } catch (e) {
    await Promise.allSettled(tasks)
    if (signal.aborted) throw fetchAbortError(signal)
    const error = failed?.error ?? e
    // Blocks already stored stay: each was checked against its CID and belongs to this DAG.
    if (failed) throw fetchFailure(error, signal, 'store-failed', 'cannot store a block')
    // A stream cut short (the gateway stopped or went silent, the connection broke): keep what
    // came; the caller looks for the rest elsewhere. Anything else is a failure, not an end.
    const cut =
      options.stalled() || (isNodeError(error) ? error.code === 'car-truncated' : isConnectionError(error))
    if (!cut)
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
  return { blocks: verified.size, bytes, missing: wanted.size, verified, files: await files.finish() }
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
