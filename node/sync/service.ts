/**
 * `/allmende/sync/1.0.0` on a live node (protocol/SPEC.md §14), built from its
 * parts: the sessions (session.ts) run over libp2p streams (streams.ts) when
 * the schedule says (schedule.ts), each peer's costs kept in a ledger
 * (ledger.ts). A peer whose session failed by its own fault (a `SyncError`)
 * is hung up on and refused for `banMs`; a session ended by a budget
 * (`sync-budget`) is not a ban: the peer's window refills by itself, so an
 * honest peer catching up is slowed, never shut out.
 */
import type { Logger } from '../log.js'
import type { P2P } from '../p2p.js'
import type { RecordStore } from '../store.js'
import { isSyncError } from './errors.js'
import { createPeerLedger, DEFAULT_BUDGET, type PeerLedger, type SyncBudget } from './ledger.js'
import { MAX_ROUNDS } from './reconcile.js'
import { createSyncSchedule } from './schedule.js'
import { createSessions, type SyncReport } from './session.js'
import { createSyncStreams } from './streams.js'

export type { SyncReport } from './session.js'
export { SYNC_PROTOCOL } from './streams.js'

/** Reports kept for `reports()`. */
const MAX_REPORTS = 100

export interface SyncOptions {
  readonly p2p: P2P
  readonly store: RecordStore
  readonly log: Logger
  /** Between periodic rounds with each connected peer (default 30 s; 0 turns periodic sync off). */
  readonly intervalMs?: number
  /** Longest wait for one frame from the peer (default 10 s). */
  readonly frameTimeoutMs?: number
  /** Longest session (default 120 s). */
  readonly sessionTimeoutMs?: number
  /** How long a peer that broke the protocol is refused (default 10 min). */
  readonly banMs?: number
  /** Sync with each peer as it connects (default true). */
  readonly onConnect?: boolean
  /** Reconciliation rounds per session as initiator (default MAX_ROUNDS); the next session goes on. */
  readonly maxRounds?: number
  /** Called with every finished session (metrics). */
  readonly onReport?: (report: SyncReport) => void
  /** Byte, frame and holding budgets and the junk ban threshold (ledger.ts); each key defaults. */
  readonly budget?: Partial<SyncBudget>
}

export interface SyncService {
  /** One session with a connected (or dialable) peer, as initiator. Never throws. */
  syncWith(peerId: string): Promise<SyncReport>
  /** The last sessions, newest last (at most 100). */
  reports(): readonly SyncReport[]
  /** Each peer's sync costs: budgets spent and junk points. */
  readonly ledger: PeerLedger
  stop(): Promise<void>
}

export function createSync(options: SyncOptions): SyncService {
  const { p2p, store, log } = options
  const budget: SyncBudget = { ...DEFAULT_BUDGET, ...options.budget }
  const stopping = new AbortController()
  const ledger = createPeerLedger(budget)
  const sessions = createSessions({
    store,
    log,
    ledger,
    budget,
    frameTimeoutMs: options.frameTimeoutMs ?? 10_000,
    maxRounds: Math.min(options.maxRounds ?? MAX_ROUNDS, MAX_ROUNDS),
    stopping: stopping.signal,
  })
  const recent: SyncReport[] = []
  const streams = createSyncStreams({
    libp2p: p2p.libp2p,
    sessions,
    sessionTimeoutMs: options.sessionTimeoutMs ?? 120_000,
    stopping: stopping.signal,
    remember: (report) => {
      options.onReport?.(report)
      recent.push(report)
      if (recent.length > MAX_REPORTS) recent.shift()
      log.log(report.ok ? 'debug' : 'warn', report.ok ? 'sync-done' : 'sync-failed', { ...report })
    },
    blame: banOnFault(p2p, log, options.banMs ?? 10 * 60_000, stopping.signal),
  })
  streams.handle()
  const schedule = createSyncSchedule({
    p2p,
    initiate: streams.initiate,
    intervalMs: options.intervalMs ?? 30_000,
    onConnect: options.onConnect !== false,
    stopping: stopping.signal,
  })

  return {
    syncWith: schedule.syncWith,
    reports: () => recent,
    ledger,
    async stop() {
      stopping.abort()
      schedule.stop()
      await Promise.allSettled([...schedule.running(), ...streams.inbound()])
      await streams.unhandle()
    },
  }
}

/** A peer at fault is hung up on and refused for a while; a spent budget only ends the session. */
function banOnFault(p2p: P2P, log: Logger, banMs: number, stopping: AbortSignal) {
  return async (peer: string, e: unknown): Promise<void> => {
    if (!isSyncError(e) || e.code === 'sync-budget' || stopping.aborted) return
    log.warn('sync-peer-dropped', { peer, code: e.code, message: e.message, banMs })
    await p2p.ban(peer, banMs).catch(() => {})
  }
}
