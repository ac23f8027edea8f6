/**
 * The bounds a stranger with free peer ids meets (docs/adr/0029-holding-announcements.md, SPEC
 * §15.4 step 7, §15.6): unaffiliated peers get at most 64 announcers per weights root and 8,192
 * announcements in all, a bound peer's announcement always finds room (an older stranger's
 * makes way), bindings go when their member does, a repeat of held bytes is a duplicate before
 * any signature check, and the flag counts only affiliated holders once any binding exists.
 */
import { describe, expect, it } from 'vitest'
import type { SignedAnnouncement } from '../../../../node/holdings/announcement.js'
import type { SignedBinding } from '../../../../node/holdings/binding.js'
import { createIntake } from '../../../../node/holdings/intake.js'
import { entryOf, type Holder } from '../../../../node/holdings/report.js'
import { HOLDINGS_STORE_DEFAULTS, HoldingsStore, type Kept } from '../../../../node/holdings/store.js'
import { type CID, cidOfBlock, createSigner, encode, type ModelView } from '../../../../protocol/index.js'
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
const NOW = 1_000_000

function announcement(peer: string, weights: CID, at: number): Kept<SignedAnnouncement> {
  const value: SignedAnnouncement = {
    federation: FEDERATION,
    peer,
    weights,
    gateways: [`http://${peer}.example.org`],
    verifiedAt: at,
    at,
    withdrawn: false,
    sig: new Uint8Array(64),
  }
  return { value, bytes: encode({ peer, weights: weights.toString(), at }) }
}

function binding(member: string, peers: string[], at: number): Kept<SignedBinding> {
  return {
    value: { federation: FEDERATION, member, peers, at, sig: new Uint8Array(64) },
    bytes: encode({ member, peers, at }),
  }
}

function storeNow(options: Partial<ConstructorParameters<typeof HoldingsStore>[0]> = {}) {
  return new HoldingsStore({ clock: () => NOW, ttlMs: TTL, ...options })
}

const stranger = (i: number) => `12D3KooWstranger${i}`

describe('unaffiliated announcers of one weights root', () => {
  it('holds 64; the 65th, older than all, is refused; a later one evicts the oldest', () => {
    const store = storeNow()
    const w = weightsCid(1)
    const limit = HOLDINGS_STORE_DEFAULTS.maxUnaffiliatedPerWeights
    expect(limit).toBe(64)
    for (let i = 0; i < limit; i++)
      expect(store.offerAnnouncement(announcement(stranger(i), w, NOW - 1000 + i)).stored).toBe(true)
    expect(store.offerAnnouncement(announcement(stranger(limit), w, NOW - 2000))).toEqual({
      stored: false,
      reason: 'store-full',
    })
    expect(store.offerAnnouncement(announcement(stranger(limit), w, NOW)).stored).toBe(true)
    expect(store.holdersOf(w)).toHaveLength(limit)
    expect(store.announcementOf(stranger(0), w)).toBeUndefined()
    // Other weights roots have their own 64.
    expect(store.offerAnnouncement(announcement(stranger(0), weightsCid(2), NOW - 2000)).stored).toBe(true)
  })

  it('always has room for a peer a member bound, whatever its at', () => {
    const store = storeNow()
    const w = weightsCid(1)
    for (let i = 0; i < 64; i++) store.offerAnnouncement(announcement(stranger(i), w, NOW - 1000 + i))
    store.offerBinding(binding('did:key:m', ['12D3KooWbound'], NOW))
    expect(store.offerAnnouncement(announcement('12D3KooWbound', w, NOW - 5000)).stored).toBe(true)
    expect(store.holdersOf(w)).toHaveLength(65)
  })
})

describe('unaffiliated announcements in all', () => {
  it('holds 8,192; the 8,193rd, older than all, is refused; a later one evicts the oldest', () => {
    const store = storeNow()
    const limit = HOLDINGS_STORE_DEFAULTS.maxUnaffiliated
    expect(limit).toBe(8192)
    for (let i = 0; i < limit; i++)
      expect(store.offerAnnouncement(announcement(stranger(i), weightsCid(i), NOW - 10_000 + i)).stored).toBe(
        true,
      )
    expect(store.unaffiliatedTotal()).toBe(limit)
    expect(store.offerAnnouncement(announcement(stranger(limit), weightsCid(limit), NOW - 20_000))).toEqual({
      stored: false,
      reason: 'store-full',
    })
    expect(store.offerAnnouncement(announcement(stranger(limit), weightsCid(limit), NOW)).stored).toBe(true)
    expect(store.unaffiliatedTotal()).toBe(limit)
    expect(store.announcementOf(stranger(0), weightsCid(0))).toBeUndefined()
  })

  it('a full store makes way for a bound peer by evicting the oldest stranger; full of bound peers it refuses', () => {
    const store = storeNow({ maxAnnouncements: 4 })
    store.offerBinding(binding('did:key:m', ['12D3KooWb1', '12D3KooWb2', '12D3KooWb3'], NOW))
    store.offerAnnouncement(announcement(stranger(1), weightsCid(1), NOW - 10))
    store.offerAnnouncement(announcement(stranger(2), weightsCid(1), NOW - 20))
    store.offerAnnouncement(announcement('12D3KooWb1', weightsCid(1), NOW))
    store.offerAnnouncement(announcement('12D3KooWb2', weightsCid(1), NOW))
    expect(store.offerAnnouncement(announcement(stranger(3), weightsCid(2), NOW - 30))).toEqual({
      stored: false,
      reason: 'store-full',
    })
    expect(store.offerAnnouncement(announcement('12D3KooWb3', weightsCid(1), NOW - 99)).stored).toBe(true)
    expect(store.announcementOf(stranger(2), weightsCid(1))).toBeUndefined()
    expect(store.announcementOf(stranger(1), weightsCid(1))).toBeDefined()
    store.offerAnnouncement(announcement('12D3KooWb3', weightsCid(2), NOW))
    expect(store.unaffiliatedTotal()).toBe(0)
    store.offerBinding(binding('did:key:n', ['12D3KooWb4'], NOW))
    expect(store.offerAnnouncement(announcement('12D3KooWb4', weightsCid(1), NOW))).toEqual({
      stored: false,
      reason: 'store-full',
    })
  })
})

describe('bindings of former members', () => {
  it('are pruned, and their peers count as strangers again', () => {
    const store = storeNow()
    store.offerBinding(binding('did:key:m', ['12D3KooWb1'], NOW))
    store.offerBinding(binding('did:key:n', ['12D3KooWb2'], NOW))
    store.offerAnnouncement(announcement('12D3KooWb1', weightsCid(1), NOW))
    expect(store.unaffiliatedTotal()).toBe(0)
    expect(store.pruneBindings((did) => did === 'did:key:n')).toEqual(['did:key:m'])
    expect(store.bindings().map((b) => b.value.member)).toEqual(['did:key:n'])
    expect(store.isBound('12D3KooWb1')).toBe(false)
    expect(store.unaffiliatedTotal()).toBe(1)
  })
})

describe('a repeat of held bytes', () => {
  it('is a duplicate without a signature check', async () => {
    const peer = await testPeer()
    const clock = fakeClock(2_500)
    const store = new HoldingsStore({ clock: clock.fn, ttlMs: TTL })
    const intake = createIntake({
      federation: FEDERATION,
      store,
      isMember: () => true,
      isKnownWeights: () => true,
    })
    const fields = announcementFields(peer)
    const signed = await rawAnnouncement(fields, peer.key)
    // The same fields under a signature that does not verify, held as if once accepted: a check
    // of it would say `signature`; the intake must not get that far.
    const badSig = new Uint8Array(64).fill(1)
    const tampered = encode({ ...fields, sig: badSig })
    expect(intake.take(tampered)).toMatchObject({ verdict: 'reject', reason: 'signature' })
    const value = { ...fields, sig: badSig } as unknown as SignedAnnouncement
    expect(store.offerAnnouncement({ value, bytes: tampered }).stored).toBe(true)
    expect(intake.take(tampered)).toEqual({
      verdict: 'ignore',
      kind: 'announcement',
      reason: 'duplicate',
      message: 'held already',
    })
    // Other bytes of the same key are still checked.
    expect(intake.take(signed).verdict).toBe('accept')
  })

  it('of a binding is a duplicate without a signature check', () => {
    const store = storeNow()
    const intake = createIntake({
      federation: FEDERATION,
      store,
      isMember: () => true,
      isKnownWeights: () => true,
    })
    const member = createSigner(new Uint8Array(32).fill(5))
    const fields = { federation: FEDERATION, member: member.did, peers: [] as string[], at: NOW }
    const badSig = new Uint8Array(64).fill(1)
    const tampered = encode({ ...fields, sig: badSig })
    expect(intake.take(tampered)).toMatchObject({ verdict: 'reject', reason: 'signature' })
    expect(store.offerBinding({ value: { ...fields, sig: badSig }, bytes: tampered }).stored).toBe(true)
    expect(intake.take(tampered)).toMatchObject({ verdict: 'ignore', reason: 'duplicate' })
    expect(intake.take(rawBinding({ ...fields, at: NOW + 1 }, member)).verdict).toBe('accept')
  })
})

describe('the flag', () => {
  const weights = weightsCid(1)
  const manifest = cidOfBlock(encode({ manifest: 1 }))
  const fold = { get: () => ({ record: { kind: 'manifest', body: { weights } } }) } as never
  const model = { key: 'm@1', manifest, manifests: [manifest], status: 'ratified' } as unknown as ModelView

  it('counts every holder while no member has bound a node, only affiliated ones after', () => {
    const store = storeNow()
    for (let i = 0; i < 3; i++) store.offerAnnouncement(announcement(stranger(i), weights, NOW))
    const unbound = entryOf({ fold, store, minHolders: 3 }, model, new Map())!
    expect(unbound).toMatchObject({ affiliatedHolders: 0, flagged: false })
    // One binding in the federation: three strangers' ids no longer lift the flag.
    const affiliation = new Map([[stranger(0), 'did:key:m' as const]])
    const bound = entryOf({ fold, store, minHolders: 3 }, model, affiliation)!
    expect(bound).toMatchObject({ affiliatedHolders: 1, flagged: true })
    expect(bound.holders.map((h: Holder) => h.member)).toEqual(['did:key:m', null, null])
  })
})
