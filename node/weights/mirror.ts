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
  return new MirrorDuty(options)
}

/** The duty's state: fetches under way, pauses after failures, and what `pinOnce` was asked. */
class MirrorDuty implements Mirror {
  private readonly inFlight = new Map<string, Promise<void>>()
  private readonly backoff = new Map<string, Backoff>()
  private readonly lastFetch = new Map<string, FetchOutcome>()
  // Roots an operator asked `pinOnce` for: a failure is kept to be told at the next ask.
  private readonly asked = new Set<string>()
  private readonly failedAsked = new Map<string, FetchOutcome>()
  private readonly withheldNow: (state: FederationState) => Map<string, Withholding>

  constructor(private readonly options: MirrorOptions) {
    this.withheldNow = perVersions((state) => withheldRoots(state, options.read))
  }

  readonly tick = (): void => {
    const options = this.options
    const maxFetches = options.maxFetches ?? DEFAULT_MAX_FETCHES
    if (options.stopped.aborted || this.inFlight.size >= maxFetches) return
    const now = options.clock()
    for (const target of mirrorTargets(options.state(), options.policy(), options.read)) {
      if (this.inFlight.size >= maxFetches) break
      if (this.due(target, now)) this.start(target)
    }
  }

  readonly pinOnce = (model: string): PinAnswer => {
    const target = pinTarget(this.options.state(), model, this.options.read)
    const key = rootKey(target.body.weights)
    const entry = this.options.held.get(target.body.weights)
    if (entry?.complete && !this.inFlight.has(key)) return this.heldAnswer(target, entry.verifiedAt)
    const failed = this.failedAsked.get(key)
    if (failed) {
      this.failedAsked.delete(key)
      throw pinFailure(model, failed)
    }
    this.asked.add(key)
    if (!this.inFlight.has(key)) {
      if (this.options.stopped.aborted)
        throw new NodeError('node-stopping', 'the node is stopping', { status: 503 })
      this.start(target)
    }
    return { status: 'fetching', model, weights: target.body.weights.toString() }
  }

  readonly fetching = (): string[] => [...this.inFlight.keys()]

  readonly withheld = (): ReadonlyMap<string, Withholding> => this.withheldNow(this.options.state())

  /** Whether `target` is due: not held whole, not under way, not pausing after a failure. */
  private due(target: MirrorTarget, now: number): boolean {
    const key = rootKey(target.body.weights)
    if (this.options.held.get(target.body.weights)?.complete) return false
    if (this.inFlight.has(key)) return false
    return (this.backoff.get(key)?.nextAt ?? 0) <= now
  }

  /** Starts the verified fetch of `target` within its budget; the slot is freed when it settles. */
  private start(target: MirrorTarget): void {
    const { log, stopped } = this.options
    const key = rootKey(target.body.weights)
    const signal = AbortSignal.any([stopped, AbortSignal.timeout(fetchBudgetMs(target.body.size))])
    log.info('mirror-fetch-started', { model: target.model, root: key })
    const run = this.options
      .fetch(target, this.options.state().rules.maxModelBytes, signal)
      .then((outcome) => this.settle(target, outcome))
      .catch((e) => log.warn('mirror-fetch-error', { model: target.model, root: key, error: e as Error }))
      .finally(() => {
        this.inFlight.delete(key)
        if (!stopped.aborted) this.tick()
      })
    this.inFlight.set(key, run)
  }

  /** Records how a fetch ended: held and verified, or a pause before the next try. */
  private async settle(target: MirrorTarget, outcome: FetchOutcome): Promise<void> {
    const { log, clock } = this.options
    const key = rootKey(target.body.weights)
    this.lastFetch.set(key, outcome)
    this.options.onOutcome?.(outcome)
    if (outcome.result === 'ok') {
      await this.options.held.verified(target.body.weights, clock())
      this.backoff.delete(key)
      this.asked.delete(key)
      log.info('mirror-held', {
        model: target.model,
        root: key,
        fetched: outcome.fetched,
        bytes: outcome.bytes,
      })
      return
    }
    if (outcome.result === 'aborted' && this.options.stopped.aborted) return
    const pause = this.pauseAfterFailure(key)
    if (this.asked.delete(key)) this.failedAsked.set(key, outcome)
    log.warn('mirror-fetch-failed', {
      model: target.model,
      root: key,
      result: outcome.result,
      why: outcome.why,
      retryInMs: pause,
    })
  }

  /** Counts a failure of `key` and sets when it may be tried again: the pause doubles, up to the most. */
  private pauseAfterFailure(key: string): number {
    const first = this.options.retryMs ?? DEFAULT_RETRY_MS
    const most = this.options.maxRetryMs ?? DEFAULT_MAX_RETRY_MS
    const failures = (this.backoff.get(key)?.failures ?? 0) + 1
    const pause = Math.min(first * 2 ** (failures - 1), most)
    this.backoff.set(key, { failures, nextAt: this.options.clock() + pause })
    return pause
  }

  private heldAnswer(target: MirrorTarget, verifiedAt: number): PinAnswer {
    const fetch = this.lastFetch.get(rootKey(target.body.weights))
    return {
      status: 'held',
      model: target.model,
      manifest: target.manifest.toString(),
      weights: target.body.weights.toString(),
      verifiedAt,
      ...(fetch ? { fetch } : {}),
    }
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
