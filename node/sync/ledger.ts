/**
 * What each peer costs this node in sync (protocol/SPEC.md §14.6), kept
 * across its sessions:
 *
 * - a per-peer budget: frames and bytes received from the peer, all its
 *   sessions together, per window (`peerBytes`, `peerFrames` per
 *   `peerWindowMs`). Past it a session ends with `sync-budget`; the window
 *   refills on its own, so an honest peer catching up is slowed, not banned.
 * - its standing: junk points, a point for every list block it sent that no
 *   held seal or checkpoint named (refused, never stored) and one more per
 *   64 KiB of such a block, halving every `junkHalfLifeMs`. A peer past
 *   `junkPoints` is banned by the caller. An honest peer sends an unnamed
 *   block only in a race (a seal it holds whose author we do not know yet),
 *   a few points at a time; junk at full speed crosses the line within a
 *   few frames.
 *
 * Why our own score rather than gossipsub's: ADR 0005. Bounded: at most
 * `MAX_PEERS` peers are remembered, the least recently seen forgotten first.
 * Clock passed in (tests).
 */
import { SyncError } from './errors.js'

export interface SyncBudget {
  /** Frame bytes (length prefixes included) one session may receive. */
  readonly sessionBytes: number
  /** Frames one session may receive. */
  readonly sessionFrames: number
  /** Frame bytes received from one peer, all its sessions together, per window. */
  readonly peerBytes: number
  /** Frames received from one peer per window. */
  readonly peerFrames: number
  readonly peerWindowMs: number
  /** Bytes of list blocks one session may hold while they wait for the seal that names them. */
  readonly holdingBytes: number
  /** The same, all sessions together. */
  readonly holdingTotalBytes: number
  /** Longest a list block waits in a holding area for the record that names it. */
  readonly holdingMs: number
  /** Junk points past which a peer is banned. */
  readonly junkPoints: number
  readonly junkHalfLifeMs: number
}

const MiB = 1024 * 1024

/**
 * Defaults: a session moves at most 256 MiB in 4096 frames (a catch-up on a million records
 * needs about a thousand answers of 1 MiB or less); one peer 1 GiB in 16,384 frames per 10 min.
 * Holding areas: 16 MiB per session (the lists of a seal of 10,000 votes are ~400 KB), 64 MiB
 * for all, a block waiting at most 30 s (a few frames for an honest sender, who pushes records
 * first; parked junk would otherwise sit there until the session times out, 120 s).
 */
export const DEFAULT_BUDGET: SyncBudget = {
  sessionBytes: 256 * MiB,
  sessionFrames: 4096,
  peerBytes: 1024 * MiB,
  peerFrames: 16_384,
  peerWindowMs: 10 * 60_000,
  holdingBytes: 16 * MiB,
  holdingTotalBytes: 64 * MiB,
  holdingMs: 30_000,
  junkPoints: 64,
  junkHalfLifeMs: 10 * 60_000,
}

/** Bytes of one refused block that cost one more junk point. */
export const JUNK_POINT_BYTES = 64 * 1024
/** Peers remembered at most. */
const MAX_PEERS = 4096

export interface PeerLedger {
  /** Counts one received frame of `bytes`; throws `sync-budget` past the peer's window budget. */
  receive(peer: string, bytes: number): void
  /** Lowers a peer's standing by `points` (`junkPoints` of each refused block); true when it is now past the ban threshold. */
  charge(peer: string, points: number): boolean
  /** The peer's junk points now. */
  junk(peer: string): number
}

interface Account {
  windowStart: number
  bytes: number
  frames: number
  junk: number
  junkAt: number
}

/** The junk points of one refused block of `bytes`. */
export function junkPoints(bytes: number): number {
  return 1 + Math.floor(bytes / JUNK_POINT_BYTES)
}

export function createPeerLedger(budget: SyncBudget, now: () => number = Date.now): PeerLedger {
  const accounts = new Map<string, Account>()
  const accountOf = (peer: string): Account => {
    const t = now()
    let a = accounts.get(peer)
    if (a) {
      // Least recently seen last: the map's first entry is the one to forget.
      accounts.delete(peer)
    } else {
      a = { windowStart: t, bytes: 0, frames: 0, junk: 0, junkAt: t }
      if (accounts.size >= MAX_PEERS) accounts.delete(accounts.keys().next().value!)
    }
    accounts.set(peer, a)
    if (t - a.windowStart >= budget.peerWindowMs) {
      a.windowStart = t
      a.bytes = 0
      a.frames = 0
    }
    if (a.junk > 0) {
      a.junk *= 0.5 ** ((t - a.junkAt) / budget.junkHalfLifeMs)
      if (a.junk < 0.01) a.junk = 0
    }
    a.junkAt = t
    return a
  }
  return {
    receive(peer, bytes) {
      const a = accountOf(peer)
      a.bytes += bytes
      a.frames++
      if (a.frames > budget.peerFrames)
        throw new SyncError(
          'sync-budget',
          `the peer sent more than ${budget.peerFrames} frames in ${budget.peerWindowMs / 1000} s`,
        )
      if (a.bytes > budget.peerBytes)
        throw new SyncError(
          'sync-budget',
          `the peer sent more than ${budget.peerBytes} bytes in ${budget.peerWindowMs / 1000} s`,
        )
    },
    charge(peer, points) {
      const a = accountOf(peer)
      a.junk += points
      return a.junk >= budget.junkPoints
    },
    junk: (peer) => (accounts.has(peer) ? accountOf(peer).junk : 0),
  }
}
