/**
 * Set reconciliation for `/allmende/sync/1.0.0`: protocol/SPEC.md §14.3 (format, steps, faults).
 *
 * Two nodes find which ids one holds and the other lacks, with traffic that grows with the
 * difference, not with the sets; only the initiator learns the difference. Pure: no I/O, no
 * clock; the caller moves the messages and enforces `MAX_ROUNDS`. The bytes of a message are
 * reconcile-wire.ts's, its size budget reconcile-reply.ts's; the measured defaults, ADR 0017.
 */
import { malformed } from './errors.js'
import { createIdSet, ID_BYTES, type IdSet, type SortedIds } from './id-set.js'
import { Reply } from './reconcile-reply.js'
import {
  type Bound,
  compareBounds,
  MODE_FINGERPRINT,
  MODE_ID_LIST,
  MODE_SKIP,
  minimalBound,
  parseMessage,
  type Range,
} from './reconcile-wire.js'

export { PROTOCOL_VERSION } from './reconcile-wire.js'

/** Round trips (initiator message + responder reply) a caller should allow before giving up. */
export const MAX_ROUNDS = 32
export const DEFAULT_FRAME_SIZE_LIMIT = 64 * 1024
export const MIN_FRAME_SIZE_LIMIT = 4 * 1024
/** Negentropy's are 16 and 32; these cost about half the bytes once differences are many (ADR 0017). */
export const DEFAULT_BUCKETS = 8
export const DEFAULT_ID_LIST_THRESHOLD = 8

export interface ReconcileOptions {
  /** Largest message, sent or accepted, in bytes (default 64 KiB, minimum 4 KiB). */
  frameSizeLimit?: number
  /** Buckets a differing range is split into (2..64, default 8). */
  buckets?: number
  /** Ranges with fewer ids than this are sent as an IdList (2..64, default 8). */
  idListThreshold?: number
}

export interface ReconcileStep {
  /** The message to send back; null once the initiator is done (the responder always answers). */
  reply: Uint8Array | null
  /** Ids this side holds and the peer lacks (initiator only; fresh copies). */
  have: Uint8Array[]
  /** Ids the peer holds and this side lacks (initiator only; fresh copies). */
  need: Uint8Array[]
}

export interface Reconciler {
  readonly role: 'initiator' | 'responder' | undefined
  /** The ids this session reconciles: a snapshot taken when the session was created. */
  readonly ids: SortedIds
  /** The initiator's first message. */
  initiate(): Uint8Array
  /**
   * Processes a peer's message. Throws `SyncError` on any fault in it (or on a message after the
   * initiator finished), before any state changes or any id is reported.
   */
  reconcile(message: Uint8Array): ReconcileStep
}

/**
 * A reconciliation session over `ids` (an `IdSet` is snapshotted now, so ids
 * added during the session do not disturb it). Call `initiate` to be the
 * initiator; otherwise the session answers as the responder.
 */
export function createReconciler(
  ids: IdSet | SortedIds | Iterable<Uint8Array>,
  options: ReconcileOptions = {},
): Reconciler {
  const view = 'snapshot' in ids ? ids.snapshot() : isSortedIds(ids) ? ids : createIdSet(ids).snapshot()
  return new Session(view, checkOptions(options))
}

function isSortedIds(x: object): x is SortedIds {
  return 'fingerprint' in x && 'lowerBound' in x && 'at' in x
}

interface Settings {
  frameSizeLimit: number
  buckets: number
  idListThreshold: number
}

function checkOptions(o: ReconcileOptions): Settings {
  const frameSizeLimit = o.frameSizeLimit ?? DEFAULT_FRAME_SIZE_LIMIT
  const buckets = o.buckets ?? DEFAULT_BUCKETS
  const idListThreshold = o.idListThreshold ?? DEFAULT_ID_LIST_THRESHOLD
  if (!Number.isSafeInteger(frameSizeLimit) || frameSizeLimit < MIN_FRAME_SIZE_LIMIT) {
    throw new RangeError(`frameSizeLimit must be an integer of at least ${MIN_FRAME_SIZE_LIMIT}`)
  }
  // Both caps keep the first message (64 × 51 bytes, or 63 ids) inside the minimum frame,
  // and at least two buckets keep every split making progress.
  if (!Number.isInteger(buckets) || buckets < 2 || buckets > 64) {
    throw new RangeError('buckets must be an integer in 2..64')
  }
  if (!Number.isInteger(idListThreshold) || idListThreshold < 2 || idListThreshold > 64) {
    throw new RangeError('idListThreshold must be an integer in 2..64')
  }
  return { frameSizeLimit, buckets, idListThreshold }
}

/** A range of a received message located in our ids: `[lower, upper)`, our indexes. */
interface Span {
  readonly range: Range
  readonly lower: number
  readonly upper: number
  /** False when the range is settled or skipped without an answer of its own. */
  readonly needsAnswer: boolean
}

class Session implements Reconciler {
  role: 'initiator' | 'responder' | undefined
  private finished = false
  /** Ids the initiator reported, so none is reported twice (see `answer`). */
  private readonly reported = new Set<string>()

  constructor(
    readonly ids: SortedIds,
    private readonly settings: Settings,
  ) {}

  initiate(): Uint8Array {
    if (this.role !== undefined) throw new Error('reconciliation already started')
    this.role = 'initiator'
    const reply = new Reply(this.ids, this.settings.frameSizeLimit)
    if (!this.split(reply, 0, this.ids.size, null)) reply.fold(null, reply.stopIndex, this.ids.size)
    return reply.finish()
  }

  reconcile(message: Uint8Array): ReconcileStep {
    if (this.role === 'initiator' && this.finished) throw malformed('message after reconciliation finished')
    const ranges = parseMessage(message, this.settings.frameSizeLimit)
    if (this.role === undefined) this.role = 'responder'
    const reply = new Reply(this.ids, this.settings.frameSizeLimit)
    const have: Uint8Array[] = []
    const need: Uint8Array[] = []
    this.answer(this.locate(ranges), reply, have, need)
    if (this.role === 'responder') return { reply: reply.finish(), have, need }
    const found = { have: this.firstReports(have), need: this.firstReports(need) }
    if (reply.hasContent) return { reply: reply.finish(), ...found }
    this.finished = true
    return { reply: null, ...found }
  }

  /** Where each range falls in our ids, and whether it needs an answer at all. */
  private locate(ranges: readonly Range[]): Span[] {
    const initiator = this.role === 'initiator'
    const ids = this.ids
    const spans: Span[] = []
    let lower = 0
    for (const range of ranges) {
      const upper = range.bound === null ? ids.size : ids.lowerBound(range.bound, lower, ids.size)
      const quiet =
        range.mode === MODE_SKIP ||
        (range.mode === MODE_FINGERPRINT && equalBytes(ids.fingerprint(lower, upper), range.payload)) ||
        (range.mode === MODE_ID_LIST && initiator)
      spans.push({ range, lower, upper, needsAnswer: !quiet })
      lower = upper
    }
    return spans
  }

  /**
   * Ranges are answered in order until the reply is full. The rest of the message is then
   * walked in tail mode: what needs no answer is still settled or skipped, and each run of
   * ranges that needs one becomes a single Fingerprint range for the next round. If even those
   * stop fitting, everything from there to the end of the last range that needs an answer is
   * folded into one Fingerprint range (ranges after it are still settled or skipped). A region
   * the initiator settled inside such a fold comes round again; `reported` keeps its ids from
   * being reported twice.
   */
  private answer(spans: readonly Span[], reply: Reply, have: Uint8Array[], need: Uint8Array[]): void {
    let lastNeedingAnswer = -1
    for (let k = 0; k < spans.length; k++) if (spans[k]!.needsAnswer) lastNeedingAnswer = k
    /** In tail mode: our index where the open run of deferred ranges starts, or −1. */
    let deferredFrom = -1
    for (let k = 0; k < spans.length; k++) {
      const { range, lower, upper, needsAnswer } = spans[k]!
      if (reply.stopped && needsAnswer) {
        if (deferredFrom < 0) deferredFrom = lower
        continue
      }
      if (deferredFrom >= 0) {
        const previous = spans[k - 1]!.range.bound
        if (!reply.deferred(previous, deferredFrom, lower)) {
          const last = spans[lastNeedingAnswer]!
          reply.fold(last.range.bound, deferredFrom, last.upper)
          deferredFrom = -1
          k = lastNeedingAnswer // all ranges after it need no answer
          continue
        }
        deferredFrom = -1
      }
      if (!needsAnswer) {
        if (range.mode === MODE_ID_LIST) settle(this.ids, lower, upper, range.payload, have, need)
        reply.skip(range.bound)
      } else {
        const done =
          range.mode === MODE_FINGERPRINT
            ? this.split(reply, lower, upper, range.bound)
            : this.answerIdList(reply, lower, upper, range.bound, range.payload)
        if (!done) deferredFrom = reply.stopIndex
      }
    }
    // A run still open reaches the last range, which ends at infinity.
    if (deferredFrom >= 0) reply.fold(null, deferredFrom, this.ids.size)
  }

  private firstReports(ids: Uint8Array[]): Uint8Array[] {
    return ids.filter((id) => {
      const key = Buffer.from(id.buffer, id.byteOffset, id.length).toString('latin1')
      if (this.reported.has(key)) return false
      this.reported.add(key)
      return true
    })
  }

  /**
   * Our answer to a differing range `[lower, upper)` (our indexes) ending at `bound`: its ids if
   * few, else `buckets` fingerprinted sub-ranges. False if the reply stopped inside it.
   */
  private split(reply: Reply, lower: number, upper: number, bound: Bound): boolean {
    const count = upper - lower
    if (count < this.settings.idListThreshold) return reply.idList(lower, upper, bound)
    const buckets = Math.min(this.settings.buckets, count)
    const per = Math.floor(count / buckets)
    const extra = count % buckets
    let end = lower
    for (let i = 0; i < buckets; i++) {
      const start = end
      end += per + (i < extra ? 1 : 0)
      const b = end === upper ? bound : minimalBound(this.ids.at(end - 1), this.ids.at(end))
      if (!reply.fingerprint(b, this.ids.fingerprint(start, end))) {
        reply.stop(start)
        return false
      }
    }
    return true
  }

  /**
   * The responder's answer to the initiator's IdList over a range ending at `bound`: Skip over
   * runs of ids both hold, and over each run of differences an IdList of the ids we alone hold
   * there (empty when the initiator alone holds them). False if the reply stopped inside it.
   */
  private answerIdList(
    reply: Reply,
    lower: number,
    upper: number,
    bound: Bound,
    theirs: Uint8Array,
  ): boolean {
    const merged = mergeIdLists(this.ids, lower, upper, theirs)
    if (merged === undefined) {
      reply.skip(bound)
      return true
    }
    const { union, shared, ourIndex } = merged
    let runStart = 0
    while (runStart < union.length) {
      const same = shared[runStart]!
      let runEnd = runStart + 1
      while (runEnd < union.length && shared[runEnd] === same) runEnd++
      const end = runEnd === union.length ? bound : minimalBound(union[runEnd - 1]!, union[runEnd]!)
      if (same) {
        reply.skip(end)
      } else {
        const from = ourIndex[runStart]!
        const to = runEnd === union.length ? upper : ourIndex[runEnd]!
        if (!reply.idList(from, to, end)) return false
      }
      runStart = runEnd
    }
    return true
  }
}

/** Both lists of a range merged in order: the ids of either side, without repeats. */
interface MergedIds {
  readonly union: Uint8Array[]
  /** For each id of `union`: whether both sides hold it. */
  readonly shared: boolean[]
  /** For each id of `union`: our index at it (ours, or the next of ours after it). */
  readonly ourIndex: number[]
}

/** Our ids `[lower, upper)` merged with `theirs`; undefined when both hold the same ids. */
function mergeIdLists(
  ids: SortedIds,
  lower: number,
  upper: number,
  theirs: Uint8Array,
): MergedIds | undefined {
  const theirCount = theirs.length / ID_BYTES
  const theirId = (j: number) => theirs.subarray(j * ID_BYTES, (j + 1) * ID_BYTES)
  const merged: MergedIds = { union: [], shared: [], ourIndex: [] }
  let i = lower
  let j = 0
  let differs = false
  while (i < upper || j < theirCount) {
    const c = i === upper ? 1 : j === theirCount ? -1 : compareBounds(ids.at(i), theirId(j))
    merged.ourIndex.push(i)
    if (c === 0) {
      merged.union.push(ids.at(i++))
      j++
      merged.shared.push(true)
    } else {
      merged.union.push(c < 0 ? ids.at(i++) : theirId(j++))
      merged.shared.push(false)
      differs = true
    }
  }
  return differs ? merged : undefined
}

/** The initiator settles a range the responder listed: what we alone hold, what they alone hold. */
function settle(
  ids: SortedIds,
  lower: number,
  upper: number,
  theirs: Uint8Array,
  have: Uint8Array[],
  need: Uint8Array[],
): void {
  const theirCount = theirs.length / ID_BYTES
  let i = lower
  let j = 0
  while (i < upper || j < theirCount) {
    const theirId = j < theirCount ? theirs.subarray(j * ID_BYTES, (j + 1) * ID_BYTES) : null
    const c = i === upper ? 1 : theirId === null ? -1 : compareBounds(ids.at(i), theirId)
    if (c === 0) {
      i++
      j++
    } else if (c < 0) {
      have.push(ids.at(i++).slice())
    } else {
      need.push(theirId!.slice())
      j++
    }
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
