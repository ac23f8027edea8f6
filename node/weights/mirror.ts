/**
 * The mirror duty (docs/adr/0028-mirrors-and-withholding.md): on each tick it reads which ratified
 * versions the policy asks for (mirror-plan.ts) and, for each whose weights are not held and
 * verified here, runs the verified fetch stewards use (mirror-fetch.ts: gateways, then bitswap;
 * every block against its CID, every file's sha256, the file set, the size, the root; pinned).
 * Bounded: a few fetches at a time, each within a budget for its size, a failed root tried again
 * only after a pause that doubles each time, everything aborted when the node stops.
 *
 * `pinOnce` is `allmende node pin N@V`: one ratified version fetched the same way, whatever the
 * policy. The operator's request starts the fetch and returns; asking again says how it went
 * (a long synchronous request would outlive the API's idle timeout).
 */
import type { CID } from 'multiformats/cid'
import type { FederationState } from '../../protocol/index.js'
import type { MirrorPolicy } from '../config-weights.js'
import { NodeError } from '../errors.js'
import type { Logger } from '../log.js'
import { fetchBudgetMs } from './check-retry.js'
import {
  type ManifestReader,
  type MirrorTarget,
  mirrorTargets,
  perVersions,
  ratifiedTarget,
  type Withholding,
  withheldRoots,
} from './mirror-plan.js'

/** How a verified fetch ended; counts when the weights came whole. */
export interface FetchOutcome {
  /** ok: held, pinned and verified; missing: blocks still missing (tried again later); mismatch:
   *  the weights differ from the manifest; refused: a source refused for good; aborted: stopped. */
  readonly result: 'ok' | 'missing' | 'mismatch' | 'refused' | 'aborted'
  /** Blocks in the DAG, how many came from the network, and from a gateway; their bytes. */
  readonly blocks?: number
  readonly fetched?: number
  readonly viaGateway?: number
  readonly bytes?: number
  /** Why it did not end ok: an error code, or the first problems of the check. */
  readonly why?: string
}

/** The verified path: fetch what is missing, pin, check against the manifest. Never throws. */
export type MirrorFetch = (
  target: MirrorTarget,
  maxModelBytes: number,
  signal: AbortSignal,
) => Promise<FetchOutcome>

/** The slice of HeldVersions (held-versions.ts) the mirror reads and writes. */
export interface MirrorHeld {
  get(root: CID): { readonly complete: boolean; readonly verifiedAt: number } | undefined
  verified(root: CID, at: number): Promise<void>
}

export interface MirrorOptions {
  readonly state: () => FederationState
  readonly read: ManifestReader
  /** The policy as it is now (it can change while the node runs). */
  readonly policy: () => MirrorPolicy
  readonly held: MirrorHeld
  readonly fetch: MirrorFetch
  readonly clock: () => number
  readonly log: Logger
  /** Aborted when the node stops: every fetch ends. */
  readonly stopped: AbortSignal
  /** Fetches at once (default 2): each streams a whole model, so more only share the same links. */
  readonly maxFetches?: number
  /** The first pause after a failed fetch, doubling up to `maxRetryMs` (defaults 30 s and 1 h). */
  readonly retryMs?: number
  readonly maxRetryMs?: number
  /** Told how each fetch ended (metrics). */
  readonly onOutcome?: (outcome: FetchOutcome) => void
}

/** What `pinOnce` answers while the version is not yet held, or once it is. */
export type PinAnswer =
  | { readonly status: 'fetching'; readonly model: string; readonly weights: string }
  | {
      readonly status: 'held'
      readonly model: string
      readonly manifest: string
      readonly weights: string
      readonly verifiedAt: number
      /** The last fetch of these weights here, when this run of the node made one. */
      readonly fetch?: FetchOutcome
    }

export interface Mirror {
  /** Starts the fetches that are due (also called when a fetch ends or the policy changes). */
  tick(): void
  /** `node pin N@V`: starts, or reports on, the one-off fetch of a ratified version. */
  pinOnce(model: string): PinAnswer
  /** Fetches under way, by weights root. */
  fetching(): string[]
  /**
   * The weights roots (CIDv1 text) no node serves now, with the version each waits on: the
   * gateway's gate, and what holding announcements leave out.
   */
  withheld(): ReadonlyMap<string, Withholding>
}

/** Failed roots: how many failures in a row, and when the next try may start. */
interface Backoff {
  failures: number
  nextAt: number
}

const DEFAULT_MAX_FETCHES = 2
const DEFAULT_RETRY_MS = 30_000
const DEFAULT_MAX_RETRY_MS = 3_600_000

function rootKey(root: CID): string {
  return root.toV1().toString()
}

export function createMirror(options: MirrorOptions): Mirror {
  const { clock, log, stopped, held } = options
  const maxFetches = options.maxFetches ?? DEFAULT_MAX_FETCHES
  const firstRetry = options.retryMs ?? DEFAULT_RETRY_MS
  const maxRetry = options.maxRetryMs ?? DEFAULT_MAX_RETRY_MS
  const inFlight = new Map<string, Promise<void>>()
  const backoff = new Map<string, Backoff>()
  const lastFetch = new Map<string, FetchOutcome>()
  // Roots an operator asked `pinOnce` for: a failure is kept to be told at the next ask.
  const asked = new Set<string>()
  const failedAsked = new Map<string, FetchOutcome>()

  const settle = async (target: MirrorTarget, outcome: FetchOutcome) => {
    const key = rootKey(target.body.weights)
    lastFetch.set(key, outcome)
    options.onOutcome?.(outcome)
    if (outcome.result === 'ok') {
      await held.verified(target.body.weights, clock())
      backoff.delete(key)
      asked.delete(key)
      log.info('mirror-held', {
        model: target.model,
        root: key,
        fetched: outcome.fetched,
        bytes: outcome.bytes,
      })
      return
    }
    if (outcome.result === 'aborted' && stopped.aborted) return
    const failures = (backoff.get(key)?.failures ?? 0) + 1
    const pause = Math.min(firstRetry * 2 ** (failures - 1), maxRetry)
    backoff.set(key, { failures, nextAt: clock() + pause })
    if (asked.delete(key)) failedAsked.set(key, outcome)
    log.warn('mirror-fetch-failed', {
      model: target.model,
      root: key,
      result: outcome.result,
      why: outcome.why,
      retryInMs: pause,
    })
  }

  const start = (target: MirrorTarget) => {
    const key = rootKey(target.body.weights)
    const budget = fetchBudgetMs(target.body.size)
    const signal = AbortSignal.any([stopped, AbortSignal.timeout(budget)])
    log.info('mirror-fetch-started', { model: target.model, root: key })
    const run = options
      .fetch(target, options.state().rules.maxModelBytes, signal)
      .then((outcome) => settle(target, outcome))
      .catch((e) => log.warn('mirror-fetch-error', { model: target.model, root: key, error: e as Error }))
      .finally(() => {
        inFlight.delete(key)
        if (!stopped.aborted) tick()
      })
    inFlight.set(key, run)
  }

  /** Whether `target` is due: not held whole, not under way, not pausing after a failure. */
  const due = (target: MirrorTarget, now: number): boolean => {
    const key = rootKey(target.body.weights)
    if (held.get(target.body.weights)?.complete) return false
    if (inFlight.has(key)) return false
    return (backoff.get(key)?.nextAt ?? 0) <= now
  }

  const tick = () => {
    if (stopped.aborted || inFlight.size >= maxFetches) return
    const now = clock()
    for (const target of mirrorTargets(options.state(), options.policy(), options.read)) {
      if (inFlight.size >= maxFetches) break
      if (due(target, now)) start(target)
    }
  }

  const pinOnce = (model: string): PinAnswer => {
    const target = pinTarget(options.state(), model, options.read)
    const key = rootKey(target.body.weights)
    const weights = target.body.weights.toString()
    const entry = held.get(target.body.weights)
    if (entry?.complete && !inFlight.has(key)) {
      const fetch = lastFetch.get(key)
      return {
        status: 'held',
        model,
        manifest: target.manifest.toString(),
        weights,
        verifiedAt: entry.verifiedAt,
        ...(fetch ? { fetch } : {}),
      }
    }
    const failed = failedAsked.get(key)
    if (failed) {
      failedAsked.delete(key)
      throw pinFailure(model, failed)
    }
    asked.add(key)
    if (!inFlight.has(key)) {
      if (stopped.aborted) throw new NodeError('node-stopping', 'the node is stopping', { status: 503 })
      start(target)
    }
    return { status: 'fetching', model, weights }
  }

  const withheld = perVersions((state) => withheldRoots(state, options.read))
  return {
    tick,
    pinOnce,
    fetching: () => [...inFlight.keys()],
    withheld: () => withheld(options.state()),
  }
}

/** The ratified version `model`, or the NodeError that says why it cannot be pinned. */
function pinTarget(state: FederationState, model: string, read: ManifestReader): MirrorTarget {
  const view = state.models.get(model)
  if (!view)
    throw new NodeError('unknown-model', `no manifest of ${model} is known to this node (name@version)`, {
      status: 404,
    })
  if (view.status === 'conflicted' || (view.status as string) === 'suspended')
    throw new NodeError(
      'version-withheld',
      `${model} is ${view.status}: nodes neither fetch nor serve it until the federation decides (see GET /models/${model})`,
      { status: 409 },
    )
  const target = ratifiedTarget(state, view, read)
  if (!target)
    throw new NodeError(
      'version-not-ratified',
      `${model} is ${view.status}: only a ratified version is pinned (see GET /models/${model})`,
      { status: 409 },
    )
  return target
}

/** The error `pinOnce` answers for a fetch it asked for that did not end ok. */
function pinFailure(model: string, outcome: FetchOutcome): NodeError {
  const why = outcome.why ? ` (${outcome.why})` : ''
  if (outcome.result === 'mismatch')
    return new NodeError(
      'weights-mismatch',
      `the weights of ${model} that arrived do not match its manifest${why}; see the node log`,
      { status: 502 },
    )
  return new NodeError(
    'pin-fetch-failed',
    `the weights of ${model} could not be fetched whole${why}; check "gateways" in the node config and its peers, then ask again`,
    { status: 502 },
  )
}
