/**
 * The holding vectors in fixtures/vectors/holdings/ (protocol/SPEC.md §15.4; the folder's README):
 * regenerated and compared byte for byte, each named in the README, and each judged by the
 * TypeScript intake from its JSON alone and held to its expected verdict. The ZIP-215 vector is
 * checked to be one RFC 8032 refuses, so it tests what it says it tests.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { hexToBytes } from '@noble/hashes/utils.js'
import { describe, expect, it } from 'vitest'
import {
  generateHoldingVectors,
  HOLDING_VECTORS_DIR,
  type HoldingVector,
  judgeHoldingVector,
  serializeHoldingVector,
} from '../../../../fixtures/generate/holdings/index.js'
import { nativeEd25519 } from '../../../../node/ed25519-native.js'
import { HOLDING_DOMAIN } from '../../../../node/holdings/announcement.js'
import { peerPublicKey, signedBytes } from '../../../../node/holdings/wire.js'
import { decodeStrict } from '../../../../protocol/index.js'

const names = readdirSync(HOLDING_VECTORS_DIR)
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.slice(0, -'.json'.length))
  .sort()
const vectors = new Map(
  names.map((name) => [
    name,
    JSON.parse(readFileSync(join(HOLDING_VECTORS_DIR, `${name}.json`), 'utf8')) as HoldingVector,
  ]),
)
const readme = readFileSync(join(HOLDING_VECTORS_DIR, 'README.md'), 'utf8')

describe('holding vectors', () => {
  it('are exactly what `npm run vectors` writes, file for file', () => {
    const fresh = generateHoldingVectors()
    expect([...fresh.keys()].sort()).toEqual(names)
    for (const [name, v] of fresh)
      expect(serializeHoldingVector(v), name).toBe(
        readFileSync(join(HOLDING_VECTORS_DIR, `${name}.json`), 'utf8'),
      )
  })

  it('are each named in the README', () => {
    expect(names.filter((name) => !readme.includes(`\`${name}\``))).toEqual([])
  })

  it('cover every refusal code of SPEC §15.4, and both kinds accepted', () => {
    const codes = new Set(
      [...vectors.values()].map((v) => (v.expect.accepted ? v.expect.kind : v.expect.code)),
    )
    expect([...codes].sort()).toEqual(
      [
        'announcement',
        'binding',
        'duplicate',
        'expired',
        'federation',
        'future',
        'malformed',
        'not-member',
        'oversize',
        'peer-full',
        'signature',
        'stale',
        'store-full',
        'unknown-weights',
      ].sort(),
    )
  })

  it.each(names)('%s', (name) => {
    const v = vectors.get(name)!
    expect(judgeHoldingVector(v)).toEqual(v.expect)
  })

  it('the ZIP-215 edge is a signature RFC 8032 (OpenSSL) refuses', () => {
    const v = vectors.get('zip215-r-negative-zero')!
    const decoded = decodeStrict(hexToBytes(v.message))
    if (!decoded.ok) throw new Error('the vector does not decode')
    const { sig, ...fields } = decoded.value as Record<string, unknown>
    const key = peerPublicKey(fields.peer)!
    expect(nativeEd25519.verify(sig as Uint8Array, signedBytes(HOLDING_DOMAIN, fields), key)).toBe(false)
    expect(v.expect).toEqual({ accepted: true, kind: 'announcement' })
  })
})
