/**
 * One sync session (protocol/SPEC.md §14.4), in either role, over any frame
 * channel. Its parts are passed in (js-libp2p style): the record store, a
 * frame channel, the per-peer ledger. service.ts wires it to libp2p; tests
 * and the fuzzer drive it with frames of their own.
 *
 * Here: the session's parts and report, and `createSessions`. The rest:
 * initiator.ts and responder.ts (each role), admission.ts (what is kept of
 * the blocks a peer sends, §14.5), holding.ts (the holding area), channel.ts
 * (frames counted against budgets, §14.6), context.ts (what all sessions
 * share).
 */
import type { Logger } from '../log.js'
import type { RecordStore } from '../store.js'
import type { FrameChannel } from './channel.js'
import { createContext } from './context.js'
import { initiate } from './initiator.js'
import type { PeerLedger, SyncBudget } from './ledger.js'
import { respond } from './responder.js'

export { errorCode, type FrameChannel } from './channel.js'
export { MAX_REMEMBERED, RECONCILE_FRAME_LIMIT } from './context.js'
export { HOLDING_ENTRY_BYTES } from './holding.js'

export interface SyncReport {
  readonly peer: string
  readonly role: 'initiator' | 'responder'
  readonly ok: boolean
  readonly code?: string
  readonly rounds: number
  /** Frame bytes sent and received, length prefixes included. */
  readonly bytesSent: number
  readonly bytesReceived: number
  /** Of which reconciliation alone (the rest is records and blocks). */
  readonly reconcileBytes: number
  readonly fetched: number
  readonly pushed: number
  readonly taken: number
  /** List blocks refused: named by nothing held by the end of the session. */
  readonly refused: number
  readonly refusedBytes: number
  /** False when the round cap ended reconciliation early (the next session continues). */
  readonly complete: boolean
  readonly ms: number
}

export interface SessionOutcome {
  readonly report: SyncReport
  /** Why the session failed: a `SyncError` is the peer's fault. */
  readonly error?: unknown
}

export interface SessionParts {
  readonly store: RecordStore
  readonly log: Logger
  readonly ledger: PeerLedger
  readonly budget: SyncBudget
  /** Longest wait for one frame from the peer. */
  readonly frameTimeoutMs: number
  /** Reconciliation rounds per session as initiator (at most MAX_ROUNDS). */
  readonly maxRounds?: number
  /** Aborted when the node stops: a session cut by it costs the peer nothing. */
  readonly stopping?: AbortSignal
  /** A monotonic clock in ms, for how long blocks wait in the holding area (default performance.now). */
  readonly now?: () => number
  /** CIDs remembered as declined, refused or ignored, each kind (default MAX_REMEMBERED). */
  readonly maxRemembered?: number
}

export interface Sessions {
  /** One session as initiator over `frames`, already open to `peer`. Never throws. */
  initiate(frames: FrameChannel, peer: string, session: AbortSignal): Promise<SessionOutcome>
  /** One session as responder. Never throws. */
  respond(frames: FrameChannel, peer: string, session: AbortSignal): Promise<SessionOutcome>
}

export function createSessions(parts: SessionParts): Sessions {
  const ctx = createContext(parts)
  return {
    initiate: (frames, peer, session) => initiate(ctx, frames, peer, session),
    respond: (frames, peer, session) => respond(ctx, frames, peer, session),
  }
}
