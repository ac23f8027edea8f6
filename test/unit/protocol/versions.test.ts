/**
 * Record versions in the fold (SPEC.md §5.1, Versions; docs/adr/0023): a future record is held,
 * reported `version-unsupported` and changes no state root; rules whose `minVersion` is above a
 * proposal's, vote's or seal's `v` make it `version-below-minimum`.
 */
import { describe, expect, it } from 'vitest'
import { canonicalState } from '../../../protocol/canonical.js'
import { stateRoot } from '../../../protocol/checkpoint.js'
import { cidKey } from '../../../protocol/cid.js'
import type { ValidEvaluation } from '../../../protocol/fold/evaluation.js'
import { createFold, derivationsOf } from '../../../protocol/fold/index.js'
import { checkSeal } from '../../../protocol/fold/seals.js'
import { isBelowMinimum, minVersionOf, versionAboveSpoken } from '../../../protocol/fold/versions.js'
import { voteProblem } from '../../../protocol/fold/votes.js'
import type { AnyVerified } from '../../../protocol/record.js'
import { signFutureRecord } from '../../support/future-records.js'
import { DEFAULT_RULES, rulesWith, Simulator } from '../../support/simulator.js'

function federation(name: string): Simulator {
  return new Simulator({
    members: [
      { name: 'alice', roles: ['publisher', 'steward', 'voter'], weight: 1 },
      { name: 'bob', roles: ['steward', 'voter'], weight: 1 },
      { name: 'carol', roles: ['steward', 'voter'], weight: 1 },
    ],
    name,
  })
}

/** A change-rules proposal to `rules`, voted yes by all three and sealed by two stewards: final-passed. */
function decideRules(sim: Simulator, rules = rulesWith({ minVersion: 2 })): AnyVerified[] {
  const proposal = sim.proposal('alice', 10, { closesAt: 2000, action: { type: 'change-rules', rules } })
  sim.add(proposal)
  const votes = ['alice', 'bob', 'carol'].map((v) =>
    sim.vote(v, 20, { proposal: proposal.cid, choice: 'yes' }),
  )
  sim.add(...votes)
  const seals = ['alice', 'bob'].map((s) => sim.seal(s, 2200, { proposal: proposal.cid }))
  sim.add(...seals)
  return [proposal, ...votes, ...seals]
}

describe('a future record in the fold', () => {
  it('is held and reported version-unsupported, and changes no state root', () => {
    const sim = federation('future in the fold')
    const records = decideRules(sim, rulesWith({ votingPeriodMs: 1500 }))
    const without = createFold(sim.genesis)
    for (const r of records) without.add(r)
    const withFuture = createFold(sim.genesis)
    for (const r of records) withFuture.add(r)
    withFuture.state()
    const derivations = derivationsOf(withFuture)
    const future = signFutureRecord(sim, 'bob', 30, { kind: 'delegation', body: { to: sim.did('alice') } })
    expect(withFuture.add(future)).toBe(true)

    expect(withFuture.has(future.cid)).toBe(true)
    expect(withFuture.get(future.cid)).toBe(future)
    expect([...withFuture.records()]).toContain(future)
    expect(withFuture.report(future.cid)).toMatchObject({
      status: 'inapplicable',
      code: 'version-unsupported',
    })
    expect(withFuture.state().recordCount).toBe(without.state().recordCount + 1)
    expect(canonicalState(withFuture.state())).toEqual(canonicalState(without.state()))
    expect(stateRoot(withFuture.state()).equals(stateRoot(without.state()))).toBe(true)
    // Nothing waited for it: nothing was derived again.
    expect(derivationsOf(withFuture)).toBe(derivations)
  })

  it('keeps its report when everything is derived again, and in any order', () => {
    const sim = federation('future report')
    const future = signFutureRecord(sim, 'carol', 5, { v: 7, kind: 'profile', body: { name: 'Carol' } })
    const fold = createFold(sim.genesis)
    fold.add(future)
    for (const r of decideRules(sim)) fold.add(r)
    expect(fold.report(future.cid)).toMatchObject({
      code: 'version-unsupported',
      message: expect.stringMatching(/"profile" record of version 7/),
    })
  })

  it('is a known record of no kind of this version to the records that name it', () => {
    const sim = federation('future named')
    const future = signFutureRecord(sim, 'alice', 5, { kind: 'delegation', body: {} })
    const proposal = sim.proposal('alice', 10, {
      closesAt: 2000,
      basis: future.cid,
      action: { type: 'remove-member', id: sim.did('carol') },
    })
    const fold = createFold(sim.genesis)
    fold.add(proposal)
    expect(fold.report(proposal.cid)).toMatchObject({ status: 'pending', code: 'basis-unknown' })
    fold.add(future)
    expect(fold.report(proposal.cid)).toMatchObject({ status: 'inapplicable', code: 'basis-not-governance' })
  })

  it('of another federation is refused', () => {
    const sim = federation('future home')
    const stranger = federation('future elsewhere')
    const future = signFutureRecord(stranger, 'alice', 5, { kind: 'delegation', body: {} })
    expect(createFold(sim.genesis).add(future)).toBe(false)
  })
})

describe('minVersion', () => {
  it('absent is 1', () => {
    expect(minVersionOf(DEFAULT_RULES)).toBe(1)
    expect(minVersionOf(rulesWith({ minVersion: 3 }))).toBe(3)
  })

  it('raised to 2 by a decision makes later proposals of version 1 void, version-below-minimum', () => {
    const sim = federation('raise minVersion')
    decideRules(sim)
    expect(sim.fold.headState().rules.minVersion).toBe(2)
    expect(versionAboveSpoken(sim.fold.headState())).toBe(2)
    const later = sim.proposal('bob', 3000, {
      closesAt: 5000,
      action: { type: 'remove-member', id: sim.did('carol') },
    })
    expect(later.record.body.basis.equals(sim.fold.state().head)).toBe(true)
    sim.add(later)
    expect(sim.fold.report(later.cid)).toMatchObject({
      status: 'inapplicable',
      code: 'version-below-minimum',
    })
    expect(sim.fold.state().proposals.get(later.key)?.phase).toBe('void')
    // Proposals on the genesis, whose rules demand nothing, are untouched by the later rules.
    const onGenesis = sim.proposal('bob', 3000, {
      closesAt: 5000,
      basis: sim.federation,
      action: { type: 'remove-member', id: sim.did('carol') },
    })
    sim.add(onGenesis)
    expect(sim.fold.report(onGenesis.cid)?.status).not.toBe('inapplicable')
  })

  it('makes a vote or seal below it inapplicable, before any other check', () => {
    const sim = federation('vote and seal below minVersion')
    const proposal = sim.proposal('alice', 10, {
      closesAt: 2000,
      action: { type: 'remove-member', id: sim.did('carol') },
    })
    sim.add(proposal)
    const vote = sim.vote('alice', 20, { proposal: proposal.cid, choice: 'yes' })
    sim.add(vote)
    const seal = sim.seal('bob', 2200, { proposal: proposal.cid })
    sim.add(seal)
    const electorate = sim.fold.electorate(proposal.cid)!
    const valid: ValidEvaluation = {
      validity: 'valid',
      electorate,
      eligible: 3,
      rule: electorate.rules.actions['*']!,
    }
    expect(voteProblem(vote, proposal, valid)).toBeUndefined()
    expect(checkSeal(proposal, valid, seal, sim.fold as never).report.status).toBe('applied')
    // The same electorate with rules that demand version 2 (a fold of a later version reads it so).
    const demanding: ValidEvaluation = {
      ...valid,
      electorate: { ...electorate, rules: rulesWith({ minVersion: 2 }) },
    }
    expect(isBelowMinimum(vote, demanding.electorate)).toBe(true)
    expect(voteProblem(vote, proposal, demanding)).toMatchObject({ code: 'version-below-minimum' })
    expect(checkSeal(proposal, demanding, seal, sim.fold as never).report).toMatchObject({
      code: 'version-below-minimum',
    })
    expect(sim.fold.report(cidKey(vote.cid))?.status).toBe('applied')
  })
})
