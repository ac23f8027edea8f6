/**
 * Set reconciliation for `/allmende/sync/1.0.0` (DESIGN.md §6 "Sync"): two
 * nodes find which record ids one holds and the other lacks, with traffic
 * that grows with the difference, not with the sets. Pure: no I/O, no clock;
 * the caller moves the messages (and enforces `MAX_ROUNDS`).
 *
 * The method and the wire format are Negentropy's protocol v1
 * (github.com/hoytech/negentropy) with every timestamp 0, since records are
 * ordered by id alone:
 *
 *     Message := 0x61 Range*
 *     Range   := Bound Mode Payload        (its lower bound is the previous range's upper bound, or 0)
 *     Bound   := 0x00 0x00                 infinity (above every id)
 *              | 0x01 Varint(len) Byte{len} an id prefix, 0 <= len <= 32, read as if padded with zeros
 *     Mode    := 0 Skip (no payload) | 1 Fingerprint (16 bytes) | 2 IdList (Varint(count) Id{count})
 *     Varint  := base 128, most significant digit first, shortest form (Negentropy's, not LEB128)
 *
 * A fingerprint is Negentropy's: the first 16 bytes of sha256(sum ‖
 * varint(count)), the ids summed as 256-bit little-endian integers (id-set.ts).
 *
 * The exchange: the initiator splits its whole set into `buckets` (8)
 * fingerprinted buckets, or lists the ids of a small set. Each side answers
 * every range in order: a matching fingerprint or a Skip with Skip (adjacent
 * skips coalesce); a differing fingerprint by splitting its own ids of that
 * range into 8 buckets, or, below `idListThreshold` (8) ids, listing them.
 * The initiator settles an IdList it receives (its `have` and `need`) and
 * skips it. The responder answers an IdList with the ids it alone holds
 * there: Skip over runs both sides share, an IdList (often empty) over each
 * run of differences. The initiator is done when its answer would be all Skip.
 *
 * Rules this implementation adds, all within what a Negentropy v1 reader
 * accepts, so faults can be told from data:
 * - a message with ranges ends with an infinity bound (a final Skip is sent,
 *   not implied): a message cut at a range boundary is caught, not read as
 *   "the rest matches". A message with no ranges means "nothing left".
 * - bounds strictly increase; an IdList's ids strictly increase and lie in
 *   its range; the encoded timestamp is 1 (timestamp 0) or 0 (infinity, with
 *   an empty prefix); nothing follows the infinity range.
 * - a message never exceeds `frameSizeLimit` (default 64 KiB, at least
 *   4 KiB; both sides must use the same limit). When the answer would, it
 *   stops at a range boundary (or cuts an IdList short) and walks the rest of
 *   the message in tail mode: ranges that need no answer are still settled or
 *   skipped, each run of ranges that needs one becomes a single Fingerprint
 *   range, and the next round carries on from those. Only if even they do not
 *   fit is everything up to the last such range folded into one. (Negentropy's
 *   C++ reference folds everything after the cut into one range to infinity,
 *   fingerprinted from the end of the range being dropped: that can hide that
 *   range's differences, and it sends settled regions round again.)
 * - the initiator reports each id at most once: a region folded as above may
 *   be settled twice, and its ids are not reported again.
 *
 * Result: for ids that behave like random bytes (sha256 digests), the
 * initiator's `have` is exactly what it alone holds and `need` exactly what
 * the responder alone holds. Additive fingerprints can be fooled by sets with
 * equal sums and counts; for digests that takes a k-sum (generalized
 * birthday) search, which the tests pin as a known property.
 *
 * Rounds: with 100,000 ids, 1% different costs ~417 KB in 8 round trips at
 * 64 KiB; beyond ~3% a session needs more than `MAX_ROUNDS`. What a session
 * reported before it was cut off is correct, so a caller that stops at the
 * cap fetches that and starts a new session, which finds the rest.
 *
 * Errors: `reconcile` throws `SyncError` (errors.ts) for every fault in a
 * received message — `sync-malformed`, `sync-oversize` (longer than
 * `frameSizeLimit`), `sync-version` (another Negentropy version byte,
 * 0x60..0x6f) — before any state changes or any id is reported; nothing else
 * escapes for any input. Misuse by the caller (initiating twice, or after
 * answering as responder) throws a plain Error.
 *
 * Only the initiator learns the difference (Negentropy's design): the
 * responder's `have` and `need` are always empty. The initiator can send the
 * records in its `have` to the responder and fetch its `need`.
 */
import { malformed, SyncError } from './errors.js'
import { createIdSet, FINGERPRINT_BYTES, ID_BYTES, type IdSet, type SortedIds } from './id-set.js'

export const PROTOCOL_VERSION = 0x61
/** Round trips (initiator message + responder reply) a caller should allow before giving up. */
export const MAX_ROUNDS = 32
export const DEFAULT_FRAME_SIZE_LIMIT = 64 * 1024
export const MIN_FRAME_SIZE_LIMIT = 4 * 1024
/**
 * Negentropy splits into 16 buckets and lists ranges below 32 ids. Measured on 100,000 ids, 8 and 8
 * cost half the bytes once differences are many (1%: ~420 KB against ~900 KB, in 8 round trips
 * against 14) and the same 3 round trips for a single difference; 16-byte fingerprints keep any
 * choice above ~300 bytes per difference at that density.
 */
export const DEFAULT_BUCKETS = 8
export const DEFAULT_ID_LIST_THRESHOLD = 8

const MODE_SKIP = 0
const MODE_FINGERPRINT = 1
const MODE_ID_LIST = 2
/**
 * Room kept free below the frame limit while ranges are answered: enough to end the message
 * however the tail goes (a held-back Skip, ≤ 35 bytes; a folded Fingerprint range, ≤ 51; a
 * final Skip, 3), plus about 1/64 of the limit for deferred ranges in tail mode.
 */
const TAIL_END_BYTES = 89
function reserveFor(limit: number): number {
  return TAIL_END_BYTES + 39 + Math.floor(limit / 64)
}
/** The largest encoded finite bound: timestamp byte, length byte, 32 prefix bytes. */
const MAX_BOUND_BYTES = 2 + ID_BYTES

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
  /** Processes a peer's message. Throws `SyncError` on any fault in it. */
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

// --- Bounds -----------------------------------------------------------------------------------------------

/** An id prefix of 0..32 bytes (padded with zeros when compared), or null for infinity. */
type Bound = Uint8Array | null

const ZERO: Uint8Array = new Uint8Array(0)

/** Compares bounds (and ids, which are 32-byte bounds) as zero-padded byte strings. */
function compareBounds(a: Bound, b: Bound): number {
  if (a === null) return b === null ? 0 : 1
  if (b === null) return -1
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!
    if (d !== 0) return d
  }
  for (let i = n; i < a.length; i++) if (a[i] !== 0) return 1
  for (let i = n; i < b.length; i++) if (b[i] !== 0) return -1
  return 0
}

/** The shortest prefix of `curr` that is above `prev` (prev < curr): a bound separating them. */
function minimalBound(prev: Uint8Array, curr: Uint8Array): Uint8Array {
  let shared = 0
  while (shared < ID_BYTES - 1 && prev[shared] === curr[shared]) shared++
  return curr.subarray(0, shared + 1)
}

function varintSize(v: number): number {
  let n = 1
  while (v >= 128) {
    v = Math.floor(v / 128)
    n++
  }
  return n
}

function boundSize(b: Bound): number {
  return b === null ? 2 : 2 + b.length
}

// --- Reading ----------------------------------------------------------------------------------------------

interface Range {
  /** Upper bound (exclusive); the lower bound is the previous range's. */
  bound: Bound
  mode: number
  /** Fingerprint mode: the 16-byte fingerprint. IdList mode: the ids back to back. */
  payload: Uint8Array
}

class Reader {
  pos = 0
  constructor(readonly bytes: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.bytes.length
  }

  varint(what: string): number {
    let v = 0
    for (let i = 0; ; i++) {
      if (this.pos >= this.bytes.length) throw malformed(`truncated varint (${what})`)
      const b = this.bytes[this.pos++]!
      if (i === 0 && b === 0x80) throw malformed(`non-minimal varint (${what})`)
      v = v * 128 + (b & 0x7f)
      if (v > 0xffffffff) throw malformed(`varint too large (${what})`)
      if (b < 0x80) return v
    }
  }

  take(n: number, what: string): Uint8Array {
    if (n > this.bytes.length - this.pos) throw malformed(`truncated ${what}`)
    const out = this.bytes.subarray(this.pos, this.pos + n)
    this.pos += n
    return out
  }
}

/** Parses and checks a whole message before anything acts on it. */
function parseMessage(message: Uint8Array, frameSizeLimit: number): Range[] {
  if (!(message instanceof Uint8Array)) throw malformed('message is not bytes')
  if (message.length > frameSizeLimit) {
    throw new SyncError('sync-oversize', `message of ${message.length} bytes exceeds ${frameSizeLimit}`)
  }
  if (message.length === 0) throw malformed('empty message')
  const version = message[0]!
  if (version !== PROTOCOL_VERSION) {
    if (version >= 0x60 && version <= 0x6f) {
      throw new SyncError('sync-version', `unsupported Negentropy protocol version ${version - 0x60}`)
    }
    throw malformed(`not a reconciliation message (first byte 0x${version.toString(16)})`)
  }
  const r = new Reader(message)
  r.pos = 1
  const ranges: Range[] = []
  let lower: Bound = ZERO
  while (!r.done) {
    if (lower === null) throw malformed('trailing bytes after the range ending at infinity')
    const timestamp = r.varint('bound timestamp')
    const length = r.varint('bound length')
    let bound: Bound
    if (timestamp === 0) {
      if (length !== 0) throw malformed('infinity bound with an id prefix')
      bound = null
    } else if (timestamp === 1) {
      if (length > ID_BYTES) throw malformed(`bound prefix of ${length} bytes`)
      bound = r.take(length, 'bound prefix')
    } else {
      throw malformed('bound with a timestamp (ids only are reconciled)')
    }
    if (compareBounds(bound, lower) <= 0) throw malformed('bounds out of order')
    const mode = r.varint('mode')
    let payload: Uint8Array
    if (mode === MODE_SKIP) {
      payload = ZERO
    } else if (mode === MODE_FINGERPRINT) {
      payload = r.take(FINGERPRINT_BYTES, 'fingerprint')
    } else if (mode === MODE_ID_LIST) {
      const count = r.varint('id count')
      if (count > (r.bytes.length - r.pos) / ID_BYTES) throw malformed('id list shorter than its count')
      payload = r.take(count * ID_BYTES, 'id list')
      for (let i = 0; i < count; i++) {
        const id = payload.subarray(i * ID_BYTES, (i + 1) * ID_BYTES)
        const prev = i === 0 ? null : payload.subarray((i - 1) * ID_BYTES, i * ID_BYTES)
        if (prev !== null && compareBounds(prev, id) >= 0) throw malformed('id list not strictly ascending')
        if (compareBounds(id, lower) < 0 || compareBounds(id, bound) >= 0) {
          throw malformed('id outside its range')
        }
      }
    } else {
      throw malformed(`unknown mode ${mode}`)
    }
    ranges.push({ bound, mode, payload })
    lower = bound
  }
  if (lower !== null && ranges.length > 0) throw malformed('ranges do not cover the id space')
  return ranges
}

// --- Writing ----------------------------------------------------------------------------------------------

class Writer {
  buf = new Uint8Array(1024)
  size = 0

  private ensure(n: number): void {
    if (this.size + n <= this.buf.length) return
    let cap = this.buf.length * 2
    while (cap < this.size + n) cap *= 2
    const next = new Uint8Array(cap)
    next.set(this.buf.subarray(0, this.size))
    this.buf = next
  }

  byte(b: number): void {
    this.ensure(1)
    this.buf[this.size++] = b
  }

  varint(v: number): void {
    const n = varintSize(v)
    this.ensure(n)
    for (let i = n - 1; i >= 0; i--) {
      this.buf[this.size + i] = (v % 128) | (i === n - 1 ? 0 : 0x80)
      v = Math.floor(v / 128)
    }
    this.size += n
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length)
    this.buf.set(b, this.size)
    this.size += b.length
  }

  bound(b: Bound): void {
    if (b === null) {
      this.byte(0)
      this.byte(0)
    } else {
      this.byte(1)
      this.varint(b.length)
      this.bytes(b)
    }
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.size)
  }
}

/**
 * One outgoing message under construction. Skip ranges are held back and
 * coalesced; every other range is added only if it fits the budget. When one
 * does not, the reply *stops*: `stopIndex` is our index at the last bound
 * written, where the unprocessed part begins, and the session finishes the
 * message in tail mode (`deferred`, `fold`).
 */
class Reply {
  readonly out = new Writer()
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
      this.flush()
      this.out.bound(bound)
      this.out.varint(MODE_ID_LIST)
      this.out.varint(count)
      this.writeIds(from, to)
      return true
    }
    const room = this.budget - this.used() - MAX_BOUND_BYTES - 1 - varintSize(count)
    const fit = Math.min(Math.floor(room / ID_BYTES), count - 1)
    if (fit < 1) {
      this.stop(from)
      return false
    }
    const cut = minimalBound(this.ids.at(from + fit - 1), this.ids.at(from + fit))
    this.flush()
    this.out.bound(cut)
    this.out.varint(MODE_ID_LIST)
    this.out.varint(fit)
    this.writeIds(from, from + fit)
    this.stop(from + fit)
    return false
  }

  private writeIds(from: number, to: number): void {
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

// --- The session ------------------------------------------------------------------------------------------

class Session implements Reconciler {
  role: 'initiator' | 'responder' | undefined
  private finished = false
  /** Ids the initiator reported, so none is reported twice (see `reconcile`). */
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

  /**
   * Ranges are answered in order until the reply is full. The rest of the message is then
   * walked in tail mode: what needs no answer is still settled or skipped, and each run of
   * ranges that needs one becomes a single Fingerprint range for the next round. If even those
   * stop fitting, everything from there to the end of the last range that needs an answer is
   * folded into one Fingerprint range (ranges after it are still settled or skipped). A region
   * the initiator settled inside such a fold comes round again; `reported` keeps its ids from
   * being reported twice.
   */
  reconcile(message: Uint8Array): ReconcileStep {
    if (this.role === 'initiator' && this.finished) throw malformed('message after reconciliation finished')
    const ranges = parseMessage(message, this.settings.frameSizeLimit)
    if (this.role === undefined) this.role = 'responder'
    const initiator = this.role === 'initiator'
    const ids = this.ids
    const n = ids.size
    const reply = new Reply(ids, this.settings.frameSizeLimit)
    const have: Uint8Array[] = []
    const need: Uint8Array[] = []
    // First pass: where each range falls in our ids, and whether it needs an answer at all.
    const spans: Array<{ range: Range; lower: number; upper: number; quiet: boolean }> = []
    let lastLoud = -1
    let lower = 0
    for (const range of ranges) {
      const upper = range.bound === null ? n : ids.lowerBound(range.bound, lower, n)
      const quiet =
        range.mode === MODE_SKIP ||
        (range.mode === MODE_FINGERPRINT && equalBytes(ids.fingerprint(lower, upper), range.payload)) ||
        (range.mode === MODE_ID_LIST && initiator)
      if (!quiet) lastLoud = spans.length
      spans.push({ range, lower, upper, quiet })
      lower = upper
    }
    /** In tail mode: our index where the open run of deferred ranges starts, or −1. */
    let deferredFrom = -1
    for (let k = 0; k < spans.length; k++) {
      const { range, lower, upper, quiet } = spans[k]!
      if (reply.stopped && !quiet) {
        if (deferredFrom < 0) deferredFrom = lower
        continue
      }
      if (deferredFrom >= 0) {
        const previous = spans[k - 1]!.range.bound
        if (!reply.deferred(previous, deferredFrom, lower)) {
          const last = spans[lastLoud]!
          reply.fold(last.range.bound, deferredFrom, last.upper)
          deferredFrom = -1
          k = lastLoud // all ranges after it are quiet
          continue
        }
        deferredFrom = -1
      }
      if (quiet) {
        if (range.mode === MODE_ID_LIST) settle(ids, lower, upper, range.payload, have, need)
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
    if (deferredFrom >= 0) reply.fold(null, deferredFrom, n)
    if (initiator) {
      const step = { have: this.firstReports(have), need: this.firstReports(need) }
      if (!reply.hasContent) {
        this.finished = true
        return { reply: null, ...step }
      }
      return { reply: reply.finish(), ...step }
    }
    return { reply: reply.finish(), have, need }
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
    const ids = this.ids
    const t = theirs.length / ID_BYTES
    const theirId = (j: number) => theirs.subarray(j * ID_BYTES, (j + 1) * ID_BYTES)
    // The union of both lists in order; for each element, whether both hold it.
    const union: Uint8Array[] = []
    const shared: boolean[] = []
    const ourIndex: number[] = [] // our index at each element (ours, or the next of ours after it)
    let i = lower
    let j = 0
    let differs = false
    while (i < upper || j < t) {
      const c = i === upper ? 1 : j === t ? -1 : compareBounds(ids.at(i), theirId(j))
      ourIndex.push(i)
      if (c === 0) {
        union.push(ids.at(i++))
        j++
        shared.push(true)
      } else {
        union.push(c < 0 ? ids.at(i++) : theirId(j++))
        shared.push(false)
        differs = true
      }
    }
    if (!differs) {
      reply.skip(bound)
      return true
    }
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

/** The initiator settles a range the responder listed: what we alone hold, what they alone hold. */
function settle(
  ids: SortedIds,
  lower: number,
  upper: number,
  theirs: Uint8Array,
  have: Uint8Array[],
  need: Uint8Array[],
): void {
  const t = theirs.length / ID_BYTES
  let i = lower
  let j = 0
  while (i < upper || j < t) {
    const theirId = j < t ? theirs.subarray(j * ID_BYTES, (j + 1) * ID_BYTES) : null
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
