/**
 * The weights check a steward runs before sealing a ratification. One background run per
 * manifest at a time: the weights held are checked first (`verifyDag`); if blocks are missing or
 * damaged, `fetchAndVerify` fetches them (other stewards' gateways, then bitswap), checks them
 * against the manifest and pins the root. One fetch per root at a time: a manifest naming
 * weights being fetched waits for that fetch. Until a run has ended the check says "not yet"
 * (undefined); then its verdict: true, false for weights that will never pass (a defect in the
 * content, or a fetch refused for good), or another run after a pause when blocks were only
 * missing (the policy: check-retry.ts). The steward seals false at `closesAt + weightsDeadlineMs`
 * if it is still "not yet".
 */
import type { CID } from 'multiformats/cid'
import type { Verified } from '../../protocol/index.js'
import type { Logger } from '../log.js'
import type { P2P } from '../p2p.js'
import {
  type CheckRun,
  fetchBudgetMs,
  fetchCanMend,
  fetchFailedForGood,
  onlyMissing,
  runDue,
} from './check-retry.js'
import { fetchAndVerify, type LocalBlockstore } from './fetch-verify.js'
import { carBudget } from './uploads.js'
import { type Problem, verifyDag } from './verify.js'

export interface WeightsCheckOptions {
  readonly blockstore: LocalBlockstore
  readonly helia?: P2P['helia']
  readonly clock: () => number
  readonly log: Logger
  /** Aborted when the node stops: every run ends. */
  readonly stopped: AbortSignal
  /** One run's budget; default `fetchBudgetMs` of the model's size. */
  readonly fetchMs?: number
  readonly gateways?: readonly string[] | undefined
  /** The node's pin (uploads.ts). */
  readonly pin?: (root: CID, signal?: AbortSignal) => Promise<boolean>
  /** Told of weights that passed the check (held-versions.ts `verified`): what holding announcements are signed for. */
  readonly verified?: (root: CID, at: number) => Promise<void>
}

/** The check as the steward duty calls it: true, false, or undefined for "not yet". */
export type WeightsCheck = (
  manifest: Verified<'manifest'>,
  maxModelBytes: number,
) => Promise<boolean | undefined>

/** The first few problems of a weights check, one short string each, for the log. */
function problemList(problems: readonly Problem[]): string[] {
  return problems.slice(0, 10).map((p) => `${p.code}${p.path !== undefined ? ` ${p.path}` : ''}`)
}

/**
 * The held weights, checked without the network (in the background too: reading a large model
 * must not hold up the sealing tick). A verdict when they pass, or when their defect is in the
 * content itself, which a fetch by the same CIDs would only bring back; undefined when a fetch
 * may mend them.
 */
async function checkHeld(
  manifest: Verified<'manifest'>,
  maxModelBytes: number,
  signal: AbortSignal,
  options: WeightsCheckOptions,
): Promise<boolean | undefined> {
  const local = await verifyDag(options.blockstore, manifest.record.body, { maxModelBytes, signal })
  if (signal.aborted) return undefined
  if (local.ok) return true
  if (fetchCanMend(local.problems)) return undefined
  options.log.warn('weights-mismatch', {
    manifest: manifest.cid.toString(),
    problems: problemList(local.problems),
  })
  return false
}

/** Fetches what is missing and checks it all: the verdict, or undefined when blocks are still missing. */
async function fetchAndCheck(
  manifest: Verified<'manifest'>,
  maxModelBytes: number,
  signal: AbortSignal,
  options: WeightsCheckOptions,
): Promise<boolean | undefined> {
  const { log, stopped } = options
  const key = manifest.cid.toString()
  const root = manifest.record.body.weights
  const { maxBytes, maxBlocks } = carBudget(maxModelBytes)
  log.info('weights-check-started', { manifest: key, root: root.toString() })
  const { verdict, fetch, fetchError } = await fetchAndVerify({
    root,
    manifest: manifest.record.body,
    maxModelBytes,
    blockstore: options.blockstore,
    helia: options.helia,
    signal,
    maxBytes,
    maxBlocks,
    gateways: options.gateways,
    ...(options.pin ? { pin: options.pin } : {}),
    onGatewayError: (gateway, error) =>
      log.warn('weights-gateway-failed', { root: root.toString(), gateway, error }),
  })
  if (fetch && fetch.fetched > 0)
    log.info('weights-fetched', {
      root: root.toString(),
      blocks: fetch.blocks,
      fetched: fetch.fetched,
      viaGateway: fetch.viaGateway,
      bytes: fetch.bytes,
    })
  log.info('weights-checked', {
    manifest: key,
    ok: verdict.ok,
    ...(fetchError ? { fetchError: fetchError.code } : {}),
  })
  if (verdict.ok) return true
  if (!onlyMissing(verdict.problems)) {
    log.warn('weights-mismatch', {
      manifest: key,
      root: root.toString(),
      problems: problemList(verdict.problems),
    })
    return false
  }
  if (fetchError && fetchFailedForGood(fetchError.code)) {
    log.warn('weights-fetch-refused', { manifest: key, root: root.toString(), error: fetchError })
    return false
  }
  if (fetchError && !stopped.aborted)
    log.warn('weights-fetch-failed', { manifest: key, root: root.toString(), error: fetchError })
  return undefined
}

/** The steward's weights check (see the header): one background run per manifest, one fetch per root. */
export function createWeightsCheck(options: WeightsCheckOptions): WeightsCheck {
  const { clock, log, stopped } = options
  // The last run for each manifest.
  const runs = new Map<string, CheckRun>()
  // Roots being checked or fetched: a second manifest naming the same weights waits for that run,
  // then checks what it brought, instead of fetching the same bytes again beside it.
  const rootsInRun = new Set<string>()

  const start = (manifest: Verified<'manifest'>, maxModelBytes: number, first: boolean) => {
    const key = manifest.cid.toString()
    const root = manifest.record.body.weights.toString()
    rootsInRun.add(root)
    const run: CheckRun = { endedAt: 0 }
    runs.set(key, run)
    const fetchMs = options.fetchMs ?? fetchBudgetMs(manifest.record.body.size)
    const signal = AbortSignal.any([stopped, AbortSignal.timeout(fetchMs)])
    const check = async () => {
      if (first) {
        run.verdict = await checkHeld(manifest, maxModelBytes, signal, options)
        if (run.verdict !== undefined || signal.aborted) return
      }
      run.verdict = await fetchAndCheck(manifest, maxModelBytes, signal, options)
    }
    const checkAndRecord = async () => {
      await check()
      if (run.verdict === true) await options.verified?.(manifest.record.body.weights, clock())
    }
    checkAndRecord()
      .catch((e) => {
        if (!stopped.aborted) log.warn('weights-check-failed', { manifest: key, error: e as Error })
      })
      .finally(() => {
        rootsInRun.delete(root)
        run.endedAt = clock()
      })
  }

  return async (manifest, maxModelBytes) => {
    const run = runs.get(manifest.cid.toString())
    if (run?.verdict !== undefined) return run.verdict
    // A run of this manifest, or of another naming the same weights, is under way.
    if (stopped.aborted || rootsInRun.has(manifest.record.body.weights.toString())) return undefined
    if (runDue(run, clock())) start(manifest, maxModelBytes, run === undefined)
    return undefined
  }
}
