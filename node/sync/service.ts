/**
 * `/allmende/sync/1.0.0` on a live node (DESIGN.md §6): gossip only carries
 * what happens while a node listens, so on every new connection and then
 * periodically a node reconciles its set of record and list-block ids with a
 * peer, fetches what it lacks and pushes what the peer lacks.
 *
 * This module is the libp2p side: it dials and handles the protocol, turns a
 * stream into a frame channel (@libp2p/utils `lpStream`, which enforces the
 * maximum frame length before buffering) and runs a session (session.ts) on
 * it. A peer whose session failed by its own fault (a `SyncError`: garbage,
 * an oversized frame, a block nobody asked for, silence past the frame
 * timeout, junk list blocks past the ban threshold) is hung up on and refused
 * for `banMs`. A session ended by a budget (`sync-budget`) is not a ban: the
 * peer's window refills by itself, so an honest peer catching up is slowed,
 * never shut out.
 */

import type { Connection, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { Logger } from '../log.js'
import type { P2P } from '../p2p.js'
import type { RecordStore } from '../store.js'
import { isSyncError } from './errors.js'
import { MAX_FRAME_BYTES } from './frames.js'
import { createPeerLedger, DEFAULT_BUDGET, type PeerLedger, type SyncBudget } from './ledger.js'
import { MAX_ROUNDS } from './reconcile.js'
import {
  createSessions,
  errorCode,
  type FrameChannel,
  type SessionOutcome,
  type SyncReport,
} from './session.js'

export type { SyncReport } from './session.js'

export const SYNC_PROTOCOL = '/allmende/sync/1.0.0'

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
  const libp2p = p2p.libp2p
  const intervalMs = options.intervalMs ?? 30_000
  const frameTimeoutMs = options.frameTimeoutMs ?? 10_000
  const sessionTimeoutMs = options.sessionTimeoutMs ?? 120_000
  const banMs = options.banMs ?? 10 * 60_000
  const budget: SyncBudget = { ...DEFAULT_BUDGET, ...options.budget }
  const stopping = new AbortController()
  const running = new Map<string, Promise<SyncReport>>()
  const inbound = new Set<Promise<unknown>>()
  const recent: SyncReport[] = []
  let stopped = false
  const ledger = createPeerLedger(budget)
  const sessions = createSessions({
    store,
    log,
    ledger,
    budget,
    frameTimeoutMs,
    maxRounds: Math.min(options.maxRounds ?? MAX_ROUNDS, MAX_ROUNDS),
    stopping: stopping.signal,
  })

  const remember = (r: SyncReport) => {
    options.onReport?.(r)
    recent.push(r)
    if (recent.length > 100) recent.shift()
    log.log(r.ok ? 'debug' : 'warn', r.ok ? 'sync-done' : 'sync-failed', { ...r })
  }

  /** A peer at fault is hung up on and refused for a while; a spent budget only ends the session. */
  const punish = async (peer: string, e: unknown) => {
    if (!isSyncError(e) || e.code === 'sync-budget' || stopped) return
    log.warn('sync-peer-dropped', { peer, code: e.code, message: e.message, banMs })
    await p2p.ban(peer, banMs).catch(() => {})
  }

  const frameChannel = (stream: Stream): FrameChannel => lpStream(stream, { maxDataLength: MAX_FRAME_BYTES })

  const finish = async (stream: Stream | undefined, outcome: SessionOutcome, session: AbortSignal) => {
    if (outcome.error === undefined) await stream?.close({ signal: session }).catch(() => {})
    else {
      stream?.abort(outcome.error as Error)
      await punish(outcome.report.peer, outcome.error)
    }
    remember(outcome.report)
    return outcome.report
  }

  const initiate = async (peer: string): Promise<SyncReport> => {
    const started = Date.now()
    const session = AbortSignal.any([stopping.signal, AbortSignal.timeout(sessionTimeoutMs)])
    let stream: Stream
    try {
      stream = await libp2p.dialProtocol(peerIdFromString(peer), SYNC_PROTOCOL, { signal: session })
    } catch (e) {
      const r = notOpened(peer, errorCode(e, session), Date.now() - started)
      remember(r)
      return r
    }
    return finish(stream, await sessions.initiate(frameChannel(stream), peer, session), session)
  }

  const respond = async (stream: Stream, connection: Connection): Promise<void> => {
    const session = AbortSignal.any([stopping.signal, AbortSignal.timeout(sessionTimeoutMs)])
    const peer = connection.remotePeer.toString()
    await finish(stream, await sessions.respond(frameChannel(stream), peer, session), session)
  }

  void libp2p.handle(
    SYNC_PROTOCOL,
    (stream, connection) => {
      if (stopped) {
        stream.abort(new Error('stopping'))
        return
      }
      const work = respond(stream, connection)
      inbound.add(work)
      void work.finally(() => inbound.delete(work))
    },
    { maxInboundStreams: 2, maxOutboundStreams: 2 },
  )

  const syncWith = (peer: string): Promise<SyncReport> => {
    const busy = running.get(peer)
    if (busy) return busy
    const work = initiate(peer).finally(() => running.delete(peer))
    running.set(peer, work)
    // Cut short by the round cap: go on at once while sessions make progress (the periodic
    // round picks up otherwise).
    void work.then((r) => {
      if (r.ok && !r.complete && (r.taken > 0 || r.pushed > 0) && !stopped)
        setTimeout(() => void syncWith(peer), 0).unref()
    })
    return work
  }

  const onConnect = (evt: CustomEvent<{ toString(): string }>) => {
    if (stopped) return
    const peer = evt.detail.toString()
    // One session serves both sides: the peer with the smaller id opens it on connect.
    if (p2p.peerId < peer) void syncWith(peer)
  }
  if (options.onConnect !== false) libp2p.addEventListener('peer:connect', onConnect)

  const timer =
    intervalMs > 0
      ? setInterval(() => {
          for (const { id } of p2p.peers()) void syncWith(id)
        }, intervalMs)
      : undefined
  timer?.unref()

  return {
    syncWith,
    reports: () => recent,
    ledger,
    async stop() {
      stopped = true
      if (timer) clearInterval(timer)
      libp2p.removeEventListener('peer:connect', onConnect)
      stopping.abort()
      await Promise.allSettled([...running.values(), ...inbound])
      await libp2p.unhandle(SYNC_PROTOCOL).catch(() => {})
    },
  }
}

/** The report of a session whose stream could not be opened. */
function notOpened(peer: string, code: string, ms: number): SyncReport {
  return {
    peer,
    role: 'initiator',
    ok: false,
    code,
    complete: true,
    rounds: 0,
    bytesSent: 0,
    bytesReceived: 0,
    reconcileBytes: 0,
    fetched: 0,
    pushed: 0,
    taken: 0,
    refused: 0,
    refusedBytes: 0,
    ms,
  }
}
