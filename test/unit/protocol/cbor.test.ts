/**
 * Strict DAG-CBOR (protocol/cbor.ts): one hand-built input per rejection
 * code, boundaries where a limit sits, and a round trip of a valid value.
 * Byte strings are written in hex so each case reads like the CBOR spec.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { describe, expect, it } from 'vitest'
import { decodeStrict, encode, RECORD_SCAN_LIMITS, type ScanLimits, scan } from '../../../protocol/cbor.js'
import { cidOfBlock, rawCidOfDigest } from '../../../protocol/cid.js'
import { CODES_INVALID } from '../../../protocol/codes.js'
import { LIMITS } from '../../../protocol/limits.js'

/** Bytes from hex, spaces allowed. */
function b(hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex.replace(/\s+/g, ''), 'hex'))
}

/** The rejection code of `decodeStrict` (and checks `scan` agrees when the scan is what rejects). */
function codeOf(bytes: Uint8Array, limits: ScanLimits = RECORD_SCAN_LIMITS): string {
  const r = decodeStrict(bytes, limits)
  if (r.ok) return 'ok'
  expect(CODES_INVALID).toContain(r.code)
  const s = scan(bytes, limits)
  if (s) expect(s.code).toBe(r.code)
  return r.code
}

const CID_A = cidOfBlock(encode('a'))
/** `d8 2a 58 25 00 <36 CID bytes>`: tag 42 over the 0x00-prefixed binary CID. */
const cidItem = (cid: CID, prefix = '00') => {
  const body = Buffer.concat([b(prefix), cid.bytes])
  return Buffer.concat([b('d82a58'), Buffer.from([body.length]), body]).toString('hex')
}

describe('decodeStrict accepts canonical DAG-CBOR', () => {
  it('round-trips a complex value with CIDs', () => {
    const value = {
      a: 0,
      b: -1,
      n: null,
      t: true,
      f: false,
      big: Number.MAX_SAFE_INTEGER,
      neg: -Number.MAX_SAFE_INTEGER,
      bytes: b('00ff10'),
      text: 'Grüße, 世界 🌍',
      list: [1, [2, [3, []]], {}, ''],
      link: CID_A,
      raw: rawCidOfDigest(sha256(new Uint8Array([1]))),
      nested: { zz: { y: [CID_A, { x: 'deep' }] }, aaa: 3 },
    }
    const bytes = encode(value)
    const r = decodeStrict(bytes)
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.value).toEqual(value)
    expect(Buffer.from(encode(r.value)).equals(Buffer.from(bytes))).toBe(true)
    const decoded = r.value as typeof value
    expect(CID.asCID(decoded.link)?.equals(CID_A)).toBe(true)
    expect(CID.asCID(decoded.nested.zz.y[0])?.equals(CID_A)).toBe(true)
    expect(scan(bytes)).toBeUndefined()
  })

  it('accepts the hand-built canonical forms used below', () => {
    expect(codeOf(b('00'))).toBe('ok')
    expect(codeOf(b('17'))).toBe('ok') // 23, the largest immediate
    expect(codeOf(b('1818'))).toBe('ok') // 24, the smallest one-byte argument
    expect(codeOf(b('190100'))).toBe('ok')
    expect(codeOf(b('1a00010000'))).toBe('ok')
    expect(codeOf(b('1b0000000100000000'))).toBe('ok')
    expect(codeOf(b('a2 6161 01 6162 02'))).toBe('ok') // {"a":1,"b":2}
    expect(codeOf(b('a2 6162 01 626161 02'))).toBe('ok') // {"b":1,"aa":2}: shorter key first
    expect(codeOf(b(cidItem(CID_A)))).toBe('ok')
    expect(codeOf(b('f4'))).toBe('ok')
    expect(codeOf(b('f5'))).toBe('ok')
    expect(codeOf(b('f6'))).toBe('ok')
  })
})

describe('decodeStrict rejections, one per code', () => {
  it('cbor-empty', () => {
    expect(codeOf(new Uint8Array(0))).toBe('cbor-empty')
  })

  it('cbor-truncated', () => {
    expect(codeOf(b('6261'))).toBe('cbor-truncated') // text of 2 bytes, 1 given
    expect(codeOf(b('8201'))).toBe('cbor-truncated') // array of 2, 1 given
    expect(codeOf(b('1901'))).toBe('cbor-truncated') // uint16 missing a byte
    expect(codeOf(b('a1 6161'))).toBe('cbor-truncated') // map value missing
    expect(codeOf(b('d82a'))).toBe('cbor-truncated') // tag 42 with nothing after it
    expect(codeOf(b('d82a 5825 00'))).toBe('cbor-truncated') // CID bytes cut short
  })

  it('cbor-trailing-bytes', () => {
    expect(codeOf(b('0102'))).toBe('cbor-trailing-bytes')
    expect(codeOf(b('a0 00'))).toBe('cbor-trailing-bytes')
  })

  it('cbor-too-large', () => {
    const small: ScanLimits = { ...RECORD_SCAN_LIMITS, maxBytes: 4 }
    expect(codeOf(b('4400000000'), small)).toBe('cbor-too-large') // 5 bytes > 4
    expect(codeOf(b('43000000'), small)).toBe('ok')
    expect(codeOf(new Uint8Array(LIMITS.maxRecordBytes + 1))).toBe('cbor-too-large')
    // A declared length beyond the byte-string or text limit, refused before reading it.
    expect(codeOf(b('590401'))).toBe('cbor-too-large') // bytes(1025) > maxBytesLength 1024
    expect(codeOf(b('794001'))).toBe('cbor-too-large') // text(16385) > maxStringBytes 16384
  })

  it('cbor-too-deep', () => {
    const nested = (n: number) => b('81'.repeat(n) + '00')
    expect(codeOf(nested(LIMITS.maxDepth))).toBe('ok')
    expect(codeOf(nested(LIMITS.maxDepth + 1))).toBe('cbor-too-deep')
    expect(codeOf(b('a1 6161'.repeat(LIMITS.maxDepth + 1) + '00'))).toBe('cbor-too-deep')
  })

  it('cbor-indefinite-length', () => {
    expect(codeOf(b('9f 01 ff'))).toBe('cbor-indefinite-length') // array
    expect(codeOf(b('bf 6161 01 ff'))).toBe('cbor-indefinite-length') // map
    expect(codeOf(b('5f 4100 ff'))).toBe('cbor-indefinite-length') // byte string
    expect(codeOf(b('7f 6161 ff'))).toBe('cbor-indefinite-length') // text string
    expect(codeOf(b('ff'))).toBe('cbor-indefinite-length') // a lone break
    expect(codeOf(b('81 ff'))).toBe('cbor-indefinite-length') // a break inside a definite array
  })

  it('cbor-non-minimal', () => {
    expect(codeOf(b('1805'))).toBe('cbor-non-minimal') // 5 in one extra byte
    expect(codeOf(b('190017'))).toBe('cbor-non-minimal')
    expect(codeOf(b('1a0000ffff'))).toBe('cbor-non-minimal')
    expect(codeOf(b('1b00000000ffffffff'))).toBe('cbor-non-minimal')
    expect(codeOf(b('3805'))).toBe('cbor-non-minimal') // -6
    expect(codeOf(b('7801 61'))).toBe('cbor-non-minimal') // text length 1 in a long head
    expect(codeOf(b('9800'))).toBe('cbor-non-minimal') // empty array, long head
    expect(codeOf(b('a1 7801 61 01'))).toBe('cbor-non-minimal') // a map key's length
  })

  it('cbor-float', () => {
    expect(codeOf(b('f9 3c00'))).toBe('cbor-float') // f16 1.0
    expect(codeOf(b('fa 3f800000'))).toBe('cbor-float') // f32 1.0
    expect(codeOf(b('fb 3ff0000000000000'))).toBe('cbor-float') // f64 1.0
    expect(codeOf(b('fb 0000000000000000'))).toBe('cbor-float') // f64 0.0
    expect(codeOf(b('81 f9 7e00'))).toBe('cbor-float') // f16 NaN inside an array
  })

  it('cbor-undefined', () => {
    expect(codeOf(b('f7'))).toBe('cbor-undefined')
    expect(codeOf(b('a1 6161 f7'))).toBe('cbor-undefined')
  })

  it('cbor-simple-value', () => {
    expect(codeOf(b('f0'))).toBe('cbor-simple-value') // simple(16)
    expect(codeOf(b('f820'))).toBe('cbor-simple-value') // simple(32)
    expect(codeOf(b('f8ff'))).toBe('cbor-simple-value') // simple(255)
  })

  it('cbor-tag', () => {
    expect(codeOf(b('c1 1a5f5e1000'))).toBe('cbor-tag') // tag 1 (epoch time)
    expect(codeOf(b('c0 6161'))).toBe('cbor-tag') // tag 0 (date text)
    expect(codeOf(b('d82b 4100'))).toBe('cbor-tag') // tag 43
    expect(codeOf(b('c2 4101'))).toBe('cbor-tag') // tag 2 (bignum)
  })

  it('cbor-invalid-cid', () => {
    expect(codeOf(b('d82a 6161'))).toBe('cbor-invalid-cid') // tag 42 over a text string
    expect(codeOf(b(cidItem(CID_A, '')))).toBe('cbor-invalid-cid') // bytes without the 0x00 prefix
    expect(codeOf(b(cidItem(CID_A, '01')))).toBe('cbor-invalid-cid') // another multibase prefix
    expect(codeOf(b('d82a 40'))).toBe('cbor-invalid-cid') // empty bytes
    expect(codeOf(b('d82a 4100'))).toBe('cbor-invalid-cid') // the prefix alone
    expect(codeOf(b('d82a 43 00ffff'))).toBe('cbor-invalid-cid') // not a CID
    // CIDv0: a bare sha2-256 multihash (0x12 0x20 + 32 bytes)
    const v0 = CID.createV0(Digest.create(0x12, sha256(new Uint8Array([1]))))
    expect(v0.version).toBe(0)
    expect(codeOf(b(cidItem(v0)))).toBe('cbor-invalid-cid')
    // A valid CID followed by junk inside the byte string
    expect(codeOf(b(`d82a 5826 00 ${Buffer.from(CID_A.bytes).toString('hex')} 00`))).toBe('cbor-invalid-cid')
  })

  it('cbor-map-key', () => {
    expect(codeOf(b('a1 01 02'))).toBe('cbor-map-key') // {1: 2}
    expect(codeOf(b('a1 4161 02'))).toBe('cbor-map-key') // a byte-string key
    expect(codeOf(b('a1 80 02'))).toBe('cbor-map-key') // an array key
  })

  it('cbor-duplicate-key', () => {
    expect(codeOf(b('a2 6161 01 6161 02'))).toBe('cbor-duplicate-key')
  })

  it('cbor-key-order (length first, then bytes)', () => {
    expect(codeOf(b('a2 6162 01 6161 02'))).toBe('cbor-key-order') // {"b":1,"a":2}
    expect(codeOf(b('a2 626161 01 6162 02'))).toBe('cbor-key-order') // {"aa":1,"b":2}
    // encode() produces the order the decoder demands
    expect(Buffer.from(encode({ aa: 1, b: 2 })).toString('hex')).toBe('a261620262616101')
  })

  it('cbor-invalid-utf8', () => {
    expect(codeOf(b('61 ff'))).toBe('cbor-invalid-utf8')
    expect(codeOf(b('62 c328'))).toBe('cbor-invalid-utf8') // bad continuation
    expect(codeOf(b('62 c080'))).toBe('cbor-invalid-utf8') // overlong NUL
    expect(codeOf(b('63 eda080'))).toBe('cbor-invalid-utf8') // a UTF-16 surrogate
    expect(codeOf(b('a1 61ff 01'))).toBe('cbor-invalid-utf8') // in a map key
  })

  it('cbor-integer-range', () => {
    expect(codeOf(b('1b 0020000000000000'))).toBe('cbor-integer-range') // 2^53 as uint64
    expect(codeOf(b('3b 001fffffffffffff'))).toBe('cbor-integer-range') // -(2^53)
    expect(codeOf(b('1b ffffffffffffffff'))).toBe('cbor-integer-range')
    expect(codeOf(b('3b ffffffffffffffff'))).toBe('cbor-integer-range')
    // The boundaries themselves are fine.
    const max = decodeStrict(b('1b 001fffffffffffff'))
    const min = decodeStrict(b('3b 001ffffffffffffe'))
    expect(max.ok && max.value).toBe(Number.MAX_SAFE_INTEGER)
    expect(min.ok && min.value).toBe(-Number.MAX_SAFE_INTEGER)
  })

  it('cbor-collection-too-large', () => {
    const two: ScanLimits = { ...RECORD_SCAN_LIMITS, maxCollectionItems: 2 }
    expect(codeOf(b('82 01 02'), two)).toBe('ok')
    expect(codeOf(b('83 01 02 03'), two)).toBe('cbor-collection-too-large')
    expect(codeOf(b('a3 6161 01 6162 02 6163 03'), two)).toBe('cbor-collection-too-large')
    // With the record limits, refused from the head alone, before reading the items.
    expect(codeOf(b('9a 00010000'))).toBe('cbor-collection-too-large')
  })

  it('cbor-non-canonical (reserved additional information)', () => {
    expect(codeOf(b('1c'))).toBe('cbor-non-canonical')
    expect(codeOf(b('5d'))).toBe('cbor-non-canonical')
  })

  it('never throws, and names a known code, on any input of one or two bytes', () => {
    const unknown: string[] = []
    const check = (bytes: Uint8Array) => {
      const r = decodeStrict(bytes) // a throw fails the test
      if (!r.ok && !(CODES_INVALID as readonly string[]).includes(r.code))
        unknown.push(Buffer.from(bytes).toString('hex'))
    }
    for (let x = 0; x < 256; x++) {
      check(Uint8Array.of(x))
      for (let y = 0; y < 256; y++) check(Uint8Array.of(x, y))
    }
    expect(unknown).toEqual([])
  })
})
