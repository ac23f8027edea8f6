/**
 * Sync stream messages (node/sync/messages.ts): each kind round-trips, and
 * untrusted bytes decode or fail with SyncError('sync-malformed'), nothing else.
 */
import * as dagCbor from '@ipld/dag-cbor'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { isSyncError } from '../../../../node/sync/errors.js'
import {
  decodeMessage,
  encodeMessage,
  MAX_GET_CIDS,
  type SyncMessage,
} from '../../../../node/sync/messages.js'
import { encode } from '../../../../protocol/cbor.js'
import { cidOfBlock, rawCidOfDigest } from '../../../../protocol/cid.js'

const cids = Array.from({ length: 3 }, (_, i) => cidOfBlock(encode({ n: i })))

function malformed(bytes: Uint8Array): boolean {
  try {
    decodeMessage(bytes)
    return false
  } catch (e) {
    if (isSyncError(e)) return e.code === 'sync-malformed'
    throw e
  }
}

const tagged = (tag: number, payload: Uint8Array = new Uint8Array(0)) => Uint8Array.of(tag, ...payload)

describe('sync messages', () => {
  const messages: SyncMessage[] = [
    { type: 'reconcile', payload: Uint8Array.of(0x61, 0, 0, 0) },
    { type: 'get', cids },
    { type: 'blocks', blocks: [encode({ a: 1 }), Uint8Array.of(1, 2, 3)] },
    { type: 'blocks', blocks: [] },
    { type: 'done' },
    { type: 'error', code: 'sync-malformed' },
  ]
  it.each(messages.map((m) => [m.type, m] as const))('round-trips %s', (_, message) => {
    const decoded = decodeMessage(encodeMessage(message))
    if (message.type === 'get' && decoded.type === 'get') {
      expect(decoded.cids.map(String)).toEqual(message.cids.map(String))
    } else {
      expect(decoded).toEqual(message)
    }
  })

  it('refuses to encode what it would not decode', () => {
    expect(() => encodeMessage({ type: 'get', cids: [] })).toThrow(RangeError)
    expect(() => encodeMessage({ type: 'get', cids: [rawCidOfDigest(new Uint8Array(32))] })).toThrow(
      RangeError,
    )
    expect(() => encodeMessage({ type: 'blocks', blocks: [new Uint8Array(0)] })).toThrow(RangeError)
    expect(() => encodeMessage({ type: 'error', code: 'Not A Code' })).toThrow(RangeError)
  })

  const bad: Array<[string, Uint8Array]> = [
    ['empty frame', new Uint8Array(0)],
    ['unknown tag', tagged(9)],
    ['empty reconcile', tagged(1)],
    ['bytes after done', tagged(4, Uint8Array.of(0))],
    ['get that is not CBOR', tagged(2, Uint8Array.of(0xff))],
    ['get with trailing bytes', tagged(2, Uint8Array.of(...dagCbor.encode([cids[0]!.bytes]), 0))],
    ['get of no CIDs', tagged(2, dagCbor.encode([]))],
    ['get of a map', tagged(2, dagCbor.encode({ a: 1 }))],
    ['get of text', tagged(2, dagCbor.encode(['bafy']))],
    ['get of tag-42 CIDs instead of bytes', tagged(2, dagCbor.encode([cids[0]!]))],
    ['get of bytes that are no CID', tagged(2, dagCbor.encode([Uint8Array.of(1, 2, 3)]))],
    ['get of a CID with trailing bytes', tagged(2, dagCbor.encode([Uint8Array.of(...cids[0]!.bytes, 0)]))],
    ['get of a raw CID', tagged(2, dagCbor.encode([rawCidOfDigest(new Uint8Array(32)).bytes]))],
    ['get of too many CIDs', tagged(2, dagCbor.encode(new Array(MAX_GET_CIDS + 1).fill(cids[0]!.bytes)))],
    ['blocks with an empty block', tagged(3, dagCbor.encode([new Uint8Array(0)]))],
    ['blocks with a number', tagged(3, dagCbor.encode([1]))],
    ['error without code', tagged(5, dagCbor.encode({}))],
    ['error with an extra key', tagged(5, dagCbor.encode({ code: 'x', why: 'y' }))],
    ['error with a code that is no word', tagged(5, dagCbor.encode({ code: 'a b' }))],
    ['error as a list', tagged(5, dagCbor.encode(['sync-malformed']))],
  ]
  it.each(bad)('rejects %s as sync-malformed', (_, bytes) => {
    expect(malformed(bytes)).toBe(true)
  })

  it('turns random bytes into a message or a SyncError, never anything else', () => {
    const frames = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc
        .tuple(fc.integer({ min: 1, max: 5 }), fc.uint8Array({ maxLength: 200 }))
        .map(([t, p]) => tagged(t, p)),
      fc.tuple(fc.integer({ min: 2, max: 5 }), fc.anything()).map(([t, v]) => {
        try {
          return tagged(t, dagCbor.encode(v))
        } catch {
          return tagged(t)
        }
      }),
    )
    fc.assert(
      fc.property(frames, (bytes) => {
        try {
          decodeMessage(bytes)
        } catch (e) {
          expect(isSyncError(e)).toBe(true)
        }
      }),
      { numRuns: 3000 },
    )
  })
})
