/**
 * The bytes of a reconciliation message (protocol/SPEC.md §14.3): Negentropy
 * protocol v1 with every timestamp 0. `parseMessage` reads and checks a whole
 * untrusted message before anything acts on it and throws only `SyncError`;
 * `MessageWriter` writes one. What goes into a message is reconcile.ts's
 * business and its size budget reconcile-reply.ts's.
 */
import { malformed, SyncError } from './errors.js'
import { FINGERPRINT_BYTES, ID_BYTES } from './id-set.js'

/** Negentropy protocol v1; 0x60..0x6f are its other versions. */
export const PROTOCOL_VERSION = 0x61

export const MODE_SKIP = 0
export const MODE_FINGERPRINT = 1
export const MODE_ID_LIST = 2

/** An id prefix of 0..32 bytes (padded with zeros when compared), or null for infinity. */
export type Bound = Uint8Array | null

/** The empty prefix: the lower bound of the first range, and the payload of a Skip. */
export const EMPTY: Uint8Array = new Uint8Array(0)

/** The largest encoded finite bound: timestamp byte, length byte, 32 prefix bytes. */
export const MAX_BOUND_BYTES = 2 + ID_BYTES

/** One range of a message. */
export interface Range {
  /** Upper bound (exclusive); the lower bound is the previous range's. */
  bound: Bound
  mode: number
  /** Fingerprint mode: the 16-byte fingerprint. IdList mode: the ids back to back. */
  payload: Uint8Array
}

/** Compares bounds (and ids, which are 32-byte bounds) as zero-padded byte strings. */
export function compareBounds(a: Bound, b: Bound): number {
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
export function minimalBound(prev: Uint8Array, curr: Uint8Array): Uint8Array {
  let shared = 0
  while (shared < ID_BYTES - 1 && prev[shared] === curr[shared]) shared++
  return curr.subarray(0, shared + 1)
}

/** Bytes of Negentropy's varint of `v` (base 128, most significant digit first). */
export function varintSize(v: number): number {
  let n = 1
  while (v >= 128) {
    v = Math.floor(v / 128)
    n++
  }
  return n
}

export function boundSize(b: Bound): number {
  return b === null ? 2 : 2 + b.length
}

// --- Reading ----------------------------------------------------------------------------------------------

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
export function parseMessage(message: Uint8Array, frameSizeLimit: number): Range[] {
  checkHeader(message, frameSizeLimit)
  const reader = new Reader(message)
  reader.pos = 1
  const ranges: Range[] = []
  let lower: Bound = EMPTY
  while (!reader.done) {
    if (lower === null) throw malformed('trailing bytes after the range ending at infinity')
    const bound = readBound(reader)
    if (compareBounds(bound, lower) <= 0) throw malformed('bounds out of order')
    ranges.push({ bound, ...readPayload(reader, lower, bound) })
    lower = bound
  }
  if (lower !== null && ranges.length > 0) throw malformed('ranges do not cover the id space')
  return ranges
}

/** The message's size and its version byte. */
function checkHeader(message: Uint8Array, frameSizeLimit: number): void {
  if (!(message instanceof Uint8Array)) throw malformed('message is not bytes')
  if (message.length > frameSizeLimit) {
    throw new SyncError('sync-oversize', `message of ${message.length} bytes exceeds ${frameSizeLimit}`)
  }
  if (message.length === 0) throw malformed('empty message')
  const version = message[0]!
  if (version === PROTOCOL_VERSION) return
  if (version >= 0x60 && version <= 0x6f) {
    throw new SyncError('sync-version', `unsupported Negentropy protocol version ${version - 0x60}`)
  }
  throw malformed(`not a reconciliation message (first byte 0x${version.toString(16)})`)
}

function readBound(reader: Reader): Bound {
  const timestamp = reader.varint('bound timestamp')
  const length = reader.varint('bound length')
  if (timestamp === 0) {
    if (length !== 0) throw malformed('infinity bound with an id prefix')
    return null
  }
  if (timestamp !== 1) throw malformed('bound with a timestamp (ids only are reconciled)')
  if (length > ID_BYTES) throw malformed(`bound prefix of ${length} bytes`)
  return reader.take(length, 'bound prefix')
}

/** A range's mode and payload; an IdList's ids must strictly increase within `[lower, bound)`. */
function readPayload(reader: Reader, lower: Bound, bound: Bound): Omit<Range, 'bound'> {
  const mode = reader.varint('mode')
  if (mode === MODE_SKIP) return { mode, payload: EMPTY }
  if (mode === MODE_FINGERPRINT) return { mode, payload: reader.take(FINGERPRINT_BYTES, 'fingerprint') }
  if (mode !== MODE_ID_LIST) throw malformed(`unknown mode ${mode}`)
  const count = reader.varint('id count')
  if (count > (reader.bytes.length - reader.pos) / ID_BYTES) throw malformed('id list shorter than its count')
  const payload = reader.take(count * ID_BYTES, 'id list')
  for (let i = 0; i < count; i++) {
    const id = payload.subarray(i * ID_BYTES, (i + 1) * ID_BYTES)
    const prev = i === 0 ? null : payload.subarray((i - 1) * ID_BYTES, i * ID_BYTES)
    if (prev !== null && compareBounds(prev, id) >= 0) throw malformed('id list not strictly ascending')
    if (compareBounds(id, lower) < 0 || compareBounds(id, bound) >= 0) throw malformed('id outside its range')
  }
  return { mode, payload }
}

// --- Writing ----------------------------------------------------------------------------------------------

/** A growing byte buffer that writes the parts of a message. */
export class MessageWriter {
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
