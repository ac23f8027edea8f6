/**
 * Named cases of the fold (SPEC.md §8): federation binding, exact
 * tallies beyond 2^53, seal validity, CID tie-breaks, pending records,
 * key replacement, conflicted models, display statuses at their boundaries
 * and well-formedness of admissions.
 *
 * Times are ms after `sim.base`. Records are signed through node:crypto
 * (`nativeSigner`, byte-identical to noble).
 */
import { describe, expect, it } from 'vitest'
import { nativeSigner } from '../../../../node/ed25519-native.js'
import {
  type Action,
  type ActionRule,
  type AnyVerified,
  apply,
  buildList,
  type Choice,
  type CID,
  canonicalState,
  cidKey,
  compareCids,
  createFold,
  derivationsOf,
  type FederationState,
  type Fold,
  fold,
  LIMITS,
  outcomeOf,
  type ProposalView,
  proposalStatus,
  quorumMet,
  type Rules,
  signRecord,
  thresholdMet,
  type Verified,
} from '../../../../protocol/index.js'
import { DEFAULT_RULES, type SimMember, Simulator } from '../../../support/simulator.js'

const BASIC: readonly SimMember[] = [
  { name: 'a', roles: ['publisher', 'steward', 'voter'], weight: 1 },
  { name: 'b', roles: ['auditor', 'steward', 'voter'], weight: 1 },
  { name: 'c', roles: ['steward', 'voter'], weight: 1 },
  { name: 'd', roles: ['voter'], weight: 1 },
  { name: 'e', roles: ['voter'], weight: 1 },
]

function simulator(
  options: { members?: readonly SimMember[]; rules?: Rules; name?: string } = {},
): Simulator {
  return new Simulator({
    members: options.members ?? BASIC,
    ...(options.rules ? { rules: options.rules } : {}),
    ...(options.name ? { name: options.name } : {}),
    signer: nativeSigner,
  })
}

function view(state: FederationState, cid: CID): ProposalView {
  const v = state.proposals.get(cidKey(cid))
  if (!v) throw new Error(`proposal ${cid} is not in the state`)
  return v
}

const phaseOf = (f: Fold, cid: CID) => view(f.state(), cid).phase

/** Makes a proposal at `at` closing at `at + 1000` and adds it. */
function propose(sim: Simulator, by: string, at: number, action: Action, basis?: CID): Verified<'proposal'> {
  const p = sim.proposal(by, at, { closesAt: at + 1000, action, ...(basis ? { basis } : {}) })
  sim.add(p)
  return p
}

/** Votes `choice` by each voter inside the window, then seals by `sealers` (what the fold counts); all added. */
function decide(
  sim: Simulator,
  p: Verified<'proposal'>,
  voters: readonly string[],
  sealers: readonly string[] = ['a', 'b'],
  choice: Choice = 'yes',
): { votes: Verified<'vote'>[]; seals: Verified<'seal'>[] } {
  const at = p.record.at - sim.base
  const closesAt = p.record.body.closesAt - sim.base
  const votes = voters.map((v, i) => sim.vote(v, at + 10 + i, { proposal: p.cid, choice }))
  sim.add(...votes)
  const seals = sealers.map((s, i) =>
    sim.seal(s, closesAt + DEFAULT_RULES.sealGraceMs + i, { proposal: p.cid }),
  )
  sim.add(...seals)
  return { votes, seals }
}

function member(sim: Simulator, name: string, roles: ('auditor' | 'publisher' | 'steward' | 'voter')[]) {
  return { id: sim.did(name), roles: [...roles].sort(), weight: 1 }
}

// ---------------------------------------------------------------- federation binding

describe('federation binding', () => {
  it('refuses a record of another federation and leaves the state unchanged', () => {
    const sim = simulator()
    const other = simulator({ name: 'another federation' })
    expect(other.federation.equals(sim.federation)).toBe(false)
    const p = propose(sim, 'a', 0, { type: 'admit-member', member: member(sim, 'x', ['voter']) })
    sim.add(sim.vote('d', 10, { proposal: p.cid, choice: 'yes' }))
    const before = sim.fold.state()
    const bytes = canonicalState(before)

    // Same members, same keys, same proposal CID named: only the federation differs.
    const foreign = other.vote('e', 20, { proposal: p.cid, choice: 'no' })
    expect(sim.fold.add(foreign)).toBe(false)
    expect(sim.fold.has(foreign.cid)).toBe(false)
    expect(sim.fold.report(foreign.cid)).toBeUndefined()
    expect(sim.fold.add(other.genesis)).toBe(false)
    const after = sim.fold.state()
    expect(canonicalState(after)).toEqual(bytes)
    expect(after.recordCount).toBe(before.recordCount)
    expect(view(after, p.cid).tally).toEqual({ yes: 1, no: 0, abstain: 0 })
    expect(sim.fold.countedVotes(p.cid)).toHaveLength(1)
    // The batch entry point ignores it the same way.
    expect(canonicalState(fold(sim.genesis, [p, ...sim.fold.records(), foreign]))).toEqual(bytes)
  })
})

// ---------------------------------------------------------------- exact tallies

describe('tallies beyond 2^53 are exact', () => {
  const TWO32 = 2 ** 32
  // Threshold and quorum fractions with parts near LIMITS.maxFractionPart.
  const nearOne: readonly [number, number] = [LIMITS.maxFractionPart - 1, LIMITS.maxFractionPart]
  expect(LIMITS.maxFractionPart).toBe(TWO32)
  expect(LIMITS.maxWeight).toBe(TWO32)

  /** The comparisons as doubles: what an implementation without BigInt would compute. */
  const floatThreshold = (yes: number, no: number, [tn, td]: readonly [number, number]) =>
    yes > 0 && yes * td >= tn * (yes + no)
  const floatQuorum = (cast: number, eligible: number, [qn, qd]: readonly [number, number]) =>
    cast * qd >= qn * eligible

  it('thresholdMet, quorumMet and outcomeOf decide where doubles round', () => {
    // yes = 2^32 − 2, no = 1: exactly, yes·td = 2^64 − 2^33 < tn·(yes + no) = 2^64 − 2^33 + 1.
    const yes = TWO32 - 2
    const no = 1
    expect(yes * nearOne[1]).toBeGreaterThan(Number.MAX_SAFE_INTEGER)
    expect(BigInt(yes) * BigInt(nearOne[1]) < BigInt(nearOne[0]) * BigInt(yes + no)).toBe(true)
    expect(floatThreshold(yes, no, nearOne)).toBe(true) // the rounded product ties: wrong
    const rule: ActionRule = { quorum: [1, 2], threshold: nearOne, requiredAttestations: [] }
    const tally = { yes, no, abstain: 0 }
    expect(thresholdMet(tally, rule)).toBe(false)
    expect(outcomeOf(tally, TWO32, rule, undefined)).toBe('rejected')
    // One more yes weight reaches the threshold exactly.
    expect(thresholdMet({ yes: TWO32 - 1, no: 1, abstain: 0 }, rule)).toBe(true)
    expect(outcomeOf({ yes: TWO32 - 1, no: 1, abstain: 0 }, TWO32 + 1, rule, undefined)).toBe('passed')

    // Quorum [2^32 − 1, 2^32] with eligible 2^32 − 1 and 2^32 − 2 cast: exactly not met.
    const q: ActionRule = { quorum: nearOne, threshold: [1, 2], requiredAttestations: [] }
    expect(floatQuorum(TWO32 - 2, TWO32 - 1, nearOne)).toBe(true)
    expect(quorumMet({ yes: TWO32 - 2, no: 0, abstain: 0 }, TWO32 - 1, q)).toBe(false)
    expect(outcomeOf({ yes: TWO32 - 2, no: 0, abstain: 0 }, TWO32 - 1, q, undefined)).toBe('no-quorum')
    expect(quorumMet({ yes: TWO32 - 1, no: 0, abstain: 0 }, TWO32 - 1, q)).toBe(true)
  })

  it('a fold with weights near 2^32 decides the threshold exactly, and refuses a seal with the rounded verdict', () => {
    const rules: Rules = {
      ...DEFAULT_RULES,
      actions: { '*': { quorum: [1, 2], threshold: nearOne, requiredAttestations: [] } },
    }
    const members: SimMember[] = [
      { name: 'a', roles: ['steward', 'voter'], weight: TWO32 - 2 },
      { name: 'b', roles: ['steward', 'voter'], weight: 1 },
      { name: 'c', roles: ['steward', 'voter'], weight: 1 },
    ]
    const sim = simulator({ members, rules })
    const p = propose(sim, 'a', 0, { type: 'admit-member', member: member(sim, 'x', ['voter']) })
    sim.add(sim.vote('a', 10, { proposal: p.cid, choice: 'yes' }))
    sim.add(sim.vote('b', 20, { proposal: p.cid, choice: 'no' }))
    const tally = view(sim.fold.state(), p.cid).tally
    expect(tally).toEqual({ yes: TWO32 - 2, no: 1, abstain: 0 })
    expect(floatThreshold(tally.yes, tally.no, nearOne)).toBe(true)

    // A seal claiming what doubles would say ("passed") for the true tally.
    const votes = sim.fold.countedVotes(p.cid)
    const list = buildList(votes)
    const empty = buildList([])
    const rounded = signRecord(
      {
        kind: 'seal',
        federation: sim.federation,
        at: p.record.body.closesAt + 100,
        body: {
          proposal: p.cid,
          votes: { root: list.root, count: list.count },
          attestations: { root: empty.root, count: 0 },
          tally,
          outcome: 'passed',
        },
      },
      sim.signer('c'),
      { lists: { votes, attestations: [] } },
    )
    sim.add(rounded)
    expect(sim.fold.report(rounded.cid)).toMatchObject({
      status: 'inapplicable',
      code: 'seal-outcome-mismatch',
    })

    // Honest seals (exact arithmetic): rejected, and final so.
    const honest = ['a', 'b'].map((s, i) => sim.seal(s, 1100 + i, { proposal: p.cid }))
    expect(honest.map((s) => s.record.body.outcome)).toEqual(['rejected', 'rejected'])
    sim.add(...honest)
    const state = sim.fold.state()
    expect(view(state, p.cid).phase).toBe('final-rejected')
    expect(view(state, p.cid).tally).toEqual(tally)
    expect(state.height).toBe(0)

    // With c's yes too (yes = 2^32 − 1, no = 1) the threshold is met exactly: passed.
    const q = propose(sim, 'a', 2000, { type: 'admit-member', member: member(sim, 'y', ['voter']) })
    sim.add(sim.vote('a', 2010, { proposal: q.cid, choice: 'yes' }))
    sim.add(sim.vote('b', 2020, { proposal: q.cid, choice: 'no' }))
    sim.add(sim.vote('c', 2030, { proposal: q.cid, choice: 'yes' }))
    sim.add(...['b', 'c'].map((s, i) => sim.seal(s, 3100 + i, { proposal: q.cid })))
    const after = sim.fold.state()
    expect(view(after, q.cid).phase).toBe('final-passed')
    expect(view(after, q.cid).tally).toEqual({ yes: TWO32 - 1, no: 1, abstain: 0 })
    expect(after.height).toBe(1)
    expect(after.members.some((m) => m.id === sim.did('y'))).toBe(true)
  })

  it('a fold decides the quorum exactly where doubles round', () => {
    const rules: Rules = {
      ...DEFAULT_RULES,
      actions: { '*': { quorum: nearOne, threshold: [1, 2], requiredAttestations: [] } },
    }
    // Eligible weight 2^32 − 1 (c is not a voter); a alone casts 2^32 − 2.
    const members: SimMember[] = [
      { name: 'a', roles: ['steward', 'voter'], weight: TWO32 - 2 },
      { name: 'b', roles: ['steward', 'voter'], weight: 1 },
      { name: 'c', roles: ['steward'], weight: 1 },
    ]
    const sim = simulator({ members, rules })
    const p = propose(sim, 'a', 0, { type: 'admit-member', member: member(sim, 'x', ['voter']) })
    const { seals } = decide(sim, p, ['a'], ['a', 'c'])
    expect(view(sim.fold.state(), p.cid).eligible).toBe(TWO32 - 1)
    expect(floatQuorum(TWO32 - 2, TWO32 - 1, nearOne)).toBe(true)
    expect(seals.map((s) => s.record.body.outcome)).toEqual(['no-quorum', 'no-quorum'])
    expect(phaseOf(sim.fold, p.cid)).toBe('final-no-quorum')
  })
})

// ---------------------------------------------------------------- seals

describe('seals', () => {
  it('a seal naming a vote of another proposal is inapplicable (seal-vote-invalid) and finalizes nothing', () => {
    const sim = simulator()
    const p = propose(sim, 'a', 0, { type: 'admit-member', member: member(sim, 'x', ['voter']) })
    const q = propose(sim, 'b', 0, { type: 'admit-member', member: member(sim, 'y', ['voter']) })
    const mine = ['a', 'b', 'c'].map((v, i) => sim.vote(v, 10 + i, { proposal: p.cid, choice: 'yes' }))
    const theirs = sim.vote('d', 20, { proposal: q.cid, choice: 'yes' })
    sim.add(...mine, theirs)
    const honest = sim.seal('a', 1100, { proposal: p.cid })
    const mixed = sim.seal('b', 1100, {
      proposal: p.cid,
      votes: [...mine.map((v) => v.cid), theirs.cid].sort(compareCids),
    })
    sim.add(honest, mixed)
    expect(sim.fold.report(honest.cid)).toEqual({ status: 'applied' })
    expect(sim.fold.report(mixed.cid)).toMatchObject({ status: 'inapplicable', code: 'seal-vote-invalid' })
    expect(phaseOf(sim.fold, p.cid)).toBe('undecided')
    expect(proposalStatus(view(sim.fold.state(), p.cid), p.record.body.closesAt + 200)).toBe(
      'closed-awaiting-seals',
    )
    // A second steward naming only p's votes makes it final.
    sim.add(sim.seal('c', 1101, { proposal: p.cid }))
    expect(phaseOf(sim.fold, p.cid)).toBe('final-passed')
  })

  it('a seal naming a vote not yet known is pending (record-unknown) and counts once the vote arrives', () => {
    const sim = simulator()
    const p = propose(sim, 'a', 0, { type: 'admit-member', member: member(sim, 'x', ['voter']) })
    const { votes, seals } = decide(sim, p, ['a', 'b', 'c'])
    const late = votes[2]!
    const f = createFold(sim.genesis)
    for (const r of [p, votes[0]!, votes[1]!, ...seals]) f.add(r)
    for (const s of seals)
      expect(f.report(s.cid)).toMatchObject({ status: 'pending', code: 'record-unknown' })
    expect(phaseOf(f, p.cid)).toBe('undecided')
    expect(f.state().height).toBe(0)
    // The state was read, so the vote takes the incremental path: the waiting seals must notice it.
    const state = apply(f, late)
    for (const s of seals) expect(f.report(s.cid)).toEqual({ status: 'applied' })
    expect(view(state, p.cid).phase).toBe('final-passed')
    expect(state.height).toBe(1)
    expect(canonicalState(state)).toEqual(canonicalState(fold(sim.genesis, [late, ...seals, p, ...votes])))
  })
})

describe('seals that cannot count cost their own check only', () => {
  it('a stream of them changes nothing and re-derives nothing; a seal that counts re-derives once', () => {
    const sim = simulator()
    const p = propose(sim, 'a', 0, { type: 'admit-member', member: member(sim, 'x', ['voter']) })
    const votes = ['a', 'b', 'c'].map((v, i) => sim.vote(v, 10 + i, { proposal: p.cid, choice: 'yes' }))
    sim.add(...votes)
    const elsewhere = sim.proposal('d', 5, {
      closesAt: 1005,
      action: { type: 'remove-member', id: sim.did('e') },
    })
    const unsent = sim.vote('d', 20, { proposal: p.cid, choice: 'yes' })
    const before = canonicalState(sim.fold.state())
    const derived = derivationsOf(sim.fold)
    const stream: [Verified<'seal'>, string][] = []
    for (let k = 0; k < 10; k++) {
      const at = 1100 + k
      stream.push(
        [sim.seal('d', at, { proposal: p.cid }), 'seal-not-steward'],
        [sim.seal('a', 500 + k, { proposal: p.cid }), 'seal-window'],
        [
          sim.seal('b', at, { proposal: p.cid, forgeTally: { yes: 0, no: 3 + k, abstain: 0 } }),
          'seal-tally-mismatch',
        ],
        [sim.seal('c', at, { proposal: elsewhere.cid }), 'proposal-unknown'],
        [
          sim.seal('c', at, {
            proposal: p.cid,
            votes: [...votes, unsent].map((v) => v.cid).sort(compareCids),
          }),
          'record-unknown',
        ],
      )
    }
    for (const [seal, code] of stream) {
      sim.add(seal)
      expect(sim.fold.report(seal.cid)).toMatchObject({ code })
      expect(canonicalState(sim.fold.state())).toEqual(before)
      expect(derivationsOf(sim.fold)).toBe(derived)
    }
    const batch = createFoldWith(sim, [p, ...votes, ...stream.map(([seal]) => seal)])
    expect(canonicalState(batch.state())).toEqual(before)
    for (const [seal] of stream) expect(batch.report(seal.cid)).toEqual(sim.fold.report(seal.cid))
    // Two stewards' seals that count: each may change the decision, so each derives again.
    sim.add(sim.seal('a', 1100, { proposal: p.cid }))
    expect(phaseOf(sim.fold, p.cid)).toBe('undecided')
    sim.add(sim.seal('b', 1101, { proposal: p.cid }))
    expect(phaseOf(sim.fold, p.cid)).toBe('final-passed')
    expect(derivationsOf(sim.fold)).toBe(derived + 2)
  })
})

// ---------------------------------------------------------------- votes

describe('votes', () => {
  it('of two votes of one voter with equal at, the one with the larger CID counts, in any order', () => {
    const sim = simulator()
    const p = propose(sim, 'a', 0, { type: 'admit-member', member: member(sim, 'x', ['voter']) })
    const yes = sim.vote('d', 500, { proposal: p.cid, choice: 'yes' })
    const no = sim.vote('d', 500, { proposal: p.cid, choice: 'no' })
    const winner = compareCids(yes.cid, no.cid) > 0 ? yes : no
    const expected = winner === yes ? { yes: 1, no: 0, abstain: 0 } : { yes: 0, no: 1, abstain: 0 }
    for (const order of [
      [p, yes, no],
      [p, no, yes],
      [yes, no, p],
      [no, p, yes],
    ]) {
      // Read the state after every record, so votes also take the incremental path.
      const f = createFold(sim.genesis)
      let state = f.state()
      for (const r of order) state = apply(f, r as AnyVerified)
      expect(f.countedVotes(p.cid)).toEqual([winner.cid])
      expect(view(state, p.cid).tally).toEqual(expected)
      // Both votes are valid for p; only the latest counts.
      expect(f.report(yes.cid)).toEqual({ status: 'applied' })
      expect(f.report(no.cid)).toEqual({ status: 'applied' })
      expect(canonicalState(state)).toEqual(canonicalState(fold(sim.genesis, order as AnyVerified[])))
    }
  })

  it('a vote arriving before its proposal is pending (proposal-unknown), then counted', () => {
    const sim = simulator()
    const p = sim.proposal('a', 0, { closesAt: 1000, action: { type: 'remove-member', id: sim.did('e') } })
    const v = sim.vote('d', 10, { proposal: p.cid, choice: 'abstain' })
    const f = createFold(sim.genesis)
    f.add(v)
    expect(f.report(v.cid)).toMatchObject({ status: 'pending', code: 'proposal-unknown' })
    expect(f.countedVotes(p.cid)).toEqual([])
    const state = apply(f, p)
    expect(f.report(v.cid)).toEqual({ status: 'applied' })
    expect(f.countedVotes(p.cid)).toEqual([v.cid])
    expect(view(state, p.cid).tally).toEqual({ yes: 0, no: 0, abstain: 1 })
  })
})

// ---------------------------------------------------------------- keys

describe('replace-key', () => {
  it('the new key votes on proposals based on the decision, the old key only on those based before it', () => {
    const sim = simulator()
    const g = propose(sim, 'a', 0, { type: 'replace-key', id: sim.did('d'), newId: sim.did('x') })
    decide(sim, g, ['a', 'b', 'c'])
    expect(sim.fold.state().head.equals(g.cid)).toBe(true)

    // On the decision: x is the voter, d is no longer one.
    const onG = propose(sim, 'a', 2000, { type: 'remove-member', id: sim.did('e') }, g.cid)
    const xOnG = sim.vote('x', 2010, { proposal: onG.cid, choice: 'yes' })
    const dOnG = sim.vote('d', 2010, { proposal: onG.cid, choice: 'yes' })
    // On the genesis (made before the decision could make it stale): d votes, x does not.
    const onGenesis = propose(sim, 'b', 1500, { type: 'remove-member', id: sim.did('e') }, sim.federation)
    const dOnGenesis = sim.vote('d', 1510, { proposal: onGenesis.cid, choice: 'yes' })
    const xOnGenesis = sim.vote('x', 1510, { proposal: onGenesis.cid, choice: 'yes' })
    sim.add(xOnG, dOnG, dOnGenesis, xOnGenesis)
    const f = sim.fold
    expect(f.report(onG.cid)).toEqual({ status: 'applied' })
    expect(f.report(onGenesis.cid)).toEqual({ status: 'applied' })
    expect(f.report(xOnG.cid)).toEqual({ status: 'applied' })
    expect(f.report(dOnG.cid)).toMatchObject({ status: 'inapplicable', code: 'vote-not-eligible' })
    expect(f.report(dOnGenesis.cid)).toEqual({ status: 'applied' })
    expect(f.report(xOnGenesis.cid)).toMatchObject({ status: 'inapplicable', code: 'vote-not-eligible' })
    expect(f.countedVotes(onG.cid)).toEqual([xOnG.cid])
    expect(f.countedVotes(onGenesis.cid)).toEqual([dOnGenesis.cid])
    // x keeps d's place: same roles and weight.
    const head = f.state().members
    expect(head.some((m) => m.id === sim.did('d'))).toBe(false)
    expect(head.find((m) => m.id === sim.did('x'))).toMatchObject({ roles: ['voter'], weight: 1 })

    // The retired key can never be admitted again on this chain.
    const readmit = propose(
      sim,
      'a',
      2100,
      { type: 'admit-member', member: member(sim, 'd', ['voter']) },
      g.cid,
    )
    expect(view(f.state(), readmit.cid)).toMatchObject({
      phase: 'void',
      reason: { code: 'action-key-retired' },
    })
    expect(f.report(readmit.cid)).toMatchObject({ status: 'inapplicable', code: 'action-key-retired' })
  })
})

// ---------------------------------------------------------------- models

describe('models', () => {
  it('two ratified manifests of one name@version are conflicted until one is revoked', () => {
    const sim = simulator()
    const m1 = sim.manifest('a', 0, { id: 'm1', name: 'x', version: '1.0.0' })
    const m2 = sim.manifest('a', 0, { id: 'm2', name: 'x', version: '1.0.0' })
    sim.add(m1, m2)
    expect(sim.fold.state().models.get('x@1.0.0')).toMatchObject({ status: 'proposed' })
    const r1 = propose(sim, 'a', 10, { type: 'ratify-model', manifest: m1.cid })
    const r2 = propose(sim, 'b', 10, { type: 'ratify-model', manifest: m2.cid })
    decide(sim, r1, ['a', 'b', 'c'])
    decide(sim, r2, ['a', 'b', 'c'])
    let state = sim.fold.state()
    expect(view(state, r1.cid).phase).toBe('final-passed')
    expect(view(state, r2.cid).phase).toBe('final-passed')
    const conflicted = state.models.get('x@1.0.0')!
    expect(conflicted.status).toBe('conflicted')
    expect(conflicted.manifest).toBeUndefined()
    expect(conflicted.manifests).toEqual([m1.cid, m2.cid].sort(compareCids))

    const revoke = propose(sim, 'c', 2000, { type: 'revoke-model', manifest: m1.cid, reason: 'duplicate' })
    decide(sim, revoke, ['a', 'b', 'c'])
    state = sim.fold.state()
    expect(state.manifests.get(cidKey(m1.cid))?.status).toBe('revoked')
    expect(state.manifests.get(cidKey(m2.cid))?.status).toBe('ratified')
    const model = state.models.get('x@1.0.0')!
    expect(model.status).toBe('ratified')
    expect(model.manifest?.equals(m2.cid)).toBe(true)
    expect(model.decision?.equals(r2.cid)).toBe(true)
  })
})

// ---------------------------------------------------------------- display status

describe('proposalStatus', () => {
  it('is open through closesAt, then awaiting seals through the deadline, then expired', () => {
    const sim = simulator()
    const p = propose(sim, 'a', 0, { type: 'admit-member', member: member(sim, 'x', ['voter']) })
    const v = view(sim.fold.state(), p.cid)
    expect(v.phase).toBe('undecided')
    const closesAt = p.record.body.closesAt
    expect(v.closesAt).toBe(closesAt)
    const deadline = DEFAULT_RULES.sealDeadlineMs
    expect(proposalStatus(v, p.record.at)).toBe('open')
    expect(proposalStatus(v, closesAt)).toBe('open')
    expect(proposalStatus(v, closesAt + 1)).toBe('closed-awaiting-seals')
    expect(proposalStatus(v, closesAt + deadline)).toBe('closed-awaiting-seals')
    expect(proposalStatus(v, closesAt + deadline + 1)).toBe('expired')
    // A final proposal shows its phase whatever the clock says.
    decide(sim, p, ['a', 'b', 'c'])
    const final = view(sim.fold.state(), p.cid)
    expect(proposalStatus(final, closesAt)).toBe('final-passed')
    expect(proposalStatus(final, closesAt + deadline + 1)).toBe('final-passed')
  })
})

// ---------------------------------------------------------------- well-formedness

describe('well-formed decisions', () => {
  it('an admission that would leave 2t ≤ stewards is void (action-ill-formed)', () => {
    const sim = simulator() // three stewards, t = 2
    const p = propose(sim, 'a', 0, { type: 'admit-member', member: member(sim, 'x', ['steward', 'voter']) })
    const { votes, seals } = decide(sim, p, ['a', 'b', 'c'])
    const state = sim.fold.state()
    expect(view(state, p.cid)).toMatchObject({ phase: 'void', reason: { code: 'action-ill-formed' } })
    expect(proposalStatus(view(state, p.cid), p.record.body.closesAt)).toBe('void')
    expect(sim.fold.report(p.cid)).toMatchObject({ status: 'inapplicable', code: 'action-ill-formed' })
    for (const r of [...votes, ...seals])
      expect(sim.fold.report(r.cid)).toMatchObject({ status: 'inapplicable', code: 'proposal-void' })
    expect(state.height).toBe(0)
    expect(state.members.some((m) => m.id === sim.did('x'))).toBe(false)
    // Admitting a voter instead is fine.
    const q = propose(sim, 'a', 10, { type: 'admit-member', member: member(sim, 'x', ['voter']) })
    decide(sim, q, ['a', 'b', 'c'])
    expect(phaseOf(sim.fold, q.cid)).toBe('final-passed')
  })
})

// ---------------------------------------------------------------- order independence, found by the properties

describe('the incremental path and the batch fold agree', () => {
  // Minimal reproductions of what test/unit/protocol/fold/fold.property.test.ts ("incremental equals batch") found.
  it('on a proposal whose basis is a vote that arrives after the state was read', () => {
    const sim = simulator()
    const other = sim.proposal('a', 0, {
      closesAt: 1000,
      action: { type: 'remove-member', id: sim.did('e') },
    })
    const vote = sim.vote('a', 10, { proposal: other.cid, choice: 'yes' })
    const p = sim.proposal('b', 2000, {
      closesAt: 3000,
      basis: vote.cid,
      action: { type: 'remove-member', id: sim.did('e') },
    })
    const batch = fold(sim.genesis, [p, vote])
    expect(view(batch, p.cid)).toMatchObject({ phase: 'void', reason: { code: 'basis-not-governance' } })
    const f = createFold(sim.genesis)
    apply(f, p)
    const state = apply(f, vote)
    expect(view(state, p.cid).phase).toBe(view(batch, p.cid).phase)
    expect(f.report(p.cid)).toEqual(createFoldWith(sim, [p, vote]).report(p.cid))
  })

  it('on a ratify proposal whose subject is a vote that arrives after the state was read', () => {
    const sim = simulator()
    const vote = sim.vote('a', 10, { proposal: sim.federation, choice: 'yes' })
    const r = sim.proposal('a', 20, { closesAt: 1020, action: { type: 'ratify-model', manifest: vote.cid } })
    const batch = fold(sim.genesis, [r, vote])
    expect(view(batch, r.cid)).toMatchObject({ phase: 'void', reason: { code: 'manifest-inapplicable' } })
    const f = createFold(sim.genesis)
    apply(f, r)
    const state = apply(f, vote)
    expect(view(state, r.cid).phase).toBe(view(batch, r.cid).phase)
  })
})

function createFoldWith(sim: Simulator, records: readonly AnyVerified[]): Fold {
  const f = createFold(sim.genesis)
  for (const r of records) f.add(r)
  return f
}
