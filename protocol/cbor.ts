/**
 * Strict DAG-CBOR (SPEC.md §3). `decodeStrict` accepts only bytes that
 * `encode` would produce for the decoded value: definite lengths, shortest
 * integer and length heads, text-string map keys in DAG-CBOR order (length
 * first, then bytes) without duplicates, no floats, no `undefined` or other
 * simple values besides false/true/null, no tag but 42 (a CID), bounded size,
 * depth and collection sizes, and no trailing bytes.
 *
 * The structural scan runs before @ipld/dag-cbor sees the bytes so that each
 * fault gets its own stable code; a final re-encode comparison is the
 * backstop that guarantees "accepted ⇒ canonical".
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { compareBytes, equalBytes, utf8Strict } from './bytes.js'
import type { InvalidCode } from './codes.js'
import { LIMITS } from './limits.js'
import { ok, type Rejection, type Result, reject } from './result.js'

export const DAG_CBOR_CODE = 0x71

export function encode(value: unknown): Uint8Array {
  return dagCbor.encode(value)
}

export interface ScanLimits {
  maxBytes: number
  maxDepth: number
  maxStringBytes: number
  maxBytesLength: number
  maxCollectionItems: number
}

export const RECORD_SCAN_LIMITS: ScanLimits = {
  maxBytes: LIMITS.maxRecordBytes,
  maxDepth: LIMITS.maxDepth,
  maxStringBytes: LIMITS.maxStringBytes,
  maxBytesLength: LIMITS.maxBytesLength,
  maxCollectionItems: LIMITS.maxCollectionItems,
}

/** The same, with room for a genesis listing up to `maxGenesisMembers` members. */
export const GENESIS_SCAN_LIMITS: ScanLimits = { ...RECORD_SCAN_LIMITS, maxBytes: LIMITS.maxGenesisBytes }

class ScanFault {
  constructor(
    readonly code: InvalidCode,
    readonly message: string,
    readonly offset: number,
  ) {}
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

class Scanner {
  pos = 0
  constructor(
    readonly bytes: Uint8Array,
    readonly limits: ScanLimits,
  ) {}

  fail(code: InvalidCode, message: string): never {
    throw new ScanFault(code, message, this.pos)
  }

  need(n: number): void {
    if (this.pos + n > this.bytes.length)
      this.fail('cbor-truncated', 'the bytes end in the middle of a value')
  }

  /** Reads a head; returns [major, argument] with the shortest-form check done. */
  head(): [number, bigint, number] {
    this.need(1)
    const start = this.pos
    const b = this.bytes[this.pos++]!
    const major = b >> 5
    const ai = b & 31
    if (ai < 24) return [major, BigInt(ai), ai]
    if (ai === 31) {
      if (major === 7) this.fail('cbor-indefinite-length', 'a "break" byte outside an indefinite-length item')
      this.fail('cbor-indefinite-length', 'indefinite-length items are not allowed')
    }
    if (ai > 27) this.fail('cbor-non-canonical', `reserved additional information ${ai}`)
    if (major === 7) return [major, 0n, ai] // floats and simple(24) are judged by the caller
    const size = 1 << (ai - 24)
    this.need(size)
    let v = 0n
    for (let i = 0; i < size; i++) v = (v << 8n) | BigInt(this.bytes[this.pos++]!)
    const min = ai === 24 ? 24n : ai === 25 ? 0x100n : ai === 26 ? 0x10000n : 0x100000000n
    if (v < min) {
      this.pos = start
      this.fail('cbor-non-minimal', 'an integer or length is not in its shortest form')
    }
    return [major, v, ai]
  }

  length(v: bigint, max: number, what: string): number {
    if (v > BigInt(max))
      this.fail(
        what === 'item' ? 'cbor-collection-too-large' : 'cbor-too-large',
        `${what} longer than ${max}`,
      )
    return Number(v)
  }

  item(depth: number): void {
    if (depth > this.limits.maxDepth)
      this.fail('cbor-too-deep', `nesting deeper than ${this.limits.maxDepth}`)
    const [major, arg, ai] = this.head()
    switch (major) {
      case 0:
        if (arg > MAX_SAFE) this.fail('cbor-integer-range', 'an integer beyond ±(2^53 − 1)')
        return
      case 1:
        if (arg >= MAX_SAFE) this.fail('cbor-integer-range', 'an integer beyond ±(2^53 − 1)')
        return
      case 2: {
        const n = this.length(arg, this.limits.maxBytesLength, 'byte string')
        this.need(n)
        this.pos += n
        return
      }
      case 3: {
        const n = this.length(arg, this.limits.maxStringBytes, 'text string')
        this.need(n)
        this.text(n)
        return
      }
      case 4: {
        const n = this.length(arg, this.limits.maxCollectionItems, 'item')
        for (let i = 0; i < n; i++) this.item(depth + 1)
        return
      }
      case 5: {
        const n = this.length(arg, this.limits.maxCollectionItems, 'item')
        let prev: Uint8Array | undefined
        for (let i = 0; i < n; i++) {
          const key = this.key()
          if (prev !== undefined) {
            const order = prev.length - key.length || compareBytes(prev, key)
            if (order === 0) this.fail('cbor-duplicate-key', `duplicate map key "${utf8Strict.decode(key)}"`)
            if (order > 0)
              this.fail('cbor-key-order', 'map keys are not in DAG-CBOR order (length first, then bytes)')
          }
          prev = key
          this.item(depth + 1)
        }
        return
      }
      case 6: {
        if (arg !== 42n) this.fail('cbor-tag', `tag ${arg} is not allowed (only 42, a CID)`)
        const [m, len] = this.head()
        if (m !== 2) this.fail('cbor-invalid-cid', 'tag 42 must wrap a byte string')
        if (len > BigInt(LIMITS.maxCidBytes))
          this.fail('cbor-invalid-cid', `a CID is at most ${LIMITS.maxCidBytes} bytes`)
        const n = Number(len)
        this.need(n)
        const body = this.bytes.subarray(this.pos, this.pos + n)
        if (body[0] !== 0) this.fail('cbor-invalid-cid', 'a CID must start with the 0x00 multibase prefix')
        try {
          const cid = CID.decode(body.subarray(1))
          if (cid.version !== 1) this.fail('cbor-invalid-cid', 'only CIDv1 is allowed')
        } catch (e) {
          if (e instanceof ScanFault) throw e
          this.fail('cbor-invalid-cid', 'tag 42 holds bytes that are not a CID')
        }
        this.pos += n
        return
      }
      default: {
        // major 7
        if (ai === 20 || ai === 21 || ai === 22) return
        if (ai === 23) this.fail('cbor-undefined', '`undefined` is not allowed')
        if (ai === 25 || ai === 26 || ai === 27)
          this.fail('cbor-float', 'floating-point numbers are not allowed')
        this.fail('cbor-simple-value', 'simple values other than false, true and null are not allowed')
      }
    }
  }

  text(n: number): string {
    try {
      const s = utf8Strict.decode(this.bytes.subarray(this.pos, this.pos + n))
      this.pos += n
      return s
    } catch {
      this.fail('cbor-invalid-utf8', 'a text string is not valid UTF-8')
    }
  }

  key(): Uint8Array {
    const [major, arg] = this.head()
    if (major !== 3) this.fail('cbor-map-key', 'map keys must be text strings')
    const n = this.length(arg, this.limits.maxStringBytes, 'text string')
    this.need(n)
    const start = this.pos
    this.text(n)
    return this.bytes.subarray(start, start + n)
  }
}

/** Checks the structure of `bytes` without decoding values. */
export function scan(bytes: Uint8Array, limits: ScanLimits = RECORD_SCAN_LIMITS): Rejection | undefined {
  if (bytes.length === 0) return reject('cbor-empty', 'no bytes')
  if (bytes.length > limits.maxBytes) return reject('cbor-too-large', `more than ${limits.maxBytes} bytes`)
  const s = new Scanner(bytes, limits)
  try {
    s.item(0)
    if (s.pos !== bytes.length)
      return reject('cbor-trailing-bytes', `${bytes.length - s.pos} bytes after the value`)
    return undefined
  } catch (e) {
    if (e instanceof ScanFault) return reject(e.code, `${e.message} (byte ${e.offset})`)
    return reject('cbor-non-canonical', 'the bytes could not be scanned')
  }
}

/** Decodes canonical DAG-CBOR or says precisely why not. Never throws. */
export function decodeStrict(bytes: Uint8Array, limits: ScanLimits = RECORD_SCAN_LIMITS): Result<unknown> {
  const fault = scan(bytes, limits)
  if (fault) return fault
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (e) {
    return reject('cbor-non-canonical', `not DAG-CBOR: ${(e as Error).message}`)
  }
  let again: Uint8Array
  try {
    again = dagCbor.encode(value)
  } catch {
    return reject('cbor-non-canonical', 'the decoded value does not encode again')
  }
  if (!equalBytes(again, bytes))
    return reject('cbor-non-canonical', 'the bytes are not the canonical encoding of their value')
  return ok(value)
}
