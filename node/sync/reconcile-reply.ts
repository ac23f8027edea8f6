/**
 * One outgoing reconciliation message under construction, kept within the
 * frame size limit (protocol/SPEC.md §14.3, "Message size"). Skip ranges are
 * held back and coalesced; every other range is added only if it fits the
 * budget. When one does not, the reply *stops*: `stopIndex` is our index at
 * the last bound written, where the unprocessed part begins, and the session
 * (reconcile.ts) finishes the message in tail mode (`deferred`, `fold`).
 */
import { FINGERPRINT_BYTES, ID_BYTES, type SortedIds } from './id-set.js'
import {
  type Bound,
  boundSize,
  MAX_BOUND_BYTES,
  MessageWriter,
  MODE_FINGERPRINT,
  MODE_ID_LIST,
  MODE_SKIP,
  minimalBound,
  PROTOCOL_VERSION,
  varintSize,
} from './reconcile-wire.js'

/**
 * Room kept free below the frame limit while ranges are answered: enough to end the message
 * however the tail goes (a held-back Skip, ≤ 35 bytes; a folded Fingerprint range, ≤ 51; a
 * final Skip, 3), plus about 1/64 of the limit for deferred ranges in tail mode.
 */
const TAIL_END_BYTES = 89
function reserveFor(limit: number): number {
  return TAIL_END_BYTES + 39 + Math.floor(limit / 64)
}

export class Reply {
  readonly out = new MessageWriter()
  /** Room for ranges while processing; the rest of the limit is kept for the tail. */
  readonly budget: number
  stopped = false
  stopIndex = 0
  private ended = false
  private pending = false
  private pendingBound: Bound = null

  constructor(
    readonly ids: SortedIds,
    readonly limit: number,
  ) {
    this.budget = limit - reserveFor(limit)
    this.out.byte(PROTOCOL_VERSION)
  }

  /** Bytes used once the held-back Skip is written. */
  private used(): number {
    return this.out.size + (this.pending ? boundSize(this.pendingBound) + 1 : 0)
  }

  skip(bound: Bound): void {
    this.pending = true
    this.pendingBound = bound
  }

  private flush(): void {
    if (!this.pending) return
    this.out.bound(this.pendingBound)
    this.out.varint(MODE_SKIP)
    this.pending = false
  }

  /** Adds a Fingerprint range if it fits; false if it did not (nothing written). */
  fingerprint(bound: Bound, fp: Uint8Array): boolean {
    if (this.used() + boundSize(bound) + 1 + FINGERPRINT_BYTES > this.budget) return false
    this.flush()
    this.out.bound(bound)
    this.out.varint(MODE_FINGERPRINT)
    this.out.bytes(fp)
    return true
  }

  /**
   * Adds an IdList range of our ids `[from, to)` up to `bound`. If it does not fit, lists as many
   * as fit up to a bound just after the last one listed, stops there and returns false.
   */
  idList(from: number, to: number, bound: Bound): boolean {
    const count = to - from
    if (this.used() + boundSize(bound) + 1 + varintSize(count) + count * ID_BYTES <= this.budget) {
      this.writeIdList(bound, from, to)
      return true
    }
    const room = this.budget - this.used() - MAX_BOUND_BYTES - 1 - varintSize(count)
    const fit = Math.min(Math.floor(room / ID_BYTES), count - 1)
    if (fit < 1) {
      this.stop(from)
      return false
    }
    const cut = minimalBound(this.ids.at(from + fit - 1), this.ids.at(from + fit))
    this.writeIdList(cut, from, from + fit)
    this.stop(from + fit)
    return false
  }

  private writeIdList(bound: Bound, from: number, to: number): void {
    this.flush()
    this.out.bound(bound)
    this.out.varint(MODE_ID_LIST)
    this.out.varint(to - from)
    for (let i = from; i < to; i++) this.out.bytes(this.ids.at(i))
  }

  stop(index: number): void {
    this.stopped = true
    this.stopIndex = index
  }

  /**
   * Tail mode: a Fingerprint range over our ids `[from, to)` ending at `bound`, standing for
   * ranges left for the next round. Written only if the message can still be ended after it
   * (`TAIL_END_BYTES`); false otherwise.
   */
  deferred(bound: Bound, from: number, to: number): boolean {
    if (this.used() + boundSize(bound) + 1 + FINGERPRINT_BYTES + TAIL_END_BYTES > this.limit) return false
    this.fold(bound, from, to)
    return true
  }

  /** Tail mode: a Fingerprint range over our ids `[from, to)` ending at `bound`, unconditionally. */
  fold(bound: Bound, from: number, to: number): void {
    this.flush()
    this.out.bound(bound)
    this.out.varint(MODE_FINGERPRINT)
    this.out.bytes(this.ids.fingerprint(from, to))
    if (bound === null) this.ended = true
  }

  /** True if anything but Skip was written. */
  get hasContent(): boolean {
    return this.out.size > 1
  }

  finish(): Uint8Array {
    // A message with ranges ends at infinity: write the held-back final Skip.
    if (!this.ended && this.hasContent) this.flush()
    return this.out.finish()
  }
}
