/**
 * Holding announcements and bindings (docs/adr/0029-holding-announcements.md): round trips, and
 * every bound at its limit and one past it (gateways, URL length, total bytes, bound peers), the
 * exact key set, canonical bytes, the federation, and signatures by the wrong key.
 */

import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import {
  decodeAnnouncement,
  type HoldingAnnouncement,
  signAnnouncement,
} from '../../../../node/holdings/announcement.js'
import { canonicalPeers, decodeBinding, signBinding } from '../../../../node/holdings/binding.js'
import {
  MAX_BOUND_PEERS,
  MAX_GATEWAY_URL_CHARS,
  MAX_GATEWAYS,
  MAX_HOLDINGS_MESSAGE_BYTES,
} from '../../../../node/holdings/wire.js'
import { concatBytes, createSigner } from '../../../../protocol/index.js'
import {
  announcementFields,
  FEDERATION,
  OTHER_FEDERATION,
  rawAnnouncement,
  rawBinding,
  testPeer,
  weightsCid,
} from '../../../support/holdings.js'

const keyOf = (name: string) => new Uint8Array(createHash('sha256').update(name).digest())
const member = createSigner(keyOf('holdings-unit:m1'))

/** A gateway URL of exactly `chars` characters. */
function urlOf(chars: number, n = 0): string {
  const head = `http://g${n}.example.org/`
  return head + 'p'.repeat(chars - head.length)
}

function reasonOf(r: { ok: boolean; reason?: string }): string | undefined {
  return r.ok ? undefined : r.reason
}

describe('holding announcements', () => {
  it('round-trip: signed by the peer key, decoded with every field', async () => {
    const peer = await testPeer()
    const a = announcementFields(peer) as unknown as HoldingAnnouncement
    const bytes = await signAnnouncement(a, peer.key)
    const decoded = decodeAnnouncement(bytes, FEDERATION)
    expect(decoded.ok).toBe(true)
    if (!decoded.ok) return
    expect(decoded.value.peer).toBe(peer.id)
    expect(decoded.value.weights.equals(weightsCid(1))).toBe(true)
    expect(decoded.value.gateways).toEqual(['http://127.0.0.1:7070'])
    expect([decoded.value.verifiedAt, decoded.value.at, decoded.value.withdrawn]).toEqual([
      1_000,
      2_000,
      false,
    ])
  })

  it(`take ${MAX_GATEWAYS} gateways and refuse ${MAX_GATEWAYS + 1}`, async () => {
    const peer = await testPeer()
    const gateways = (n: number) => Array.from({ length: n }, (_, i) => `http://10.0.0.${i + 1}:7070`)
    const at = await rawAnnouncement(announcementFields(peer, { gateways: gateways(MAX_GATEWAYS) }), peer.key)
    const over = await rawAnnouncement(
      announcementFields(peer, { gateways: gateways(MAX_GATEWAYS + 1) }),
      peer.key,
    )
    expect(decodeAnnouncement(at, FEDERATION).ok).toBe(true)
    expect(reasonOf(decodeAnnouncement(over, FEDERATION))).toBe('malformed')
  })

  it(`take a gateway URL of ${MAX_GATEWAY_URL_CHARS} characters and refuse one of ${MAX_GATEWAY_URL_CHARS + 1}`, async () => {
    const peer = await testPeer()
    const at = await rawAnnouncement(
      announcementFields(peer, { gateways: [urlOf(MAX_GATEWAY_URL_CHARS)] }),
      peer.key,
    )
    const over = await rawAnnouncement(
      announcementFields(peer, { gateways: [urlOf(MAX_GATEWAY_URL_CHARS + 1)] }),
      peer.key,
    )
    expect(decodeAnnouncement(at, FEDERATION).ok).toBe(true)
    expect(reasonOf(decodeAnnouncement(over, FEDERATION))).toBe('malformed')
  })

  it('take the largest announcement (8 gateways of 200 characters) and refuse any message over 2 KiB', async () => {
    const peer = await testPeer()
    const gateways = Array.from({ length: MAX_GATEWAYS }, (_, i) => urlOf(MAX_GATEWAY_URL_CHARS, i))
    const largest = await rawAnnouncement(announcementFields(peer, { gateways }), peer.key)
    expect(largest.length).toBeLessThanOrEqual(MAX_HOLDINGS_MESSAGE_BYTES)
    expect(decodeAnnouncement(largest, FEDERATION).ok).toBe(true)
    const padded = (n: number) => concatBytes(largest, new Uint8Array(n - largest.length))
    // At the limit the bytes are read (and refused for their trailing bytes); one more is never read.
    expect(reasonOf(decodeAnnouncement(padded(MAX_HOLDINGS_MESSAGE_BYTES), FEDERATION))).toBe('malformed')
    expect(reasonOf(decodeAnnouncement(padded(MAX_HOLDINGS_MESSAGE_BYTES + 1), FEDERATION))).toBe('oversize')
  })

  it('refuse gateways that are not http(s) base URLs, and a gateway named twice', async () => {
    const peer = await testPeer()
    for (const gateways of [
      ['ftp://10.0.0.1/'],
      ['http://user:pw@10.0.0.1:7070'],
      ['http://10.0.0.1:7070/?x=1'],
      ['http://10.0.0.1:7070/#x'],
      ['http://10.0.0.1 :7070'],
      ['http://10.0.0.1:7070', 'http://10.0.0.1:7070'],
    ]) {
      const bytes = await rawAnnouncement(announcementFields(peer, { gateways }), peer.key)
      expect(reasonOf(decodeAnnouncement(bytes, FEDERATION)), gateways.join(' ')).toBe('malformed')
    }
  })

  it('refuse a missing key, an extra key, and non-canonical bytes', async () => {
    const peer = await testPeer()
    const { at: _at, ...missing } = announcementFields(peer)
    expect(reasonOf(decodeAnnouncement(await rawAnnouncement(missing, peer.key), FEDERATION))).toBe(
      'malformed',
    )
    const extra = announcementFields(peer, { note: 'x' })
    expect(reasonOf(decodeAnnouncement(await rawAnnouncement(extra, peer.key), FEDERATION))).toBe('malformed')
    const good = await rawAnnouncement(announcementFields(peer), peer.key)
    // 0xb8 0x08: the map's length in a one-byte argument where the head alone holds it.
    const longHead = concatBytes(new Uint8Array([0xb8, good[0]! & 0x1f]), good.subarray(1))
    expect(reasonOf(decodeAnnouncement(longHead, FEDERATION))).toBe('malformed')
  })

  it('refuse a withdrawal naming gateways, verifiedAt after at, and a peer that is not an Ed25519 peer id', async () => {
    const peer = await testPeer()
    for (const over of [
      { withdrawn: true },
      { verifiedAt: 3_000 },
      { peer: 'not-a-peer' },
      { peer: `${peer.id}x` },
      { at: -1 },
      { at: 1.5 },
    ]) {
      const bytes = await rawAnnouncement(announcementFields(peer, over), peer.key)
      expect(reasonOf(decodeAnnouncement(bytes, FEDERATION)), JSON.stringify(over)).toBe('malformed')
    }
    const withdrawal = await rawAnnouncement(
      announcementFields(peer, { withdrawn: true, gateways: [] }),
      peer.key,
    )
    expect(decodeAnnouncement(withdrawal, FEDERATION).ok).toBe(true)
  })

  it("refuse another federation's announcement, and one signed by another peer's key", async () => {
    const peer = await testPeer()
    const stranger = await testPeer()
    const other = await rawAnnouncement(announcementFields(peer, { federation: OTHER_FEDERATION }), peer.key)
    expect(reasonOf(decodeAnnouncement(other, FEDERATION))).toBe('federation')
    const forged = await rawAnnouncement(announcementFields(peer), stranger.key)
    expect(reasonOf(decodeAnnouncement(forged, FEDERATION))).toBe('signature')
    await expect(
      signAnnouncement(announcementFields(peer) as unknown as HoldingAnnouncement, stranger.key),
    ).rejects.toThrow(/signed by the key of the peer/)
  })
})

describe('bindings', () => {
  const fields = (peers: string[], over: Record<string, unknown> = {}) => ({
    federation: FEDERATION,
    member: member.did,
    peers,
    at: 5_000,
    ...over,
  })
  const peerIds = async (n: number) =>
    canonicalPeers(await Promise.all(Array.from({ length: n }, async () => (await testPeer()).id)))

  it('round-trip: signed by the member key, peers sorted', async () => {
    const peers = await peerIds(3)
    const bytes = signBinding({ federation: FEDERATION, member: member.did, peers, at: 5_000 }, member)
    const decoded = decodeBinding(bytes, FEDERATION)
    expect(decoded.ok && decoded.value.peers).toEqual(peers)
  })

  it(`take ${MAX_BOUND_PEERS} peers and refuse ${MAX_BOUND_PEERS + 1}`, async () => {
    const peers = await peerIds(MAX_BOUND_PEERS + 1)
    expect(decodeBinding(rawBinding(fields(peers.slice(0, MAX_BOUND_PEERS)), member), FEDERATION).ok).toBe(
      true,
    )
    expect(reasonOf(decodeBinding(rawBinding(fields(peers), member), FEDERATION))).toBe('malformed')
  })

  it('take no peers (unbinding every node), refuse unsorted or repeated peers', async () => {
    const [a, b] = await peerIds(2)
    expect(decodeBinding(rawBinding(fields([]), member), FEDERATION).ok).toBe(true)
    expect(reasonOf(decodeBinding(rawBinding(fields([b!, a!]), member), FEDERATION))).toBe('malformed')
    expect(reasonOf(decodeBinding(rawBinding(fields([a!, a!]), member), FEDERATION))).toBe('malformed')
  })

  it("refuse another federation's binding, one signed by another key, and a message over 2 KiB", async () => {
    const peers = await peerIds(1)
    const stranger = createSigner(keyOf('holdings-unit:stranger'))
    const other = rawBinding(fields(peers, { federation: OTHER_FEDERATION }), member)
    expect(reasonOf(decodeBinding(other, FEDERATION))).toBe('federation')
    expect(reasonOf(decodeBinding(rawBinding(fields(peers), stranger), FEDERATION))).toBe('signature')
    const big = concatBytes(rawBinding(fields(peers), member), new Uint8Array(MAX_HOLDINGS_MESSAGE_BYTES))
    expect(reasonOf(decodeBinding(big, FEDERATION))).toBe('oversize')
    expect(() => signBinding({ federation: FEDERATION, member: member.did, peers, at: 1 }, stranger)).toThrow(
      /signed by the member/,
    )
  })
})
