/**
 * The bounded store of holding announcements and bindings (docs/adr/0029-holding-announcements.md),
 * in memory: what peers said they hold, as checked by announcement.ts and binding.ts. Nothing
 * here is a record; a restarted node fills it again by sync and renewals.
 *
 * - Announcements: the latest `at` per (peer, weights) wins (a tie goes to the larger bytes, so
 *   every node keeps the same one); at most `maxPerPeer` per peer and `maxAnnouncements` in
 *   all; each lives `ttlMs` from its `at` by this node's clock; one signed more than
 *   `futureSkewMs` ahead of the clock is refused. A withdrawal is kept like any announcement so
 *   that an older one arriving later is refused as stale.
 * - Peer ids cost nothing, so peers no held binding names (unaffiliated) get a share only: at
 *   most `maxUnaffiliatedPerWeights` of them per weights root and `maxUnaffiliated`
 *   announcements of theirs in all. When a bound is reached the unaffiliated announcement with
 *   the oldest `at` makes way for one with a later `at`, and for a bound peer's always: a stranger
 *   minting ids can crowd out other strangers, never a member's nodes.
 * - Bindings: the latest `at` per member wins, at most `maxBindings`; no TTL (a member binds
 *   once), dropped by `pruneBindings` when the member stops being one.
 *
 * Announcements are indexed by weights root, then peer: the report and the sources read one
 * root's holders without walking every peer.
 */

import type { CID } from 'multiformats/cid'
import { cidKey, compareBytes, type Did } from '../../protocol/index.js'
import type { SignedAnnouncement } from './announcement.js'
import type { SignedBinding } from './binding.js'
import type { HoldingsRefusal } from './wire.js'

export const HOLDINGS_STORE_DEFAULTS = Object.freeze({
  maxPerPeer: 1024,
  maxAnnouncements: 65_536,
  maxUnaffiliated: 8_192,
  maxUnaffiliatedPerWeights: 64,
  maxBindings: 10_000,
  futureSkewMs: 5 * 60_000,
})

export interface HoldingsStoreOptions {
  /** The node's clock (ms since the epoch). */
  readonly clock: () => number
  /** How long an announcement lives from its `at`: three renewal periods (a function when the period is live). */
  readonly ttlMs: number | (() => number)
  readonly maxPerPeer?: number
  readonly maxAnnouncements?: number
  readonly maxUnaffiliated?: number
  readonly maxUnaffiliatedPerWeights?: number
  readonly maxBindings?: number
  readonly futureSkewMs?: number
}

/** A checked message and the exact bytes it came in (what sync sends on). */
export interface Kept<T> {
  readonly value: T
  readonly bytes: Uint8Array
}

export type Offer = { readonly stored: true } | { readonly stored: false; readonly reason: HoldingsRefusal }

const STORED: Offer = { stored: true }
const refusal = (reason: HoldingsRefusal): Offer => ({ stored: false, reason })

/** Whether `b` replaces `a`: a later `at`, or the same `at` and larger bytes. */
function newer(b: Kept<{ at: number }>, a: Kept<{ at: number }>): boolean | 'same' {
  if (b.value.at !== a.value.at) return b.value.at > a.value.at
  const order = compareBytes(b.bytes, a.bytes)
  return order === 0 ? 'same' : order > 0
}

type PeerEntries = Map<string, Kept<SignedAnnouncement>>

export class HoldingsStore {
  /** weights root (cidKey) → peer → its announcement. */
  private readonly byWeights = new Map<string, PeerEntries>()
  /** Announcements held per peer. */
  private readonly countOfPeer = new Map<string, number>()
  private announcementCount = 0
  /** Of them, held by peers no binding names. */
  private unaffiliatedCount = 0
  private readonly byMember = new Map<Did, Kept<SignedBinding>>()
  /** Peers named by a held binding, with how many bindings name them. */
  private readonly boundPeers = new Map<string, number>()
  private readonly limits: Required<Omit<HoldingsStoreOptions, 'clock' | 'ttlMs'>>

  constructor(private readonly options: HoldingsStoreOptions) {
    this.limits = { ...HOLDINGS_STORE_DEFAULTS, ...withoutUndefined(options) }
  }

  /** Keeps a checked announcement unless it is expired, future-dated, stale, or over a bound. */
  offerAnnouncement(kept: Kept<SignedAnnouncement>): Offer {
    const timing = this.timing(kept.value.at)
    if (timing) return refusal(timing)
    const { peer } = kept.value
    const weights = cidKey(kept.value.weights)
    const before = this.byWeights.get(weights)?.get(peer)
    if (before && this.isLive(before)) {
      const order = newer(kept, before)
      if (order === 'same') return refusal('duplicate')
      if (!order) return refusal('stale')
    }
    if (!before) {
      const full = this.makeRoom(kept, weights)
      if (full) return refusal(full)
    }
    this.put(weights, kept, !before)
    return STORED
  }

  /** Whether exactly these bytes are held now, for (peer, weights): a repeat needs no signature check. */
  holdsAnnouncement(peer: string, weights: CID, bytes: Uint8Array): boolean {
    const kept = this.byWeights.get(cidKey(weights))?.get(peer)
    return kept !== undefined && this.isLive(kept) && compareBytes(kept.bytes, bytes) === 0
  }

  /** Whether exactly these bytes are the binding held for `member`. */
  holdsBinding(member: Did, bytes: Uint8Array): boolean {
    const kept = this.byMember.get(member)
    return kept !== undefined && compareBytes(kept.bytes, bytes) === 0
  }

  /** Keeps a checked binding of a member (the caller checked membership) unless future-dated, stale or over the bound. */
  offerBinding(kept: Kept<SignedBinding>): Offer {
    if (kept.value.at > this.options.clock() + this.limits.futureSkewMs) return refusal('future')
    const before = this.byMember.get(kept.value.member)
    if (before) {
      const order = newer(kept, before)
      if (order === 'same') return refusal('duplicate')
      if (!order) return refusal('stale')
    } else if (this.byMember.size >= this.limits.maxBindings) return refusal('store-full')
    if (before) this.countBound(before.value.peers, -1)
    this.countBound(kept.value.peers, +1)
    this.byMember.set(kept.value.member, kept)
    return STORED
  }

  /** Drops the bindings of those no longer members (SPEC §15.3); returns their members. */
  pruneBindings(isMember: (did: Did) => boolean): Did[] {
    const dropped: Did[] = []
    for (const [member, kept] of this.byMember)
      if (!isMember(member)) {
        this.byMember.delete(member)
        this.countBound(kept.value.peers, -1)
        dropped.push(member)
      }
    return dropped
  }

  /** Whether a held binding names `peer` (its announcements are not bounded as a stranger's). */
  isBound(peer: string): boolean {
    return this.boundPeers.has(peer)
  }

  /** The live announcements that `weights` is held (withdrawals left out), by peer id. */
  holdersOf(weights: CID): SignedAnnouncement[] {
    const holders: SignedAnnouncement[] = []
    for (const kept of this.byWeights.get(cidKey(weights))?.values() ?? [])
      if (!kept.value.withdrawn && this.isLive(kept)) holders.push(kept.value)
    return holders.sort((a, b) => (a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0))
  }

  /** Every gateway of the live holders of `weights`, each once (unordered and unbounded: sources.ts orders and bounds). */
  gatewaysOf(weights: CID): string[] {
    return [...new Set(this.holdersOf(weights).flatMap((a) => a.gateways))]
  }

  /** Every live announcement, withdrawals included (what sync sends). */
  announcements(): Kept<SignedAnnouncement>[] {
    const live: Kept<SignedAnnouncement>[] = []
    for (const entries of this.byWeights.values())
      for (const kept of entries.values()) if (this.isLive(kept)) live.push(kept)
    return live
  }

  /** How many announcements are live, withdrawals included (the metrics: no list built). */
  liveAnnouncementCount(): number {
    let live = 0
    for (const entries of this.byWeights.values())
      for (const kept of entries.values()) if (this.isLive(kept)) live++
    return live
  }

  /** The announcement of (peer, weights) held now, live or not yet swept. */
  announcementOf(peer: string, weights: CID): SignedAnnouncement | undefined {
    return this.byWeights.get(cidKey(weights))?.get(peer)?.value
  }

  bindings(): Kept<SignedBinding>[] {
    return [...this.byMember.values()]
  }

  bindingOf(member: Did): SignedBinding | undefined {
    return this.byMember.get(member)?.value
  }

  /** Announcements held, live or not yet swept. */
  announcementTotal(): number {
    return this.announcementCount
  }

  /** Of them, held by peers no binding names. */
  unaffiliatedTotal(): number {
    return this.unaffiliatedCount
  }

  /** Drops the expired announcements; returns how many went. */
  sweep(): number {
    let dropped = 0
    for (const [weights, entries] of this.byWeights)
      for (const kept of [...entries.values()])
        if (!this.isLive(kept)) {
          this.drop(weights, kept.value.peer)
          dropped++
        }
    return dropped
  }

  private put(weights: string, kept: Kept<SignedAnnouncement>, added: boolean): void {
    const entries = this.byWeights.get(weights) ?? new Map<string, Kept<SignedAnnouncement>>()
    entries.set(kept.value.peer, kept)
    this.byWeights.set(weights, entries)
    if (!added) return
    this.announcementCount++
    if (!this.isBound(kept.value.peer)) this.unaffiliatedCount++
    this.countOfPeer.set(kept.value.peer, (this.countOfPeer.get(kept.value.peer) ?? 0) + 1)
  }

  private drop(weights: string, peer: string): void {
    const entries = this.byWeights.get(weights)
    if (!entries?.delete(peer)) return
    if (entries.size === 0) this.byWeights.delete(weights)
    this.announcementCount--
    if (!this.isBound(peer)) this.unaffiliatedCount--
    const left = (this.countOfPeer.get(peer) ?? 1) - 1
    if (left === 0) this.countOfPeer.delete(peer)
    else this.countOfPeer.set(peer, left)
  }

  private countBound(peers: readonly string[], delta: 1 | -1): void {
    for (const peer of peers) {
      const before = this.boundPeers.get(peer) ?? 0
      const count = before + delta
      if (count <= 0) this.boundPeers.delete(peer)
      else this.boundPeers.set(peer, count)
      // A peer bound or unbound moves its announcements between the shares.
      const held = this.countOfPeer.get(peer) ?? 0
      if (before === 0 && count > 0) this.unaffiliatedCount -= held
      if (before > 0 && count <= 0) this.unaffiliatedCount += held
    }
  }

  private isLive(kept: Kept<SignedAnnouncement>): boolean {
    return this.options.clock() < kept.value.at + this.ttlMs()
  }

  private ttlMs(): number {
    const ttl = this.options.ttlMs
    return typeof ttl === 'number' ? ttl : ttl()
  }

  private timing(at: number): HoldingsRefusal | undefined {
    const now = this.options.clock()
    if (at > now + this.limits.futureSkewMs) return 'future'
    if (now >= at + this.ttlMs()) return 'expired'
    return undefined
  }

  /**
   * Room for one more announcement (a new key): expired ones are swept if a bound is reached,
   * then the oldest unaffiliated one is evicted (only one with an earlier `at` than a stranger's
   * `kept`); why it does not fit otherwise.
   */
  private makeRoom(kept: Kept<SignedAnnouncement>, weights: string): HoldingsRefusal | undefined {
    const { peer } = kept.value
    if ((this.countOfPeer.get(peer) ?? 0) >= this.limits.maxPerPeer) {
      this.sweep()
      if ((this.countOfPeer.get(peer) ?? 0) >= this.limits.maxPerPeer) return 'peer-full'
    }
    if (this.overBound(peer, weights) === undefined) return undefined
    this.sweep()
    // A bound peer's announcement evicts whatever stranger's it must; a stranger's only an older one.
    const bound = this.isBound(peer)
    for (let over = this.overBound(peer, weights); over !== undefined; ) {
      const victim = this.oldestUnaffiliated(over === 'weights' ? weights : undefined)
      if (!victim || (!bound && kept.value.at <= victim.value.at)) return 'store-full'
      this.drop(cidKey(victim.value.weights), victim.value.peer)
      over = this.overBound(peer, weights)
    }
    return undefined
  }

  /** Which bound one more announcement of `peer` under `weights` would break, if any. */
  private overBound(peer: string, weights: string): 'all' | 'unaffiliated' | 'weights' | undefined {
    if (this.announcementCount >= this.limits.maxAnnouncements) return 'all'
    if (this.isBound(peer)) return undefined
    if (this.unaffiliatedCount >= this.limits.maxUnaffiliated) return 'unaffiliated'
    const under = this.byWeights.get(weights)
    let strangers = 0
    for (const other of under?.keys() ?? []) if (!this.isBound(other)) strangers++
    return strangers >= this.limits.maxUnaffiliatedPerWeights ? 'weights' : undefined
  }

  /** The unaffiliated announcement with the oldest `at` (the smaller bytes on a tie), under one root or any. */
  private oldestUnaffiliated(weights?: string): Kept<SignedAnnouncement> | undefined {
    let oldest: Kept<SignedAnnouncement> | undefined
    const roots = weights ? [this.byWeights.get(weights) ?? new Map()] : this.byWeights.values()
    for (const entries of roots)
      for (const [peer, kept] of entries as PeerEntries)
        if (!this.isBound(peer) && (!oldest || newer(oldest, kept) === true)) oldest = kept
    return oldest
  }
}

function withoutUndefined(o: HoldingsStoreOptions): Partial<typeof HOLDINGS_STORE_DEFAULTS> {
  const out: Record<string, number> = {}
  for (const key of Object.keys(HOLDINGS_STORE_DEFAULTS)) {
    const v = (o as unknown as Record<string, number | undefined>)[key]
    if (v !== undefined) out[key] = v
  }
  return out
}
