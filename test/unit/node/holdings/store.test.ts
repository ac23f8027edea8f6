/**
 * The holdings store and intake (docs/adr/0029-holding-announcements.md): the latest `at` wins per
 * (peer, weights) and per member, a withdrawal hides the holder, the per-peer and total bounds
 * hold at their limit and refuse one more, announcements expire after the TTL, future-dated
 * ones are refused beyond the skew (the TTL read live when given as a function); the intake stores nothing unauthenticated, and only
 * bindings of members and announcements of weights a manifest names.
 */
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import type { SignedAnnouncement } from '../../../../node/holdings/announcement.js'
import type { SignedBinding } from '../../../../node/holdings/binding.js'
import { createIntake } from '../../../../node/holdings/intake.js'
import { HOLDINGS_STORE_DEFAULTS, HoldingsStore, type Kept } from '../../../../node/holdings/store.js'
import { type CID, createSigner, encode } from '../../../../protocol/index.js'
import {
  announcementFields,
  FEDERATION,
  rawAnnouncement,
  rawBinding,
  testPeer,
  weightsCid,
} from '../../../support/holdings.js'
import { fakeClock } from '../../../support/stewards.js'

const TTL = 3 * 60_000
const PEER_A = '12D3KooWA'
const PEER_B = '12D3KooWB'

/** An announcement as the store sees it (already checked: the store checks no signature). */
function announcement(
  peer: string,
  weights: CID,
  at: number,
  over: Partial<SignedAnnouncement> = {},
): Kept<SignedAnnouncement> {
  const value: SignedAnnouncement = {
    federation: FEDERATION,
    peer,
    weights,
    gateways: [`http://${peer}.example.org`],
    verifiedAt: at,
    at,
    withdrawn: false,
    sig: new Uint8Array(64),
    ...over,
  }
  return { value, bytes: encode({ peer, weights: weights.toString(), at, withdrawn: value.withdrawn }) }
}

function binding(member: string, peers: string[], at: number): Kept<SignedBinding> {
  return {
    value: { federation: FEDERATION, member, peers, at, sig: new Uint8Array(64) },
    bytes: encode({ member, peers, at }),
  }
}

function storeAt(start: number, options: Partial<ConstructorParameters<typeof HoldingsStore>[0]> = {}) {
  const clock = fakeClock(start)
  return { clock, store: new HoldingsStore({ clock: clock.fn, ttlMs: TTL, ...options }) }
}

describe('latest wins', () => {
  it('per (peer, weights): a newer at replaces, an older or equal one is refused', () => {
    const { store } = storeAt(10_000)
    const w = weightsCid(1)
    expect(store.offerAnnouncement(announcement(PEER_A, w, 9_000)).stored).toBe(true)
    expect(store.offerAnnouncement(announcement(PEER_A, w, 9_500, { gateways: ['http://new'] })).stored).toBe(
      true,
    )
    expect(store.gatewaysOf(w)).toEqual(['http://new'])
    expect(store.offerAnnouncement(announcement(PEER_A, w, 9_000))).toEqual({
      stored: false,
      reason: 'stale',
    })
    expect(store.offerAnnouncement(announcement(PEER_A, w, 9_500, { gateways: ['http://new'] }))).toEqual({
      stored: false,
      reason: 'duplicate',
    })
    // Another peer, or other weights, are other entries.
    expect(store.offerAnnouncement(announcement(PEER_B, w, 9_000)).stored).toBe(true)
    expect(store.offerAnnouncement(announcement(PEER_A, weightsCid(2), 9_000)).stored).toBe(true)
    expect(store.holdersOf(w).map((a) => a.peer)).toEqual([PEER_A, PEER_B])
  })

  it('a withdrawal hides the holder and refuses the older announcement arriving later', () => {
    const { store } = storeAt(10_000)
    const w = weightsCid(1)
    const first = announcement(PEER_A, w, 9_000)
    store.offerAnnouncement(first)
    expect(
      store.offerAnnouncement(announcement(PEER_A, w, 9_001, { withdrawn: true, gateways: [] })).stored,
    ).toBe(true)
    expect(store.holdersOf(w)).toEqual([])
    expect(store.gatewaysOf(w)).toEqual([])
    expect(store.offerAnnouncement(first)).toEqual({ stored: false, reason: 'stale' })
  })

  it('per member for bindings', () => {
    const { store } = storeAt(10_000)
    expect(store.offerBinding(binding('did:key:m', [PEER_A], 5_000)).stored).toBe(true)
    expect(store.offerBinding(binding('did:key:m', [PEER_B], 6_000)).stored).toBe(true)
    expect(store.bindingOf('did:key:m')?.peers).toEqual([PEER_B])
    expect(store.offerBinding(binding('did:key:m', [PEER_A], 5_500))).toEqual({
      stored: false,
      reason: 'stale',
    })
  })
})

describe('bounds', () => {
  it(`hold ${HOLDINGS_STORE_DEFAULTS.maxPerPeer} announcements of one peer and refuse one more`, () => {
    const { store } = storeAt(10_000)
    for (let i = 0; i < HOLDINGS_STORE_DEFAULTS.maxPerPeer; i++)
      expect(store.offerAnnouncement(announcement(PEER_A, weightsCid(i), 9_000)).stored).toBe(true)
    expect(store.offerAnnouncement(announcement(PEER_A, weightsCid(-1), 9_000))).toEqual({
      stored: false,
      reason: 'peer-full',
    })
    // A renewal of one already held still goes in, and so does another peer's.
    expect(store.offerAnnouncement(announcement(PEER_A, weightsCid(0), 9_500)).stored).toBe(true)
    expect(store.offerAnnouncement(announcement(PEER_B, weightsCid(-1), 9_000)).stored).toBe(true)
  })

  it('hold the total and refuse one more, until expired ones are swept', () => {
    const { store, clock } = storeAt(10_000, { maxAnnouncements: 4 })
    for (let i = 0; i < 4; i++)
      expect(store.offerAnnouncement(announcement(`p${i}`, weightsCid(1), 9_000 + i)).stored).toBe(true)
    expect(store.offerAnnouncement(announcement('p4', weightsCid(1), 9_000))).toEqual({
      stored: false,
      reason: 'store-full',
    })
    clock.set(9_000 + TTL)
    expect(store.offerAnnouncement(announcement('p4', weightsCid(1), 9_000 + TTL)).stored).toBe(true)
    expect(store.announcementTotal()).toBe(4)
  })

  it('hold the bindings bound and refuse one more member', () => {
    const { store } = storeAt(10_000, { maxBindings: 2 })
    expect(store.offerBinding(binding('did:key:a', [], 1)).stored).toBe(true)
    expect(store.offerBinding(binding('did:key:b', [], 1)).stored).toBe(true)
    expect(store.offerBinding(binding('did:key:c', [], 1))).toEqual({ stored: false, reason: 'store-full' })
    expect(store.offerBinding(binding('did:key:a', [PEER_A], 2)).stored).toBe(true)
  })
})

describe('time', () => {
  it('an announcement lives TTL from its at: one ms before it is listed, at it is gone and refused', () => {
    const { store, clock } = storeAt(10_000)
    const w = weightsCid(1)
    store.offerAnnouncement(announcement(PEER_A, w, 10_000))
    clock.set(10_000 + TTL - 1)
    expect(store.holdersOf(w).length).toBe(1)
    clock.set(10_000 + TTL)
    expect(store.holdersOf(w)).toEqual([])
    expect(store.announcements()).toEqual([])
    expect(store.offerAnnouncement(announcement(PEER_B, w, 10_000))).toEqual({
      stored: false,
      reason: 'expired',
    })
    expect(store.sweep()).toBe(1)
    expect(store.announcementTotal()).toBe(0)
    // Once expired, an older announcement is no longer refused as stale: it is judged on its own time.
    expect(store.offerAnnouncement(announcement(PEER_A, w, 10_000 + 1)).stored).toBe(true)
  })

  it('a TTL given as a function (holdingRenewMs is live) applies its value of the moment', () => {
    let ttl = TTL
    const { store, clock } = storeAt(10_000, { ttlMs: () => ttl })
    const w = weightsCid(1)
    store.offerAnnouncement(announcement(PEER_A, w, 10_000))
    clock.set(10_000 + TTL - 1)
    expect(store.holdersOf(w).length).toBe(1)
    // The period shortened: the same announcement is now past its TTL, a longer one keeps it.
    ttl = TTL - 1
    expect(store.holdersOf(w)).toEqual([])
    ttl = TTL
    expect(store.holdersOf(w).length).toBe(1)
  })

  it('take an at up to the skew ahead of the clock and refuse one ms more', () => {
    const { store } = storeAt(10_000)
    const skew = HOLDINGS_STORE_DEFAULTS.futureSkewMs
    expect(store.offerAnnouncement(announcement(PEER_A, weightsCid(1), 10_000 + skew)).stored).toBe(true)
    expect(store.offerAnnouncement(announcement(PEER_B, weightsCid(1), 10_000 + skew + 1))).toEqual({
      stored: false,
      reason: 'future',
    })
    expect(store.offerBinding(binding('did:key:m', [], 10_000 + skew + 1))).toEqual({
      stored: false,
      reason: 'future',
    })
  })
})

describe('the intake', () => {
  const member = createSigner(new Uint8Array(createHash('sha256').update('holdings-unit:member').digest()))
  const intakeAt = (now: number, members: string[] = [member.did], known: CID[] = [weightsCid(1)]) => {
    const { store } = storeAt(now)
    const refused: string[] = []
    const intake = createIntake({
      federation: FEDERATION,
      store,
      isMember: (did) => members.includes(did),
      isKnownWeights: (w) => known.some((k) => k.equals(w)),
      onRefused: (reason) => refused.push(reason),
    })
    return { store, intake, refused }
  }

  it('stores a good announcement and binding; rejects faults, ignores what an honest peer may relay', async () => {
    const peer = await testPeer()
    const stranger = await testPeer()
    const { store, intake, refused } = intakeAt(2_500)
    expect(intake.take(await rawAnnouncement(announcementFields(peer), peer.key)).verdict).toBe('accept')
    const bind = { federation: FEDERATION, member: member.did, peers: [peer.id], at: 2_000 }
    expect(intake.take(rawBinding(bind, member)).verdict).toBe('accept')
    expect(store.holdersOf(weightsCid(1)).map((a) => a.peer)).toEqual([peer.id])

    // Signed by a stranger in the peer's name: rejected, not stored.
    const forged = await rawAnnouncement(
      announcementFields(peer, { weights: weightsCid(1), at: 2_100 }),
      stranger.key,
    )
    expect(intake.take(forged)).toMatchObject({ verdict: 'reject', reason: 'signature' })
    // Weights no manifest here names: ignored (a peer with a newer state may know them).
    const unknown = await rawAnnouncement(announcementFields(peer, { weights: weightsCid(9) }), peer.key)
    expect(intake.take(unknown)).toMatchObject({ verdict: 'ignore', reason: 'unknown-weights' })
    expect(intake.take(new Uint8Array([0xff]))).toMatchObject({ verdict: 'reject', reason: 'malformed' })
    expect(intake.take(rawBinding(bind, member), 'announcement')).toMatchObject({ verdict: 'reject' })
    expect(store.announcements().length).toBe(1)
    expect(refused).toEqual(['signature', 'unknown-weights', 'malformed', 'malformed'])
  })

  it('ignores the binding of someone who is not a member', async () => {
    const peer = await testPeer()
    const { store, intake } = intakeAt(2_500, [])
    const bind = { federation: FEDERATION, member: member.did, peers: [peer.id], at: 2_000 }
    expect(intake.take(rawBinding(bind, member))).toMatchObject({ verdict: 'ignore', reason: 'not-member' })
    // Membership is checked before the signature: a stranger's junk costs no signature check.
    const forged = rawBinding(bind, createSigner(new Uint8Array(32).fill(3)))
    expect(intake.take(forged)).toMatchObject({ verdict: 'ignore', reason: 'not-member' })
    expect(store.bindings()).toEqual([])
  })
})
