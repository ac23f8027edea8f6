/**
 * A steward's weights check before it seals `weightsVerified` (SPEC.md §8.5): `fetchWeights`
 * brings the DAG into the blockstore (other stewards' gateways, then bitswap) and pins it, then
 * `verifyDag` checks it against the manifest — every file's sha256, the file set, the profile
 * root. Blocks the fetch hashed are passed to `verifyDag` as `trusted`, so no block is hashed
 * twice; each file's sha256 still covers their bytes.
 *
 * Why one after the other, not overlapped: docs/adr/0012-weights-transfer-speed.md.
 */
import type { ReadableStorage } from 'ipfs-unixfs-exporter'
import type { CID } from 'multiformats/cid'
import { isNodeError, NodeError } from '../errors.js'
import { type FetchOptions, type FetchResult, fetchWeights } from './fetch.js'
import { type VerifyResult, verifyDag, type WeightsManifest } from './verify.js'

/** The node's own blockstore: read by the check, written by gateway fetches. */
export type LocalBlockstore = ReadableStorage & {
  has(cid: CID, options?: { signal?: AbortSignal }): Promise<boolean>
  put(cid: CID, bytes: Uint8Array): Promise<unknown>
}

export interface FetchVerifyOptions extends Omit<FetchOptions, 'blockstore' | 'gatewayBlockstore'> {
  readonly blockstore: LocalBlockstore
  readonly manifest: WeightsManifest
  readonly maxModelBytes: number
}

export interface FetchVerifyResult {
  /** The check of the weights against the manifest. */
  readonly verdict: VerifyResult
  /** The fetch, when it completed. */
  readonly fetch?: FetchResult
  /** Why the fetch did not complete (then `verdict` names the blocks it did not get). */
  readonly fetchError?: NodeError
}

/** Fetches the weights under `manifest.weights`, then checks them against it. */
export async function fetchAndVerify(options: FetchVerifyOptions): Promise<FetchVerifyResult> {
  const { blockstore, manifest, maxModelBytes, signal } = options
  let fetch: FetchResult | undefined
  let fetchError: NodeError | undefined
  try {
    fetch = await fetchWeights({ ...options, blockstore, gatewayBlockstore: blockstore })
  } catch (e) {
    fetchError = isNodeError(e)
      ? e
      : new NodeError('fetch-failed', `the weights fetch failed: ${(e as Error)?.message ?? e}`, { cause: e })
  }
  // Checked even when the fetch failed: a defect in what did arrive is final, a missing block not.
  const verdict = await verifyDag(blockstore, manifest, {
    maxModelBytes,
    ...(fetch ? { trusted: fetch.hashed, fileDigests: fetch.files } : {}),
    signal,
  })
  return { verdict, ...(fetch ? { fetch } : {}), ...(fetchError ? { fetchError } : {}) }
}
