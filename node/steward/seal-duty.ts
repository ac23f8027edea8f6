/**
 * A steward's duty to seal (SPEC.md §10, steward duties; ADR 0016): a proposal is due from
 * `closesAt + sealGraceMs` to `closesAt + sealDeadlineMs`; due ones are sealed in `(closesAt,
 * CID)` order (governance decisions on one basis), exactly one seal per proposal, durable before
 * it is published. Counted are only the votes and attestations received here before the clock
 * passed `closesAt + sealGraceMs/2`; a proposal first seen after `at + sealGraceMs` (backdated)
 * is never sealed. Ratifications follow ratification.ts.
 */
import type { CID } from 'multiformats/cid'
import {
  type AnyVerified,
  cidKey,
  compareCids,
  type FederationState,
  hasRole,
  type ProposalView,
  type Rules,
  type Signer,
  sealContent,
} from '../../protocol/index.js'
import type { Logger } from '../log.js'
import type { RecordStore } from '../store.js'
import type { OwnRecords } from './own-records.js'
import type { Ratification } from './ratification.js'
import { signAndKeep } from './sign-and-keep.js'

/** Phases of a proposal that can be sealed: valid ones (final or not). */
const UNSEALABLE = new Set(['void', 'pending'])

/** A valid proposal: one with the rules of its electorate. */
export type Sealable = ProposalView & { readonly rules: Rules }

/** The proposals due for sealing at `now` that are not handled yet, in the order they are sealed. */
export function dueForSealing(state: FederationState, handled: ReadonlySet<string>, now: number): Sealable[] {
  const due: Sealable[] = []
  for (const p of state.proposals.values()) {
    if (handled.has(cidKey(p.cid)) || UNSEALABLE.has(p.phase) || p.rules === undefined) continue
    if (now >= p.closesAt + p.rules.sealGraceMs && now <= p.closesAt + p.rules.sealDeadlineMs)
      due.push(p as Sealable)
  }
  return due.sort((a, b) => a.closesAt - b.closesAt || compareCids(a.cid, b.cid))
}

/** Seals one due proposal at `now`, or decides not to (yet). */
export type SealDuty = (p: Sealable, now: number) => Promise<void>

export function createSealDuty(parts: {
  store: RecordStore
  signer: Signer
  own: OwnRecords
  ratification: Ratification
  log: Logger
  publish: (bytes: Uint8Array) => Promise<unknown>
}): SealDuty {
  const { store, signer, own, ratification, log } = parts
  const fold = store.fold
  /** Ratifications deferred, by key: the deferral is logged once. */
  const deferred = new Set<string>()
  const witnessedBy = (cutoff: number) => (r: AnyVerified) => (store.witnessedAt(r.key) ?? Infinity) <= cutoff

  /** Whether this steward may seal `p` at all; if not, it never will (handled). */
  const maySeal = (p: Sealable): boolean => {
    const electorate = fold.electorate(p.cid)
    if (!electorate || !hasRole(electorate, signer.did, 'steward')) return false
    const seen = store.witnessedAt(cidKey(p.cid))
    if (seen !== undefined && seen <= p.at + p.rules.sealGraceMs) return true
    log.warn('seal-refused', {
      proposal: p.cid.toString(),
      reason: seen === undefined ? 'never witnessed here' : 'first seen after at + sealGraceMs (backdated)',
    })
    return false
  }

  /** For a ratification, the `weightsVerified` to seal with; undefined when not to seal now. */
  const weightsFor = async (
    p: Sealable,
    counted: { votes: CID[]; attestations: CID[] },
    now: number,
  ): Promise<boolean | undefined> => {
    const key = cidKey(p.cid)
    const next = await ratification(p, counted, now)
    if (next.step === 'refuse') {
      own.handled.add(key)
      log.info('seal-refused', { proposal: p.cid.toString(), reason: `${next.version} is already ratified` })
    } else if (next.step === 'defer' && !deferred.has(key)) {
      deferred.add(key)
      log.info('seal-deferred', {
        proposal: p.cid.toString(),
        reason: `this steward sealed another ratification of ${next.version} (${next.rival}), which may still pass`,
      })
    }
    return next.step === 'seal' ? next.weightsVerified : undefined
  }

  return async (p, now) => {
    const key = cidKey(p.cid)
    if (!maySeal(p)) {
      own.handled.add(key)
      return
    }
    const cutoff = p.closesAt + Math.floor(p.rules.sealGraceMs / 2)
    const counted = {
      votes: fold.countedVotes(p.cid, witnessedBy(cutoff)),
      attestations: fold.countedAttestations(p.cid, witnessedBy(cutoff)),
    }
    const ratifying = p.action.type === 'ratify-model'
    const weightsVerified = ratifying ? await weightsFor(p, counted, now) : undefined
    if (ratifying && weightsVerified === undefined) return
    const content = sealContent(fold, p.cid, {
      ...counted,
      ...(weightsVerified !== undefined ? { weightsVerified } : {}),
    })
    if (!content) return
    // Durable first: a seal is never published (nor signed again) unless it is in our log.
    const kept = await signAndKeep(
      store,
      signer,
      { kind: 'seal', federation: fold.federation, at: now, body: content.body },
      { lists: content.lists },
      content.blocks,
    )
    if (!kept.ok) {
      log.error('seal-not-taken', { proposal: p.cid.toString(), code: kept.code, message: kept.message })
      return
    }
    own.handled.add(key)
    if (content.body.outcome === 'passed' && weightsVerified === true) own.pledge(p.cid)
    log.info('sealed', {
      proposal: p.cid.toString(),
      outcome: content.body.outcome,
      votes: counted.votes.length,
      ...(weightsVerified !== undefined ? { weightsVerified } : {}),
    })
    await parts.publish(kept.record.bytes).catch(() => {})
  }
}
