/**
 * One sync session (`/allmende/sync/1.0.0`, DESIGN.md §6), in either role,
 * over any frame channel. Its parts are passed in (js-libp2p style): the
 * record store, a frame channel, the per-peer ledger. service.ts wires it to
 * libp2p (dialling, the protocol handler, bans); tests and the fuzzer drive
 * it with frames of their own.
 *
 *     → reconcile … ← reconcile            (range fingerprints, ≤ maxRounds)
 *     → get [cids] ← blocks [bytes]        (what the initiator lacks, in batches)
 *     → blocks [bytes]                     (what the responder lacks, unasked)
 *     → done
 *
 * What is kept, and what it costs the peer:
 * - records go through the gossip validator (`checkMany`, then `ingest`):
 *   unknown authors are ignored, invalid bytes end the session
 *   (`sync-invalid`).
 * - list blocks are kept only where a held seal or checkpoint names them
 *   (store.ts). One a held record names already goes straight to the store.
 *   One that comes before the seal naming it waits in the session's holding
 *   area, bounded per session and for all sessions, and for at most
 *   `holdingMs`; a record that arrives later in the session takes its named
 *   blocks from there. What is still unnamed when the session ends, when its
 *   wait is over, or does not fit the holding area is refused: never
 *   written, never in the reconciled set, its CID not fetched again until
 *   something names it, and junk points against the peer (ledger.ts). Past
 *   the ban threshold the session ends with `sync-junk`. (An initiator asks
 *   once more for a block whose wait ran out before refusing it: its own
 *   fetch order can put a list far ahead of its seal.)
 * - budgets: frames and bytes received per session and per peer (ledger.ts);
 *   one frame or one byte more ends the session with `sync-budget`.
 * - an answer must hold only blocks that were asked for; reconciliation is
 *   bounded in rounds and message size; every frame has a timeout.
 *
 * An honest sender puts records before list blocks in what it pushes, so the
 * seal usually comes first; the holding area covers the rest.
 *
 * Here: the session's parts and report, and `createSessions`. The rest:
 * initiator.ts and responder.ts (each role), admission.ts (what is kept of
 * the blocks a peer sends), holding.ts (the holding area), channel.ts (frames
 * counted against budgets), context.ts (what all sessions share).
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
