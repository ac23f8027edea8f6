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
 * - Bindings: the latest `at` per member wins, at most `maxBindings`; no TTL (a member binds once).
 */

import type { CID } from 'multiformats/cid'
import { cidKey, compareBytes, type Did } from '../../protocol/index.js'
import type { SignedAnnouncement } from './announcement.js'
import type { SignedBinding } from './binding.js'
import type { HoldingsRefusal } from './wire.js'

export const HOLDINGS_STORE_DEFAULTS = Object.freeze({
  maxPerPeer: 1024,
  maxAnnouncements: 65_536,
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

export class HoldingsStore {
  private readonly byPeer = new Map<string, Map<string, Kept<SignedAnnouncement>>>()
  private announcementCount = 0
  private readonly byMember = new Map<Did, Kept<SignedBinding>>()
  private readonly limits: Required<Omit<HoldingsStoreOptions, 'clock' | 'ttlMs'>>

  constructor(private readonly options: HoldingsStoreOptions) {
    this.limits = { ...HOLDINGS_STORE_DEFAULTS, ...withoutUndefined(options) }
  }

  /** Keeps a checked announcement unless it is expired, future-dated, stale, or over a bound. */
  offerAnnouncement(kept: Kept<SignedAnnouncement>): Offer {
    const timing = this.timing(kept.value.at)
    if (timing) return refusal(timing)
    const weights = cidKey(kept.value.weights)
    const peerEntries = this.byPeer.get(kept.value.peer)
    const before = peerEntries?.get(weights)
    if (before && this.isLive(before)) {
      const order = newer(kept, before)
      if (order === 'same') return refusal('duplicate')
      if (!order) return refusal('stale')
    }
    if (!before) {
      const full = this.roomFor(kept.value.peer)
      if (full) return refusal(full)
    }
    const entries = peerEntries ?? new Map<string, Kept<SignedAnnouncement>>()
    if (!before) this.announcementCount++
    entries.set(weights, kept)
    this.byPeer.set(kept.value.peer, entries)
    return STORED
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
    this.byMember.set(kept.value.member, kept)
    return STORED
  }

  /** The live announcements that `weights` is held (withdrawals left out), by peer id. */
  holdersOf(weights: CID): SignedAnnouncement[] {
    const key = cidKey(weights)
    const holders: SignedAnnouncement[] = []
    for (const entries of this.byPeer.values()) {
      const kept = entries.get(key)
      if (kept && !kept.value.withdrawn && this.isLive(kept)) holders.push(kept.value)
    }
    return holders.sort((a, b) => (a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0))
  }

  /** Every gateway of the live holders of `weights`, each once. */
  gatewaysOf(weights: CID): string[] {
    return [...new Set(this.holdersOf(weights).flatMap((a) => a.gateways))]
  }

  /** Every live announcement, withdrawals included (what sync sends). */
  announcements(): Kept<SignedAnnouncement>[] {
    const live: Kept<SignedAnnouncement>[] = []
    for (const entries of this.byPeer.values())
      for (const kept of entries.values()) if (this.isLive(kept)) live.push(kept)
    return live
  }

  /** The announcement of (peer, weights) held now, live or not yet swept. */
  announcementOf(peer: string, weights: CID): SignedAnnouncement | undefined {
    return this.byPeer.get(peer)?.get(cidKey(weights))?.value
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

  /** Drops the expired announcements; returns how many went. */
  sweep(): number {
    let dropped = 0
    for (const [peer, entries] of this.byPeer) {
      for (const [weights, kept] of entries)
        if (!this.isLive(kept)) {
          entries.delete(weights)
          dropped++
        }
      if (entries.size === 0) this.byPeer.delete(peer)
    }
    this.announcementCount -= dropped
    return dropped
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

  /** Why one more announcement of `peer` does not fit, after expired ones are swept if need be. */
  private roomFor(peer: string): HoldingsRefusal | undefined {
    const full = () =>
      (this.byPeer.get(peer)?.size ?? 0) >= this.limits.maxPerPeer
        ? 'peer-full'
        : this.announcementCount >= this.limits.maxAnnouncements
          ? 'store-full'
          : undefined
    if (full() === undefined) return undefined
    this.sweep()
    return full()
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
