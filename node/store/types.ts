/**
 * The record store's public shape (ADR 0015): what the API, sync, the steward and the metrics
 * read and call. node/store.ts assembles it from the parts beside this file.
 */
import type { CID } from 'multiformats/cid'
import type { AnyVerified, Fold, RecordReport } from '../../protocol/index.js'
import type { IdSet } from '../sync/id-set.js'

export type Verdict = 'accept' | 'reject' | 'ignore'

export interface Checked {
  readonly verdict: Verdict
  readonly code?: string
  readonly message?: string
  readonly record?: AnyVerified
}

export interface IngestResult extends Checked {
  /** The fold's report for the record, once held. */
  readonly report?: RecordReport
  readonly duplicate?: boolean
  /** List blocks sent along that the record's lists name and that were new: kept with it. */
  readonly blocksTaken?: number
}

/** List blocks by key (`cidKey` of their CID): candidates already hashed by the caller. */
export type KeyedBlocks = ReadonlyMap<string, Uint8Array>

/** What became of list blocks offered on their own (`ingestBlocks`). */
export interface BlocksTaken {
  /** Named by a held seal or checkpoint, new here, and now durable. */
  readonly taken: number
  /** Held already (or being written by another call). */
  readonly duplicates: number
  /** Named by nothing held, or not the block their position calls for: not kept. */
  readonly refused: number
  readonly refusedBytes: number
}

export interface StoreCounters {
  /** Records by kind and verdict: `vote|accept` → n. */
  readonly verdicts: Map<string, number>
}

export interface RecordStore {
  readonly fold: Fold
  readonly federation: CID
  readonly counters: StoreCounters
  /** The gossip validator. */
  check(bytes: Uint8Array): Checked
  /** `check` for a batch, verified on worker threads (sync catch-up); the same verdicts. */
  checkMany(records: readonly Uint8Array[]): Promise<Checked[]>
  /**
   * Validates, makes durable, folds. `blocks` are list blocks sent along (a seal's vote list).
   * Of `blocks`, only those the record's own lists name are kept (a seal's or checkpoint's
   * closure); the rest are dropped. `checked` is the gossip validator's verdict on the same
   * bytes: an accepted record is not decoded and verified a second time.
   */
  ingest(
    bytes: Uint8Array,
    blocks?: readonly Uint8Array[] | KeyedBlocks,
    checked?: Checked,
  ): Promise<IngestResult>
  /** List blocks held, by CID. */
  getBlock(cid: CID): Uint8Array | undefined
  /** Whether the list block with this key (`cidKey`) is held. */
  hasBlock(key: string): boolean
  /** Whether a held seal or checkpoint names the list block with this key and it is not held yet. */
  wantsBlock(key: string): boolean
  /** A number that changes whenever a held record comes to name a list block not held. */
  namingGeneration(): number
  /**
   * The bytes held under a CID, never from the network: a record, a list block, or for the
   * federation id the genesis.
   */
  bytesOf(cid: CID): Uint8Array | undefined
  /** When this node first received a proposal or vote (its own clock), if known. */
  witnessedAt(key: string): number | undefined
  /** The ids (CID digests) of every record and list block held: what sync reconciles. */
  readonly ids: IdSet
  /**
   * List blocks from a peer (sync): those a held seal or checkpoint names (directly or below a
   * named branch, in the shape its count fixes) are made durable, then seals and checkpoints
   * waiting for them are completed. The rest are refused: not written, not in `ids`.
   */
  ingestBlocks(blocks: readonly Uint8Array[] | KeyedBlocks): Promise<BlocksTaken>
  logBytes(): number
  /**
   * The record version the head state demands when it is above the one this node speaks: the
   * node then keeps and relays records but takes no part in decisions (SPEC.md §5.1, Versions).
   */
  requiredVersion(): number | undefined
  close(): Promise<void>
}
