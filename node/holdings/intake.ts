/**
 * Every holdings message, from gossip, sync, the API or this node's own announcer, goes through
 * one intake (docs/adr/0029-holding-announcements.md): it is decoded and its signature checked
 * (announcement.ts, binding.ts), a binding's member must be a member now and an announcement's
 * weights must be named by a manifest this node holds (both checked before the signature, so a
 * stranger cannot make the node verify signatures of messages it would drop anyway), and then
 * the store decides. Nothing unauthenticated is stored. A message whose exact bytes are held
 * already is `duplicate` before its signature is checked: gossip and every sync repeat what the
 * node holds, and the verdict is the same without the check.
 *
 * The verdict follows the records' gossip: a fault no honest peer commits is `reject` (it lowers
 * the sender's score), whatever an honest peer may relay is `ignore`.
 */
import type { CID } from 'multiformats/cid'
import { type Did, decodeStrict } from '../../protocol/index.js'
import { decodeAnnouncement } from './announcement.js'
import { decodeBinding } from './binding.js'
import type { HoldingsStore } from './store.js'
import { FAULTS, HOLDINGS_SCAN_LIMITS, type HoldingsRefusal, refused } from './wire.js'

export type HoldingsVerdict = 'accept' | 'reject' | 'ignore'

export interface TakeResult {
  readonly verdict: HoldingsVerdict
  readonly kind: 'announcement' | 'binding' | 'unknown'
  /** Why it was not stored. */
  readonly reason?: HoldingsRefusal
  readonly message?: string
}

export interface IntakeParts {
  readonly federation: CID
  readonly store: HoldingsStore
  /** Whether `did` is a member in the current state. */
  readonly isMember: (did: Did) => boolean
  /** Whether a manifest held here names `weights`. */
  readonly isKnownWeights: (weights: CID) => boolean
  /** Every refusal, for the metrics. */
  readonly onRefused?: (reason: HoldingsRefusal) => void
  /** Every binding stored, to keep it (persist.ts). */
  readonly onBindingStored?: (member: Did, bytes: Uint8Array) => void
}

export interface Intake {
  /** Checks and stores one message; `only` refuses the other kind as malformed. */
  take(bytes: Uint8Array, only?: 'announcement' | 'binding'): TakeResult
}

export function createIntake(parts: IntakeParts): Intake {
  const refuse = (kind: TakeResult['kind'], reason: HoldingsRefusal, message?: string): TakeResult => {
    parts.onRefused?.(reason)
    return {
      verdict: FAULTS.has(reason) ? 'reject' : 'ignore',
      kind,
      reason,
      ...(message ? { message } : {}),
    }
  }

  const takeAnnouncement = (bytes: Uint8Array): TakeResult => {
    const decoded = decodeAnnouncement(bytes, parts.federation, (a) =>
      !parts.isKnownWeights(a.weights)
        ? refused('unknown-weights', `no manifest held here names ${a.weights}`)
        : parts.store.holdsAnnouncement(a.peer, a.weights, bytes)
          ? refused('duplicate', 'held already')
          : undefined,
    )
    if (!decoded.ok) return refuse('announcement', decoded.reason, decoded.message)
    const offer = parts.store.offerAnnouncement({ value: decoded.value, bytes })
    return offer.stored ? { verdict: 'accept', kind: 'announcement' } : refuse('announcement', offer.reason)
  }

  const takeBinding = (bytes: Uint8Array): TakeResult => {
    const decoded = decodeBinding(bytes, parts.federation, (b) =>
      !parts.isMember(b.member)
        ? refused('not-member', `${b.member} is not a member of the federation`)
        : parts.store.holdsBinding(b.member, bytes)
          ? refused('duplicate', 'held already')
          : undefined,
    )
    if (!decoded.ok) return refuse('binding', decoded.reason, decoded.message)
    const offer = parts.store.offerBinding({ value: decoded.value, bytes })
    if (!offer.stored) return refuse('binding', offer.reason)
    parts.onBindingStored?.(decoded.value.member, bytes)
    return { verdict: 'accept', kind: 'binding' }
  }

  return {
    take(bytes, only) {
      const kind = kindOf(bytes)
      if (only && kind !== only) return refuse(kind, 'malformed', `send one ${only}`)
      if (kind === 'binding') return takeBinding(bytes)
      if (kind === 'announcement') return takeAnnouncement(bytes)
      return refuse('unknown', bytes.length > HOLDINGS_SCAN_LIMITS.maxBytes ? 'oversize' : 'malformed')
    },
  }
}

/** A map with a `member` key is a binding, any other map an announcement (each decoder checks the rest). */
function kindOf(bytes: Uint8Array): TakeResult['kind'] {
  if (bytes.length > HOLDINGS_SCAN_LIMITS.maxBytes) return 'unknown'
  const decoded = decodeStrict(bytes, HOLDINGS_SCAN_LIMITS)
  if (!decoded.ok) return 'unknown'
  const v = decoded.value
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) return 'unknown'
  return 'member' in v ? 'binding' : 'announcement'
}
