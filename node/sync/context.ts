/**
 * What every sync session of a node shares (session.ts builds it once): the
 * store, the ledger and budgets, the tally of all holding areas, and the CIDs
 * remembered as declined, refused or ignored, so that no session fetches them
 * again. Also the packing of blocks into answers, which both roles send.
 */
import type { CID } from 'multiformats/cid'
import type { Logger } from '../log.js'
import type { RecordStore } from '../store.js'
import type { HoldingTotal } from './holding.js'
import type { PeerLedger, SyncBudget } from './ledger.js'
import { MAX_GET_CIDS } from './messages.js'
import { RecentSet } from './recent-set.js'
import { MAX_ROUNDS } from './reconcile.js'
import type { SessionParts } from './session.js'

/** Reconciliation messages stay well inside a frame (the rest of a frame is message overhead). */
export const RECONCILE_FRAME_LIMIT = 1024 * 1024 - 4096
/** Bytes of blocks packed into one answer or push. */
const BLOCKS_BUDGET = 1024 * 1024 - 16 * 1024
/** CIDs remembered as declined, refused or ignored, each kind (oldest forgotten first). */
export const MAX_REMEMBERED = 100_000

export interface SessionContext {
  readonly store: RecordStore
  readonly log: Logger
  readonly ledger: PeerLedger
  readonly budget: SyncBudget
  readonly frameTimeoutMs: number
  /** Reconciliation rounds per session as initiator (at most MAX_ROUNDS). */
  readonly maxRounds: number
  /** Aborted when the node stops: a session cut by it costs the peer nothing. */
  readonly stopping: AbortSignal | undefined
  /** A monotonic clock in ms, for how long blocks wait in the holding area. */
  readonly now: () => number
  /** Bytes held by every session's holding area together. */
  readonly holdingTotal: HoldingTotal
  /** CIDs found invalid: never fetched again. Insertion-ordered, so the oldest go first. */
  readonly declined: RecentSet
  /** List blocks refused as unnamed: not fetched again while nothing names them. */
  readonly unnamed: RecentSet
  /** CIDs ignored (unknown author, ingest limits) under the current governance head. */
  ignoredNow(): RecentSet
}

export function createContext(parts: SessionParts): SessionContext {
  const { store } = parts
  const remembered = parts.maxRemembered ?? MAX_REMEMBERED
  // Ignored under the current governance head only: a stranger with throwaway keys can sign any
  // number of such records.
  const ignored = new RecentSet(remembered)
  let ignoredUnder: unknown
  return {
    store,
    log: parts.log,
    ledger: parts.ledger,
    budget: parts.budget,
    frameTimeoutMs: parts.frameTimeoutMs,
    maxRounds: Math.min(parts.maxRounds ?? MAX_ROUNDS, MAX_ROUNDS),
    stopping: parts.stopping,
    now: parts.now ?? (() => performance.now()),
    holdingTotal: { used: 0 },
    declined: new RecentSet(remembered),
    unnamed: new RecentSet(remembered),
    ignoredNow() {
      // The head state is the same object until something changes the governance chain (or a
      // re-derivation makes a new one, which only forgets the ignored set early).
      const head = store.fold.headState()
      if (head !== ignoredUnder) {
        ignored.clear()
        ignoredUnder = head
      }
      return ignored
    },
  }
}

/** Blocks held for `cids`, packed into answers that fit a frame. */
export function packed(store: RecordStore, cids: readonly CID[]): Uint8Array[][] {
  const out: Uint8Array[][] = []
  let batch: Uint8Array[] = []
  let size = 0
  for (const cid of cids) {
    const bytes = store.bytesOf(cid)
    if (!bytes) continue
    if (batch.length > 0 && (size + bytes.length + 8 > BLOCKS_BUDGET || batch.length >= MAX_GET_CIDS)) {
      out.push(batch)
      batch = []
      size = 0
    }
    batch.push(bytes)
    size += bytes.length + 8
  }
  if (batch.length > 0) out.push(batch)
  return out
}

export const isRecordBytes = (b: Uint8Array) => b[0]! >> 5 !== 4
