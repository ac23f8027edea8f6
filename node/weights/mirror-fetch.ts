/**
 * The mirror's fetch (mirror.ts): the same verified path a steward's weights check takes
 * (fetch-verify.ts: the sources' trustless gateways, then bitswap; every block against its CID,
 * then every file's sha256, the file set, the size and the UnixFS root against the manifest; the
 * root pinned). Only a pinned, verified root ends `ok`. docs/adr/0028-mirrors-and-withholding.md.
 */
import type { CID } from 'multiformats/cid'
import type { Logger } from '../log.js'
import { fetchFailedForGood, onlyMissing } from './check-retry.js'
import type { FetchHelia } from './fetch.js'
import { fetchAndVerify, type LocalBlockstore } from './fetch-verify.js'
import type { FetchOutcome, MirrorFetch } from './mirror.js'
import { carBudget } from './uploads.js'
import type { Problem } from './verify.js'

export interface VerifiedFetchOptions {
  readonly blockstore: LocalBlockstore
  readonly helia?: FetchHelia | undefined
  /** The node's pin (uploads.ts). */
  readonly pin: (root: CID, signal?: AbortSignal) => Promise<boolean>
  /** Gateways to try first for `root`, as they are now: the config's, then its holders'. */
  readonly sources: (root: CID) => readonly string[]
  readonly log: Logger
}

export function verifiedFetch(options: VerifiedFetchOptions): MirrorFetch {
  const { blockstore, log } = options
  return async (target, maxModelBytes, signal) => {
    const root = target.body.weights
    const { maxBytes, maxBlocks } = carBudget(maxModelBytes)
    const { verdict, fetch, fetchError } = await fetchAndVerify({
      root,
      manifest: target.body,
      maxModelBytes,
      blockstore,
      helia: options.helia,
      signal,
      maxBytes,
      maxBlocks,
      gateways: [...new Set(options.sources(root))],
      pin: options.pin,
      onGatewayError: (gateway, error) =>
        log.warn('weights-gateway-failed', { root: root.toString(), gateway, error }),
    })
    const counts = fetch
      ? { blocks: fetch.blocks, fetched: fetch.fetched, viaGateway: fetch.viaGateway, bytes: fetch.bytes }
      : {}
    if (verdict.ok && fetch?.pinned) return { result: 'ok', ...counts }
    if (verdict.ok) return { result: 'missing', ...counts, why: 'pin-failed' }
    return failedOutcome(verdict.problems, fetchError?.code, signal)
  }
}

function failedOutcome(
  problems: readonly Problem[],
  fetchError: string | undefined,
  signal: AbortSignal,
): FetchOutcome {
  if (!onlyMissing(problems)) {
    const why = problems
      .slice(0, 3)
      .map((p) => `${p.code}${p.path !== undefined ? ` ${p.path}` : ''}`)
      .join(', ')
    return { result: 'mismatch', why }
  }
  if (fetchError && fetchFailedForGood(fetchError)) return { result: 'refused', why: fetchError }
  if (signal.aborted && fetchError !== 'fetch-timeout')
    return { result: 'aborted', why: fetchError ?? 'aborted' }
  return { result: 'missing', why: fetchError ?? 'block-missing' }
}
