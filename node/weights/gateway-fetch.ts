/**
 * Fetching a weights DAG from another steward's IPFS trustless gateway (DESIGN.md §6 "Weights":
 * "an IPFS trustless gateway … for fast verified HTTP fetches").
 *
 * One request, `GET <gateway>/ipfs/<root>?format=car&dag-scope=all&dups=n`, streamed: the CAR's
 * blocks go into the node's blockstore as they arrive. Nothing about the gateway is trusted:
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

import { CarBlockIterator } from '@ipld/car/iterator'
import * as dagPb from '@ipld/dag-pb'
import type { CID } from 'multiformats/cid'
import { equalBytes } from '../../protocol/bytes.js'
import { isNodeError, NodeError } from '../errors.js'
import { nativeSha256 } from '../sha256.js'

const CODEC_RAW = 0x55
const CODEC_DAG_PB = 0x70
const HASH_SHA2_256 = 0x12
const MAX_BLOCK_BYTES = 2 * 1024 * 1024
const WRITES_IN_FLIGHT = 8

export interface GatewayBlockstore {
  has(cid: CID): Promise<boolean> | boolean
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
}

export interface GatewayFetchResult {
  /** Blocks taken from the stream (hashed, stored or already held). */
  readonly blocks: number
  readonly bytes: number
  /** Blocks linked to but not sent: `fetchWeights` looks for them elsewhere. */
  readonly missing: number
  /** Keys (`cid.toString()`) of the blocks hashed here, with their sizes. */
  readonly verified: ReadonlyMap<string, number>
}

/** Streams the DAG under `root` from `gateway` into `blockstore`, every block checked. */
export async function fetchFromGateway(options: GatewayFetchOptions): Promise<GatewayFetchResult> {
  const { gateway, root, blockstore, signal, maxBytes, maxBlocks } = options
  const url = `${gateway.replace(/\/+$/, '')}/ipfs/${root}?format=car&dag-scope=all&dups=n`
  let res: Response
  try {
    res = await fetch(url, { headers: { accept: 'application/vnd.ipld.car' }, signal })
  } catch (e) {
    throw fetchFailure(e, signal, 'gateway-unreachable', `cannot reach the gateway ${gateway}`)
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel().catch(() => {})
    throw new NodeError('gateway-refused', `the gateway ${gateway} answered ${res.status} for ${root}`, {
      status: 502,
    })
  }

  const wanted = new Set<string>([root.toString()])
  const writes = new Set<Promise<unknown>>()
  let writeFailed: { error: unknown } | undefined
  const verified = new Map<string, number>()
  let bytes = 0
  try {
    const blocks = await CarBlockIterator.fromIterable(res.body as unknown as AsyncIterable<Uint8Array>)
    for await (const { cid, bytes: block } of blocks) {
      if (signal.aborted) throw signal.reason
      const key = cid.toString()
      if (!wanted.delete(key)) {
        if (verified.has(key)) continue // a repeat despite dups=n: harmless, already taken
        throw new NodeError('block-unwanted', `the gateway ${gateway} sent ${cid}, which is not in ${root}`, {
          status: 502,
        })
      }
      if (cid.multihash.code !== HASH_SHA2_256 || (cid.code !== CODEC_RAW && cid.code !== CODEC_DAG_PB))
        throw new NodeError('not-unixfs', `block ${cid} is not a sha2-256 dag-pb or raw block`, {
          status: 422,
        })
      if (block.length > MAX_BLOCK_BYTES)
        throw new NodeError('oversize', `block ${cid} is over ${MAX_BLOCK_BYTES} bytes`, { status: 413 })
      if (!equalBytes(nativeSha256(block), cid.multihash.digest))
        throw new NodeError('block-corrupt', `the gateway ${gateway} sent ${cid} with other bytes`, {
          status: 502,
        })
      bytes += block.length
      if (bytes > maxBytes)
        throw new NodeError('oversize', `the DAG under ${root} is over ${maxBytes} bytes`, { status: 413 })
      if (verified.size + wanted.size >= maxBlocks)
        throw new NodeError('oversize', `the DAG under ${root} has over ${maxBlocks} blocks`, { status: 413 })
      verified.set(key, block.length)
      if (cid.code === CODEC_DAG_PB) {
        let links: CID[]
        try {
          links = dagPb.decode(block).Links.map((l) => l.Hash)
        } catch (e) {
          throw new NodeError('not-unixfs', `block ${cid} is not a dag-pb node: ${(e as Error).message}`, {
            status: 422,
          })
        }
        for (const link of links) {
          const k = link.toString()
          if (!verified.has(k)) wanted.add(k)
        }
      }
      // Writes overlap the stream (a few in flight), so reading and hashing never wait on disk.
      const write = Promise.resolve(blockstore.has(cid)).then((held) =>
        held ? undefined : blockstore.put(cid, block),
      )
      const task: Promise<unknown> = write.then(
        () => void writes.delete(task),
        (e: unknown) => {
          writes.delete(task)
          writeFailed ??= { error: e }
        },
      )
      writes.add(task)
      if (writes.size >= WRITES_IN_FLIGHT) await Promise.race(writes)
      if (writeFailed) throw writeFailed.error
    }
    await Promise.all(writes)
    if (writeFailed) throw writeFailed.error
  } catch (e) {
    await Promise.allSettled(writes)
    if (writeFailed && !isNodeError(e))
      throw fetchFailure(writeFailed.error, signal, 'store-failed', 'cannot store a block')
    // Blocks already stored stay: each was checked against its CID and belongs to this DAG.
    if (isNodeError(e) && !signal.aborted) throw e
    if (signal.aborted) throw fetchAbortError(signal)
    // A stream cut short (the gateway stopped, the connection broke): keep what came.
    return { blocks: verified.size, bytes, missing: wanted.size, verified }
  }
  return { blocks: verified.size, bytes, missing: wanted.size, verified }
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
