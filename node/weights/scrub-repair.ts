/**
 * Repairing weights a scrub found damaged (docs/adr/0031-scrubbing-and-clean-up.md). The damaged
 * blocks are already deleted; here they come back from peers and the whole is checked again:
 *
 * 1. Each damaged block is asked of the sources (trustless gateways: the configured ones, and the
 *    holders' once they announce) as one raw block, hashed before it is stored. A few blocks, not
 *    the whole DAG again.
 * 2. `fetchWeights` walks the DAG under the root, hashing every block, and asks bitswap for what
 *    is still missing (the blocks under a damaged node are only known once it is back); it pins
 *    the root again. Only if that fails for want of blocks is the whole DAG streamed from the
 *    sources as a CAR (fetchWeights' gateways).
 * 3. When a manifest names the root, `verifyDag` checks the weights against it, as a steward's
 *    check does; without one (an upload nobody proposed yet) the fetch's hash of every block is
 *    the check.
 */
import type { CID } from 'multiformats/cid'
import { equalBytes } from '../../protocol/bytes.js'
import { isNodeError, NodeError } from '../errors.js'
import { nativeSha256 } from '../sha256.js'
import { type FetchHelia, type FetchResult, fetchWeights } from './fetch.js'
import type { LocalBlockstore } from './fetch-verify.js'
import { RAW_TYPE } from './http-contract.js'
import { MAX_BLOCK_BYTES } from './profile.js'
import { carBudget } from './uploads.js'
import { type Problem, verifyDag, type WeightsManifest } from './verify.js'

/** How long one gateway may take for one raw block. */
const BLOCK_TIMEOUT_MS = 30_000

export interface RepairOptions {
  readonly blockstore: LocalBlockstore
  readonly helia?: FetchHelia | undefined
  /** Gateway base URLs to ask, read when the repair starts. */
  readonly sources: (root: CID) => readonly string[]
  /** A manifest naming `root`, if the node holds one. */
  readonly manifestOf: (root: CID) => WeightsManifest | undefined
  /** The federation's `maxModelBytes` now. */
  readonly maxModelBytes: () => number
  readonly pin?: (root: CID, signal?: AbortSignal) => Promise<boolean>
}

export type RepairOutcome =
  | { readonly ok: true; readonly fromSources: number; readonly fetched: number; readonly checked: boolean }
  | { readonly ok: false; readonly error: NodeError }

/** Brings the blocks under `root` back whole and checks them; never throws but for an abort. */
export async function repairRoot(
  root: CID,
  damaged: readonly CID[],
  options: RepairOptions,
  signal: AbortSignal,
): Promise<RepairOutcome> {
  const sources = options.sources(root)
  const fromSources = await fetchBlocks(damaged, sources, options.blockstore, signal)
  const maxModelBytes = options.maxModelBytes()
  let fetch: FetchResult
  try {
    fetch = await fetchAll(root, sources, maxModelBytes, options, signal)
  } catch (e) {
    signal.throwIfAborted()
    return { ok: false, error: asNodeError(e) }
  }
  const manifest = options.manifestOf(root)
  if (!manifest) return { ok: true, fromSources, fetched: fetch.fetched, checked: false }
  const verdict = await verifyDag(options.blockstore, manifest, {
    maxModelBytes,
    trusted: fetch.hashed,
    fileDigests: fetch.files,
    signal,
  })
  signal.throwIfAborted()
  if (!verdict.ok)
    return {
      ok: false,
      error: new NodeError(
        'weights-mismatch',
        `the weights under ${root} fail their manifest: ${list(verdict.problems)}`,
      ),
    }
  return { ok: true, fromSources, fetched: fetch.fetched, checked: true }
}

/** The DAG made whole: held blocks and bitswap first, the sources' CAR only when blocks are still wanting. */
async function fetchAll(
  root: CID,
  sources: readonly string[],
  maxModelBytes: number,
  options: RepairOptions,
  signal: AbortSignal,
): Promise<FetchResult> {
  const { maxBytes, maxBlocks } = carBudget(maxModelBytes)
  const base = {
    root,
    blockstore: options.blockstore,
    helia: options.helia,
    signal,
    maxBytes,
    maxBlocks,
    ...(options.pin ? { pin: options.pin } : {}),
  }
  // Bitswap with no peer holding a block waits for ever: this attempt gets a bounded share.
  const firstTry = AbortSignal.any([signal, AbortSignal.timeout(BLOCK_TIMEOUT_MS)])
  try {
    return await fetchWeights({ ...base, signal: firstTry })
  } catch (e) {
    signal.throwIfAborted()
    if (sources.length === 0 || !wanting(e)) throw e
  }
  return await fetchWeights({ ...base, gateways: sources, gatewayBlockstore: options.blockstore })
}

/** Whether a fetch failed for want of blocks (another source may have them), not for their content. */
function wanting(e: unknown): boolean {
  return isNodeError(e) && ['block-missing', 'block-unavailable', 'fetch-timeout', 'aborted'].includes(e.code)
}

/** Asks the sources for each block, in turn, until one sends bytes that hash to it; how many came. */
async function fetchBlocks(
  cids: readonly CID[],
  sources: readonly string[],
  blockstore: LocalBlockstore,
  signal: AbortSignal,
): Promise<number> {
  let got = 0
  for (const cid of cids) {
    for (const source of sources) {
      signal.throwIfAborted()
      const bytes = await rawBlock(source, cid, signal)
      if (!bytes) continue
      await blockstore.put(cid, bytes)
      got++
      break
    }
  }
  return got
}

/** One raw block from a trustless gateway, checked; undefined for anything else. */
async function rawBlock(gateway: string, cid: CID, signal: AbortSignal): Promise<Uint8Array | undefined> {
  try {
    const res = await fetch(`${gateway.replace(/\/+$/, '')}/ipfs/${cid}?format=raw`, {
      headers: { accept: RAW_TYPE },
      signal: AbortSignal.any([signal, AbortSignal.timeout(BLOCK_TIMEOUT_MS)]),
    })
    if (res.status !== 200) {
      await res.body?.cancel()
      return undefined
    }
    const bytes = await readCapped(res)
    return bytes && equalBytes(nativeSha256(bytes), cid.multihash.digest) ? bytes : undefined
  } catch {
    signal.throwIfAborted()
    // Unreachable, slow or cut off: the next source, or the fetch below.
    return undefined
  }
}

/** The body, or undefined once it runs past the largest block (a gateway is not trusted). */
async function readCapped(res: Response): Promise<Uint8Array | undefined> {
  const parts: Uint8Array[] = []
  let size = 0
  for await (const part of res.body ?? []) {
    size += part.length
    // Leaving the loop cancels the stream.
    if (size > MAX_BLOCK_BYTES) return undefined
    parts.push(part)
  }
  return Buffer.concat(parts)
}

function asNodeError(e: unknown): NodeError {
  return isNodeError(e)
    ? e
    : new NodeError('repair-failed', `the repair failed: ${(e as Error)?.message ?? String(e)}`, { cause: e })
}

function list(problems: readonly Problem[]): string {
  return problems
    .slice(0, 5)
    .map((p) => `${p.code}${p.path !== undefined ? ` ${p.path}` : ''}`)
    .join(', ')
}
