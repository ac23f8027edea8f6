/**
 * The set of record ids a node holds, kept in the shape set reconciliation
 * needs (reconcile.ts, protocol/SPEC.md §14.3): sorted, with the fingerprint
 * of any index range in O(1). An id is the 32-byte sha2-256 digest inside a
 * record's CID.
 *
 * Why this shape:
 * - `add` runs once per ingested record, so it must stay cheap: it only
 *   checks membership (a binary search plus a hash-set lookup) and parks the
 *   id in a pending set. Sorting happens lazily, once, when a sorted view is
 *   next asked for (`snapshot`, `at`, `fingerprint`, iteration): 100,000 adds
 *   cost one sort, not 100,000 insertions into a sorted array.
 * - A fingerprint is Negentropy's (protocol v1): the ids of the range read as
 *   256-bit little-endian integers, summed mod 2^256, then the first 16 bytes
 *   of sha256(sum ‖ varint(count)). Sums are kept as prefix sums (8 uint32
 *   lanes per entry), so the sum of `[lo, hi)` is `prefix[hi] − prefix[lo]`.
 * - `snapshot()` returns an immutable view. A rebuild allocates fresh arrays
 *   and never touches an older snapshot, so a reconciliation session can keep
 *   its snapshot while new records keep arriving (fingerprints must not move
 *   under a session's feet).
 */
import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { DAG_CBOR_CODE } from '../../protocol/cbor.js'
import { isRecordCid, SHA2_256_CODE } from '../../protocol/cid.js'

export const ID_BYTES = 32
export const FINGERPRINT_BYTES = 16
const LANES = ID_BYTES / 4
const TWO_32 = 2 ** 32

/** An immutable, sorted view of a set of ids. */
export interface SortedIds extends Iterable<Uint8Array> {
  readonly size: number
  /** The id at `index` in ascending byte order (a view: do not modify it). */
  at(index: number): Uint8Array
  /** The index of `id`, or −1. */
  indexOf(id: Uint8Array): number
  /**
   * The first index in `[from, to)` whose id is ≥ `bound`, or `to`. A bound
   * is an id prefix of 0..32 bytes, read as if padded with zero bytes.
   */
  lowerBound(bound: Uint8Array, from?: number, to?: number): number
  /** Negentropy's 16-byte fingerprint of the ids at indexes `[from, to)`. */
  fingerprint(from: number, to: number): Uint8Array
}

/** A growing set of ids; `add` is cheap, sorted views are rebuilt lazily. */
export interface IdSet extends SortedIds {
  /** Adds a 32-byte id; false if it was already there. The id is copied. */
  add(id: Uint8Array): boolean
  has(id: Uint8Array): boolean
  /** The current contents as an immutable view, unaffected by later adds. */
  snapshot(): SortedIds
}

export function createIdSet(ids: Iterable<Uint8Array> = []): IdSet {
  const set = new GrowingIdSet()
  for (const id of ids) set.add(id)
  return set
}

/** Compares 32-byte ids stored at offsets of two buffers. */
function compareAt(a: Uint8Array, ai: number, b: Uint8Array, bi: number): number {
  for (let k = 0; k < ID_BYTES; k++) {
    const d = a[ai + k]! - b[bi + k]!
    if (d !== 0) return d
  }
  return 0
}

/** Compares the id at `offset` of `ids` with a bound (a 0..32-byte prefix padded with zeros). */
function compareIdToBound(ids: Uint8Array, offset: number, bound: Uint8Array): number {
  const n = bound.length
  for (let k = 0; k < n; k++) {
    const d = ids[offset + k]! - bound[k]!
    if (d !== 0) return d
  }
  return 0 // the id's remaining bytes are ≥ the bound's implicit zeros
}

/** Negentropy's varint: base 128, most significant digit first. */
export function varintBytes(value: number): number[] {
  const digits = [value % 128]
  let v = Math.floor(value / 128)
  while (v > 0) {
    digits.unshift((v % 128) | 0x80)
    v = Math.floor(v / 128)
  }
  return digits
}

class SortedIdsView implements SortedIds {
  readonly size: number

  /** `bytes` holds `size` sorted, distinct ids back to back; `sums` their prefix sums (8 lanes each). */
  constructor(
    readonly bytes: Uint8Array,
    readonly sums: Uint32Array,
  ) {
    this.size = bytes.length / ID_BYTES
  }

  static build(bytes: Uint8Array): SortedIdsView {
    const n = bytes.length / ID_BYTES
    const sums = new Uint32Array((n + 1) * LANES)
    for (let i = 0; i < n; i++) {
      const o = i * ID_BYTES
      const prev = i * LANES
      const next = prev + LANES
      let carry = 0
      for (let l = 0; l < LANES; l++) {
        const b = o + l * 4
        const lane = bytes[b]! | (bytes[b + 1]! << 8) | (bytes[b + 2]! << 16)
        const t = sums[prev + l]! + lane + bytes[b + 3]! * 0x1000000 + carry
        if (t >= TWO_32) {
          sums[next + l] = t - TWO_32
          carry = 1
        } else {
          sums[next + l] = t
          carry = 0
        }
      }
    }
    return new SortedIdsView(bytes, sums)
  }

  at(index: number): Uint8Array {
    if (!Number.isInteger(index) || index < 0 || index >= this.size) {
      throw new RangeError(`id index ${index} out of range 0..${this.size}`)
    }
    return this.bytes.subarray(index * ID_BYTES, (index + 1) * ID_BYTES)
  }

  indexOf(id: Uint8Array): number {
    if (id.length !== ID_BYTES) return -1
    let lo = 0
    let hi = this.size
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const c = compareAt(this.bytes, mid * ID_BYTES, id, 0)
      if (c === 0) return mid
      if (c < 0) lo = mid + 1
      else hi = mid
    }
    return -1
  }

  lowerBound(bound: Uint8Array, from = 0, to = this.size): number {
    this.checkRange(from, to)
    let lo = from
    let hi = to
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (compareIdToBound(this.bytes, mid * ID_BYTES, bound) < 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  fingerprint(from: number, to: number): Uint8Array {
    this.checkRange(from, to)
    const s = this.sums
    const a = from * LANES
    const b = to * LANES
    const count = varintBytes(to - from)
    const input = new Uint8Array(ID_BYTES + count.length)
    let borrow = 0
    for (let l = 0; l < LANES; l++) {
      let d = s[b + l]! - s[a + l]! - borrow
      if (d < 0) {
        d += TWO_32
        borrow = 1
      } else {
        borrow = 0
      }
      input[l * 4] = d & 0xff
      input[l * 4 + 1] = (d >>> 8) & 0xff
      input[l * 4 + 2] = (d >>> 16) & 0xff
      input[l * 4 + 3] = (d >>> 24) & 0xff
    }
    input.set(count, ID_BYTES)
    const digest = createHash('sha256').update(input).digest()
    return new Uint8Array(digest.subarray(0, FINGERPRINT_BYTES))
  }

  *[Symbol.iterator](): Iterator<Uint8Array> {
    for (let i = 0; i < this.size; i++) yield this.bytes.subarray(i * ID_BYTES, (i + 1) * ID_BYTES)
  }

  private checkRange(from: number, to: number): void {
    if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || from > to || to > this.size) {
      throw new RangeError(`index range [${from}, ${to}) out of 0..${this.size}`)
    }
  }
}

const EMPTY = SortedIdsView.build(new Uint8Array(0))

/** One char per byte: JavaScript's string order is then the ids' byte order. */
function keyOf(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, ID_BYTES).toString('latin1')
}

/** Merges two buffers of sorted, mutually distinct ids. */
function mergeSorted(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b
  if (b.length === 0) return a
  const out = new Uint8Array(a.length + b.length)
  let i = 0
  let j = 0
  let o = 0
  while (i < a.length && j < b.length) {
    if (compareAt(a, i, b, j) < 0) {
      out.set(a.subarray(i, i + ID_BYTES), o)
      i += ID_BYTES
    } else {
      out.set(b.subarray(j, j + ID_BYTES), o)
      j += ID_BYTES
    }
    o += ID_BYTES
  }
  if (i < a.length) out.set(a.subarray(i), o)
  else out.set(b.subarray(j), o)
  return out
}

class GrowingIdSet implements IdSet {
  #sorted: SortedIdsView = EMPTY
  /** Ids added since the last rebuild, as latin1 keys. */
  #pending = new Set<string>()

  get size(): number {
    return this.#sorted.size + this.#pending.size
  }

  add(id: Uint8Array): boolean {
    if (!(id instanceof Uint8Array) || id.length !== ID_BYTES) {
      throw new TypeError(`id must be ${ID_BYTES} bytes`)
    }
    if (this.#sorted.indexOf(id) >= 0) return false
    const key = keyOf(id)
    if (this.#pending.has(key)) return false
    this.#pending.add(key)
    return true
  }

  has(id: Uint8Array): boolean {
    if (!(id instanceof Uint8Array) || id.length !== ID_BYTES) return false
    return this.#sorted.indexOf(id) >= 0 || (this.#pending.size > 0 && this.#pending.has(keyOf(id)))
  }

  snapshot(): SortedIds {
    if (this.#pending.size > 0) {
      const keys = [...this.#pending].sort()
      this.#pending = new Set()
      // Buffer.from may hand out a slice of a shared pool: copy into an array of our own.
      const fresh = new Uint8Array(Buffer.from(keys.join(''), 'latin1'))
      this.#sorted = SortedIdsView.build(mergeSorted(this.#sorted.bytes, fresh))
    }
    return this.#sorted
  }

  at(index: number): Uint8Array {
    return this.snapshot().at(index)
  }

  indexOf(id: Uint8Array): number {
    return this.snapshot().indexOf(id)
  }

  lowerBound(bound: Uint8Array, from?: number, to?: number): number {
    return this.snapshot().lowerBound(bound, from, to)
  }

  fingerprint(from: number, to: number): Uint8Array {
    return this.snapshot().fingerprint(from, to)
  }

  [Symbol.iterator](): Iterator<Uint8Array> {
    return this.snapshot()[Symbol.iterator]()
  }
}

/** The id of a record or list block: the sha2-256 digest inside its CID (CIDv1, dag-cbor). */
export function idOfCid(cid: CID): Uint8Array {
  if (!isRecordCid(cid)) throw new TypeError('not a record or list CID')
  return cid.multihash.digest
}

/** The CID (CIDv1, dag-cbor, sha2-256) whose digest is `id`. */
export function cidOfId(id: Uint8Array): CID {
  if (!(id instanceof Uint8Array) || id.length !== ID_BYTES)
    throw new TypeError(`id must be ${ID_BYTES} bytes`)
  return CID.createV1(DAG_CBOR_CODE, Digest.create(SHA2_256_CODE, id.slice()))
}
