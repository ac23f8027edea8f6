/**
 * When a node syncs (protocol/SPEC.md §14.1): gossip only carries what happens
 * while a node listens, so it reconciles with each peer as it connects and
 * then periodically, one session per peer at a time, and goes on at once
 * after a session the round cap cut short while sessions make progress.
 */
import type { P2P } from '../p2p.js'
import type { SyncReport } from './session.js'

export interface ScheduleParts {
  readonly p2p: P2P
  /** One session as initiator. Never throws. */
  readonly initiate: (peer: string) => Promise<SyncReport>
  /** Between periodic rounds with each connected peer; 0 turns periodic sync off. */
  readonly intervalMs: number
  /** Sync with each peer as it connects. */
  readonly onConnect: boolean
  /** Aborted when the node stops: no session starts after it. */
  readonly stopping: AbortSignal
}

export interface SyncSchedule {
  /** A session with `peer` as initiator, or the one already under way. Never throws. */
  syncWith(peer: string): Promise<SyncReport>
  /** The sessions under way. */
  running(): Promise<SyncReport>[]
  /** No more rounds: the timer and the connect listener go. */
  stop(): void
}

export function createSyncSchedule(parts: ScheduleParts): SyncSchedule {
  const { p2p, stopping } = parts
  const libp2p = p2p.libp2p
  const running = new Map<string, Promise<SyncReport>>()

  const syncWith = (peer: string): Promise<SyncReport> => {
    const busy = running.get(peer)
    if (busy) return busy
    const work = parts.initiate(peer).finally(() => running.delete(peer))
    running.set(peer, work)
    // Cut short by the round cap: go on at once while sessions make progress (the periodic
    // round picks up otherwise).
    void work.then((report) => {
      const progressed = report.taken > 0 || report.pushed > 0
      if (report.ok && !report.complete && progressed && !stopping.aborted)
        setTimeout(() => void syncWith(peer), 0).unref()
    })
    return work
  }

  const onConnect = (evt: CustomEvent<{ toString(): string }>) => {
    if (stopping.aborted) return
    const peer = evt.detail.toString()
    // One session serves both sides: the peer with the smaller id opens it on connect.
    if (p2p.peerId < peer) void syncWith(peer)
  }
  if (parts.onConnect) libp2p.addEventListener('peer:connect', onConnect)

  const timer =
    parts.intervalMs > 0
      ? setInterval(() => {
          for (const { id } of p2p.peers()) void syncWith(id)
        }, parts.intervalMs)
      : undefined
  timer?.unref()

  return {
    syncWith,
    running: () => [...running.values()],
    stop() {
      if (timer) clearInterval(timer)
      libp2p.removeEventListener('peer:connect', onConnect)
    },
  }
}
