/**
 * Which well-formed records a node takes from the network (SPEC.md §10, ingest limits): every
 * reason `admit` gives for ignoring one, and each cap at its limit and one past it. Pure: the
 * fold and the tally are plain values here, and `now` is an argument.
 */
import { describe, expect, it } from 'vitest'
import {
  type AnyVerified,
  admit,
  createAdmissionTally,
  MAX_VOTES_PER_VOTER_AND_PROPOSAL,
} from '../../../protocol/index.js'
import { rulesWith, Simulator } from '../../support/simulator.js'

const MAX_OPEN = 2

function federation() {
  const sim = new Simulator({
    members: [
      { name: 'a', roles: ['publisher', 'steward', 'voter'], weight: 1 },
      { name: 'b', roles: ['steward', 'voter'], weight: 1 },
      { name: 'v', roles: ['voter'], weight: 1 },
    ],
    base: 1_800_000_000_000,
    name: 'admission',
    rules: rulesWith({ maxOpenProposalsPerAuthor: MAX_OPEN }),
  })
  const tally = createAdmissionTally()
  const state = { fold: sim.fold, tally }
  /** Held as a store holds a record: in the fold and in the tally. */
  const hold = (...records: AnyVerified[]) => {
    for (const r of records) {
      sim.add(r)
      tally.add(r)
    }
  }
  const manifest = sim.manifest('a', 0, { id: 'm', name: 'tiny', version: '1.0.0' })
  /** A ratification by `by`, closing `closesAt` ms after the simulation's base. */
  const proposal = (by: string, at: number, closesAt = 3_600_000) =>
    sim.proposal(by, at, {
      closesAt,
      action: { type: 'ratify-model', manifest: manifest.cid },
      basis: sim.federation,
      title: `proposal ${at}`,
    })
  return { sim, tally, state, hold, manifest, proposal, now: sim.base + 10_000 }
}

describe('admit', () => {
  it('takes a record by a member that is new and within the limits', () => {
    const { state, manifest, now } = federation()
    expect(admit(manifest, state, now)).toEqual({ admitted: true })
  })

  it('ignores a record already held as a duplicate', () => {
    const { state, hold, manifest, now } = federation()
    hold(manifest)
    expect(admit(manifest, state, now)).toEqual({
      admitted: false,
      code: 'duplicate',
      message: 'this record is already held',
    })
  })

  it('ignores the genesis as a duplicate: it is the federation, held from the start', () => {
    const { sim, state, now } = federation()
    expect(admit(sim.genesis, state, now)).toMatchObject({ admitted: false, code: 'duplicate' })
  })

  it('ignores an author who is a member in no known state', () => {
    const { sim, state, manifest, now } = federation()
    expect(admit(sim.vote('stranger', 5, { proposal: manifest.cid, choice: 'yes' }), state, now)).toEqual({
      admitted: false,
      code: 'unknown-author',
      message: 'the author is a member in no known state',
    })
  })

  it('asks about duplicates first: a held record is a duplicate even past a cap', () => {
    const { sim, state, hold, proposal, now } = federation()
    const p = proposal('a', 100)
    hold(p)
    const votes = Array.from({ length: MAX_VOTES_PER_VOTER_AND_PROPOSAL }, (_, i) =>
      sim.vote('v', 200 + i, { proposal: p.cid, choice: 'yes' }),
    )
    hold(...votes)
    expect(admit(votes[0]!, state, now)).toMatchObject({ code: 'duplicate' })
  })
})

describe(`at most ${MAX_VOTES_PER_VOTER_AND_PROPOSAL} votes per voter and proposal`, () => {
  it('takes the last vote under the cap and ignores one more', () => {
    const { sim, state, hold, proposal, now } = federation()
    const p = proposal('a', 100)
    hold(p)
    for (let i = 0; i < MAX_VOTES_PER_VOTER_AND_PROPOSAL; i++) {
      const vote = sim.vote('v', 200 + i, { proposal: p.cid, choice: i % 2 ? 'yes' : 'no' })
      expect(admit(vote, state, now)).toEqual({ admitted: true })
      hold(vote)
    }
    const over = sim.vote('v', 300, { proposal: p.cid, choice: 'yes' })
    expect(admit(over, state, now)).toEqual({
      admitted: false,
      code: 'ingest-limit',
      message: `at most ${MAX_VOTES_PER_VOTER_AND_PROPOSAL} votes per voter and proposal are taken`,
    })
  })

  it('counts per voter and per proposal: another voter, or the voter on another proposal, is not limited', () => {
    const { sim, state, hold, proposal, now } = federation()
    const p = proposal('a', 100)
    const q = proposal('b', 101)
    hold(p, q)
    for (let i = 0; i < MAX_VOTES_PER_VOTER_AND_PROPOSAL; i++)
      hold(sim.vote('v', 200 + i, { proposal: p.cid, choice: 'yes' }))
    expect(admit(sim.vote('v', 300, { proposal: p.cid, choice: 'no' }), state, now)).toMatchObject({
      code: 'ingest-limit',
    })
    expect(admit(sim.vote('b', 300, { proposal: p.cid, choice: 'yes' }), state, now)).toEqual({
      admitted: true,
    })
    expect(admit(sim.vote('v', 300, { proposal: q.cid, choice: 'yes' }), state, now)).toEqual({
      admitted: true,
    })
  })

  it('counts every vote held, whatever the fold made of it (a vote on a proposal not held)', () => {
    const { sim, state, hold, manifest, now } = federation()
    // The manifest is no proposal: each vote on it is inapplicable, and still counts here.
    for (let i = 0; i < MAX_VOTES_PER_VOTER_AND_PROPOSAL; i++)
      hold(sim.vote('v', 200 + i, { proposal: manifest.cid, choice: 'yes' }))
    expect(admit(sim.vote('v', 300, { proposal: manifest.cid, choice: 'yes' }), state, now)).toMatchObject({
      code: 'ingest-limit',
    })
  })
})

describe('at most maxOpenProposalsPerAuthor open proposals per author', () => {
  it('takes the last open proposal under the cap and ignores one more, naming the limit', () => {
    const { state, hold, proposal, now } = federation()
    for (let i = 0; i < MAX_OPEN; i++) {
      const p = proposal('a', 100 + i)
      expect(admit(p, state, now)).toEqual({ admitted: true })
      hold(p)
    }
    expect(admit(proposal('a', 200), state, now)).toEqual({
      admitted: false,
      code: 'ingest-limit',
      message: `at most ${MAX_OPEN} open proposals per author are taken`,
    })
  })

  it('always takes a proposal closed by now (closesAt ≤ now), even at the cap', () => {
    const { sim, state, hold, proposal, now } = federation()
    hold(proposal('a', 100), proposal('a', 101))
    expect(admit(proposal('a', 1, 2_000), state, now)).toEqual({ admitted: true })
    expect(admit(proposal('a', 2, now - sim.base), state, now)).toEqual({ admitted: true })
    expect(admit(proposal('a', 3, now - sim.base + 1), state, now)).toMatchObject({ code: 'ingest-limit' })
  })

  it('counts only proposals still open at now: once they close, the author may propose again', () => {
    const { sim, state, hold, proposal, now } = federation()
    hold(proposal('a', 100, 20_000), proposal('a', 101, 20_000))
    const next = proposal('a', 200)
    expect(admit(next, state, now)).toMatchObject({ code: 'ingest-limit' })
    // The same record and the same holdings, later: the two have closed.
    expect(admit(next, state, sim.base + 20_000)).toEqual({ admitted: true })
  })

  it('counts per author', () => {
    const { state, hold, proposal, now } = federation()
    hold(proposal('a', 100), proposal('a', 101))
    expect(admit(proposal('b', 102), state, now)).toEqual({ admitted: true })
  })
})

describe('createAdmissionTally', () => {
  it('counts votes by proposal and voter, and open proposals by author at a time', () => {
    const { sim, tally, proposal } = federation()
    const p = proposal('a', 100, 20_000)
    const q = proposal('a', 101, 40_000)
    tally.add(p)
    tally.add(q)
    tally.add(sim.vote('v', 200, { proposal: p.cid, choice: 'yes' }))
    tally.add(sim.vote('v', 201, { proposal: p.cid, choice: 'no' }))
    expect(tally.votesBy(p.key, sim.did('v'))).toBe(2)
    expect(tally.votesBy(q.key, sim.did('v'))).toBe(0)
    expect(tally.votesBy(p.key, sim.did('b'))).toBe(0)
    expect(tally.openProposalsBy(sim.did('a'), sim.base + 10_000)).toBe(2)
    expect(tally.openProposalsBy(sim.did('a'), sim.base + 20_000)).toBe(1)
    expect(tally.openProposalsBy(sim.did('a'), sim.base + 40_000)).toBe(0)
    expect(tally.openProposalsBy(sim.did('b'), sim.base)).toBe(0)
  })
})
