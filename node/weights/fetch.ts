/**
 * Fetching a model's weights DAG into the node's own blockstore (a steward's duty before it
 * seals `weightsVerified`, SPEC.md §8.5: fetch, pin and check the weights, with timeouts).
 *
 * `fetchWeights` walks the DAG under `root` — dag-pb nodes (their links) and raw leaves, both
 * sha2-256 — and makes sure every block is held locally: a block already in the blockstore is
 * read from it; a missing one is asked of Helia's networked blockstore (bitswap with connected
 * peers), which stores it in the same blockstore once its hash checks. Every block is hashed
 * against its CID here as well, whatever its source. Then the root is pinned.
 *
 * Bounded: a total byte and block budget, a per-block size cap, a few reads in flight, and the
 * caller's `signal` (a timeout) ends everything. Never throws anything but `NodeError`:
 * `fetch-timeout` (the signal timed out), `aborted` (it was aborted otherwise), `block-missing`
 * (not held and no network to ask), `block-unavailable` (the network read failed),
 * `block-corrupt` (bytes that do not hash to their CID), `not-unixfs` (a codec or hash outside
 * the profile, or an undecodable node), `oversize` (over the byte or block budget).
 *
 * With `gateways` (other stewards' trustless gateways), the DAG is first streamed from them as one
 * CAR each (`fetchFromGateway`, every block checked the same way) until one gives it whole; the
 * walk then only confirms what is held, without hashing those blocks again, and bitswap is asked
 * for whatever is still missing. A gateway that fails is reported to `onGatewayError` and the next
 * one (or bitswap) is tried.
 *
 * It checks the DAG's blocks, not the model: `verifyDag` against the manifest is still the check.
 */

import * as dagPb from '@ipld/dag-pb'
import type { CID } from 'multiformats/cid'
import { concatBytes, equalBytes } from '../../protocol/bytes.js'
import { DAG_PB_CODE, IDENTITY_CODE, RAW_CODE, SHA2_256_CODE } from '../../protocol/cid.js'
import { NodeError } from '../errors.js'
import { nativeSha256 } from '../sha256.js'
import { fetchAbortError, fetchFailure, fetchFromGateway, type GatewayBlockstore } from './gateway-fetch.js'
import type { FileDigest } from './local-files.js'
import { type PinWalker, unixfsPinWalker } from './pin-walker.js'
import { MAX_BLOCK_BYTES } from './profile.js'

/** Reads in flight at once (bitswap round trips dominate; a few overlap them). */
const CONCURRENCY = 8

/** The local blockstore: what is held, and where fetched blocks end up. */
export interface FetchBlockstore {
  has(cid: CID, options?: { signal?: AbortSignal }): Promise<boolean> | boolean
  get(cid: CID, options?: { signal?: AbortSignal }): AsyncIterable<Uint8Array> | Iterable<Uint8Array>
  /** With it, a held block that does not hash to its CID is removed and fetched again. */
  delete?(cid: CID, options?: { signal?: AbortSignal }): Promise<unknown>
}

/** The slice of Helia used: its networked blockstore (bitswap) and, failing a `pin`, its pins. */
export interface FetchHelia {
  readonly blockstore: {
    get(cid: CID, options?: { signal?: AbortSignal }): AsyncIterable<Uint8Array> | Iterable<Uint8Array>
  }
  readonly pins?: {
    add(
      cid: CID,
      options?: { signal?: AbortSignal; offline?: boolean; walker?: PinWalker },
    ): AsyncIterable<unknown>
  }
}

export interface FetchOptions {
  readonly root: CID
  readonly blockstore: FetchBlockstore
  /** Without it only the local blockstore is read (a missing block is `block-missing`). */
  readonly helia?: FetchHelia | undefined
  /** Ends the fetch; a timeout signal gives `fetch-timeout`. */
  readonly signal: AbortSignal
  /** The most block bytes in total. */
  readonly maxBytes: number
  /** The most distinct blocks (default: enough for `maxBytes` in 1 MiB leaves and their nodes). */
  readonly maxBlocks?: number
  /** Trustless gateways (base URLs) to stream the DAG from before bitswap is asked. */
  readonly gateways?: readonly string[] | undefined
  /** Where gateway fetches go; needs `put` (the node's FsBlockstore). */
  readonly gatewayBlockstore?: GatewayBlockstore | undefined
  /** A gateway silent this long is left for the next one (fetchFromGateway's default otherwise). */
  readonly gatewayStallMs?: number
  /** Told about each gateway that failed or stopped short (then the next one, or bitswap, is tried). */
  readonly onGatewayError?: ((gateway: string, error: NodeError) => void) | undefined
  /** Pins the root once the DAG is held (e.g. `node.weights.pin`); default Helia's pins, offline. */
  readonly pin?: (root: CID, signal?: AbortSignal) => Promise<boolean>
}

export interface FetchResult {
  readonly root: CID
  /** Distinct blocks in the DAG. */
  readonly blocks: number
  /** Their bytes. */
  readonly bytes: number
  /** How many of them came from the network (a gateway or bitswap). */
  readonly fetched: number
  /** How many of them came from a gateway. */
  readonly viaGateway: number
  readonly pinned: boolean
  /** Every block hashed against its CID by this fetch, key to size (for `verifyDag`'s `trusted`). */
  readonly hashed: ReadonlyMap<string, number>
  /** Files' sha256 taken as a gateway streamed them, by file node CID (`verifyDag`'s `fileDigests`). */
  readonly files: ReadonlyMap<string, FileDigest>
}

/** Brings every block of the DAG under `root` into `blockstore`, then pins the root. */
export async function fetchWeights(options: FetchOptions): Promise<FetchResult> {
  const { root, signal, maxBytes } = options
  const maxBlocks = options.maxBlocks ?? 2 * Math.ceil(maxBytes / (1024 * 1024)) + 65_536
  const streamed = await fromGateways(options, maxBlocks)
  const walk: Walk = { options, verified: streamed.verified, bytes: 0, fetched: 0, hashed: new Map() }
  const blocks = await walkDag(walk, maxBlocks)
  checkSignal(signal)
  const pinned = await pinFetched(options)
  return {
    root,
    blocks,
    bytes: walk.bytes,
    fetched: walk.fetched,
    viaGateway: streamed.verified.size,
    pinned,
    hashed: walk.hashed,
    files: streamed.files,
  }
}

/**
 * Gateways first: one stream each, until one gives the whole DAG. Returns the blocks they sent,
 * hashed (key to size), and the files' sha256 taken on the way.
 */
async function fromGateways(
  options: FetchOptions,
  maxBlocks: number,
): Promise<{ verified: Map<string, number>; files: Map<string, FileDigest> }> {
  const { root, signal, maxBytes } = options
  const verified = new Map<string, number>()
  const files = new Map<string, FileDigest>()
  const gatewayStore = options.gatewayBlockstore
  for (const gateway of gatewayStore ? (options.gateways ?? []) : []) {
    checkSignal(signal)
    try {
      const r = await fetchFromGateway({
        gateway,
        root,
        blockstore: gatewayStore!,
        signal,
        maxBytes,
        maxBlocks,
        ...(options.gatewayStallMs !== undefined ? { stallMs: options.gatewayStallMs } : {}),
      })
      for (const [k, n] of r.verified) if (!verified.has(k)) verified.set(k, n)
      for (const [k, d] of r.files) files.set(k, d)
      if (r.missing === 0) break
      options.onGatewayError?.(
        gateway,
        new NodeError(
          'gateway-incomplete',
          `the gateway ${gateway} stopped with blocks of ${root} still wanted`,
          {
            status: 502,
          },
        ),
      )
    } catch (e) {
      if (signal.aborted) throw fetchAbortError(signal)
      const err = fetchFailure(e, signal, 'gateway-failed', `the gateway ${gateway} failed`)
      // A DAG over budget or outside the profile will not be different elsewhere.
      if (err.code === 'oversize' || err.code === 'not-unixfs') throw err
      options.onGatewayError?.(gateway, err)
    }
  }
  return { verified, files }
}

/** The walk of the DAG as it goes: what the gateways sent, and what was counted and hashed. */
interface Walk {
  readonly options: FetchOptions
  /** Blocks a gateway sent, hashed on their way in: key to size. */
  readonly verified: ReadonlyMap<string, number>
  bytes: number
  fetched: number
  readonly hashed: Map<string, number>
}

/** Walks the DAG breadth-first, `CONCURRENCY` blocks at a time; the distinct blocks under the root. */
async function walkDag(walk: Walk, maxBlocks: number): Promise<number> {
  const { root } = walk.options
  const seen = new Set<string>([root.toString()])
  let frontier: CID[] = [root]
  let blocks = 0
  while (frontier.length > 0) {
    blocks += frontier.length
    if (blocks > maxBlocks)
      throw new NodeError('oversize', `the DAG under ${root} has over ${maxBlocks} blocks`, { status: 413 })
    const next: CID[] = []
    for (let i = 0; i < frontier.length; i += CONCURRENCY) {
      const children = await settleAll(frontier.slice(i, i + CONCURRENCY).map((cid) => takeBlock(walk, cid)))
      for (const list of children) {
        for (const child of list) {
          const key = child.toString()
          if (seen.has(key)) continue
          seen.add(key)
          next.push(child)
        }
      }
    }
    frontier = next
  }
  return seen.size
}

/** One block of the walk made sure of (held, or asked of bitswap, and hashed); its links. */
async function takeBlock(walk: Walk, cid: CID): Promise<CID[]> {
  const { signal } = walk.options
  checkSignal(signal)
  if (cid.multihash.code === IDENTITY_CODE) return links(cid, cid.multihash.digest)
  const size = walk.verified.get(cid.toString())
  if (size !== undefined) {
    // Hashed on its way in from a gateway: a raw leaf needs nothing more; a node, its links.
    walk.fetched++
    count(walk, cid, size)
    if (cid.code === RAW_CODE) return []
    return links(cid, await readBlock(walk.options.blockstore.get(cid, { signal }), cid))
  }
  if (cid.multihash.code !== SHA2_256_CODE)
    throw new NodeError('not-unixfs', `block ${cid} is not sha2-256 hashed`, { status: 422 })
  if (cid.code !== RAW_CODE && cid.code !== DAG_PB_CODE)
    throw new NodeError('not-unixfs', `block ${cid} is neither dag-pb nor raw`, { status: 422 })
  const { block, fetched } = await heldOrAsked(walk.options, cid)
  if (fetched) walk.fetched++
  const digest = nativeSha256(block)
  if (!equalBytes(digest, cid.multihash.digest))
    throw new NodeError('block-corrupt', `block ${cid} does not hash to its CID`, { status: 422 })
  count(walk, cid, block.length)
  return links(cid, block)
}

/** Counts a block's bytes against the budget and records it as hashed. */
function count(walk: Walk, cid: CID, size: number): void {
  walk.bytes += size
  walk.hashed.set(cid.toString(), size)
  const { root, maxBytes } = walk.options
  if (walk.bytes > maxBytes)
    throw new NodeError('oversize', `the DAG under ${root} is over ${maxBytes} bytes`, { status: 413 })
}

/** A block from the blockstore, or from bitswap when it is not held (or held damaged); whether it was fetched. */
async function heldOrAsked(
  options: FetchOptions,
  cid: CID,
): Promise<{ block: Uint8Array; fetched: boolean }> {
  const { blockstore, helia, signal } = options
  let held: boolean
  try {
    held = await blockstore.has(cid, { signal })
  } catch (e) {
    throw fetchFailure(e, signal, 'block-unavailable', `cannot read block ${cid} locally`)
  }
  if (!held && !helia) throw new NodeError('block-missing', `block ${cid} is not in the blockstore`)
  const source = held ? blockstore : helia!.blockstore
  let block: Uint8Array
  try {
    block = await readBlock(source.get(cid, { signal }), cid)
  } catch (e) {
    throw fetchFailure(e, signal, 'block-unavailable', `cannot get block ${cid}`)
  }
  if (held && helia && blockstore.delete && !equalBytes(nativeSha256(block), cid.multihash.digest)) {
    // A damaged copy held here (a disk fault, a write cut short): removed, and asked for again
    // (Helia's blockstore would otherwise keep answering with it).
    try {
      await blockstore.delete(cid, { signal })
      block = await readBlock(helia.blockstore.get(cid, { signal }), cid)
    } catch (e) {
      throw fetchFailure(e, signal, 'block-unavailable', `cannot get block ${cid} again`)
    }
    held = false
  }
  return { block, fetched: !held }
}

/** Pins the fetched root (with `options.pin`, else Helia's pins); whether it is pinned. */
async function pinFetched(options: FetchOptions): Promise<boolean> {
  const { root, helia, signal } = options
  try {
    if (options.pin) return await options.pin(root, signal)
    if (!helia?.pins) return false
    for await (const _ of helia.pins.add(root, { offline: true, signal, walker: unixfsPinWalker })) {
      // each block walked is counted by the pins API; nothing to do here
    }
    return true
  } catch (e) {
    if ((e as Error)?.name === 'AlreadyPinnedError') return true
    throw fetchFailure(e, signal, 'pin-failed', `cannot pin ${root}`)
  }
}

/** Waits for all, so no read is left running unobserved; the first failure is thrown. */
async function settleAll<T>(promises: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(promises)
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected')
  if (failed) throw failed.reason
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value)
}

async function readBlock(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, cid: CID) {
  const parts: Uint8Array[] = []
  let size = 0
  for await (const part of source) {
    size += part.length
    if (size > MAX_BLOCK_BYTES)
      throw new NodeError('oversize', `block ${cid} is over ${MAX_BLOCK_BYTES} bytes`, { status: 413 })
    parts.push(part)
  }
  return parts.length === 1 ? parts[0]! : concatBytes(...parts)
}

function links(cid: CID, block: Uint8Array): CID[] {
  if (cid.code !== DAG_PB_CODE) return []
  try {
    return dagPb.decode(block).Links.map((l) => l.Hash)
  } catch (e) {
    throw new NodeError('not-unixfs', `block ${cid} is not a dag-pb node: ${(e as Error).message}`, {
      status: 422,
      cause: e,
    })
  }
}

function checkSignal(signal: AbortSignal) {
  if (signal.aborted) throw fetchAbortError(signal)
}
