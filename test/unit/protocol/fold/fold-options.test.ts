/**
 * The fold's options for certificates (docs/adr/0022, SPEC.md §8.5, §11.2, §12): a compact
 * chain, whose governance seals come without their lists, is taken on the word of t stewards of
 * each state; an anchored fold starts its chain at a trusted head with that head's state.
 *
 * The federation is test/support/federation.ts's fixture: admit n1, admit n2, replace s3 by
 * s3b, change the rules, then ratifications, and a checkpoint signed by s1 and s3b (t = 2).
 */
import { describe, expect, it } from 'vitest'
import {
  type AnyVerified,
  type CID,
  canonicalState,
  cidKey,
  createFold,
  decodeRecord,
  type Fold,
  type FoldOptions,
  GOVERNANCE_ACTIONS,
  type Verified,
} from '../../../../protocol/index.js'
import {
  buildFixture,
  type Decision,
  decide,
  type Fixture,
  MODEL,
  member,
  simulator,
} from '../../../support/federation.js'
import { DEFAULT_RULES, type Simulator } from '../../../support/simulator.js'

/** A record as a certificate's verifier decodes it: checked, without reading any list block. */
function withoutLists<K extends 'seal' | 'checkpoint'>(record: Verified<K>): Verified<K> {
  const decoded = decodeRecord(record.bytes)
  if (!decoded.ok) throw new Error(`the record does not decode: ${decoded.code}`)
  expect(decoded.value.lists).toBeUndefined()
  return decoded.value as Verified<K>
}

function isGovernanceProposal(fold: Fold, proposal: CID): boolean {
  const record = fold.get(proposal)
  return record?.record.kind === 'proposal' && GOVERNANCE_ACTIONS.has(record.record.body.action.type)
}

/**
 * What a compact certificate holds of a fold's records: every governance seal without its
 * lists, and no vote on a governance proposal; everything else as it is.
 */
function compactRecords(fold: Fold): AnyVerified[] {
  const records: AnyVerified[] = []
  for (const r of fold.records()) {
    const kind = r.record.kind
    if (kind === 'genesis') continue
    if (kind === 'vote' && isGovernanceProposal(fold, r.record.body.proposal)) continue
    if (kind === 'seal' && isGovernanceProposal(fold, r.record.body.proposal))
      records.push(withoutLists(r as Verified<'seal'>))
    else records.push(r)
  }
  return records
}

function foldOf(sim: Simulator, records: Iterable<AnyVerified>, options?: FoldOptions): Fold {
  const fold = createFold(sim.genesis, options)
  for (const r of records) fold.add(r)
  return fold
}

function codeOf(fold: Fold, record: AnyVerified): string | undefined {
  const report = fold.report(record.cid)
  return report && report.status !== 'applied' ? report.code : report?.status
}

function phaseOf(fold: Fold, d: Decision): string | undefined {
  return fold.state().proposals.get(cidKey(d.proposal.cid))?.phase
}

describe('declared governance seals (compact certificates)', () => {
  const fx: Fixture = buildFixture()
  const full = fx.sim.fold.state()

  it('a compact chain yields the same head, state and checkpoint as the full fold', () => {
    const compact = foldOf(fx.sim, compactRecords(fx.sim.fold), { declaredGovernanceSeals: true })
    const state = compact.state()
    expect(state.head.equals(full.head)).toBe(true)
    expect(state.height).toBe(4)
    expect(state.members).toEqual(full.members)
    expect(state.rules).toEqual(full.rules)
    expect(state.checkpoint).toEqual(full.checkpoint)
    expect(state.models.get(MODEL)).toEqual(full.models.get(MODEL))
    for (const step of fx.chain) {
      expect(phaseOf(compact, step)).toBe('final-passed')
      for (const seal of step.seals) expect(codeOf(compact, seal)).toBe('applied')
    }
    // Proposal by proposal the same phases, tallies and deciding seals: the canonical state.
    expect(canonicalState(state)).toEqual(canonicalState(full))
  })

  it('without the option the same records leave the chain at the genesis: the seals wait for their lists', () => {
    const records = compactRecords(fx.sim.fold)
    const strict = foldOf(fx.sim, records)
    expect(strict.state().head.equals(fx.sim.federation)).toBe(true)
    expect(strict.state().checkpoint).toBeUndefined()
    for (const seal of fx.chain[0]!.seals) expect(codeOf(strict, seal)).toBe('seal-list-pending')
  })

  it('a seal with its lists is checked in full even with the option', () => {
    const records = [...fx.sim.fold.records()].filter((r) => r.record.kind !== 'genesis')
    const withLists = foldOf(fx.sim, records, { declaredGovernanceSeals: true })
    expect(canonicalState(withLists.state())).toEqual(canonicalState(full))
    // A seal whose lists name no vote yet declares three yes votes: refused when its lists are read.
    const sim = simulator(undefined, 'forged tallies')
    const forged = forgedAdmission(sim)
    const fold = foldOf(sim, [forged.proposal, ...forged.inWindow], { declaredGovernanceSeals: true })
    for (const seal of forged.inWindow) expect(codeOf(fold, seal)).toBe('seal-tally-mismatch')
    expect(phaseOf(fold, forged)).toBe('undecided')
  })
})

interface ForgedAdmission extends Decision {
  /** Seals of s1 and s2, in the window, declaring three yes votes the lists do not name. */
  readonly inWindow: Verified<'seal'>[]
}

/** An admission nobody voted on, sealed as if three stewards had voted yes. */
function forgedAdmission(sim: Simulator): ForgedAdmission {
  const closesAt = 10 + 1100
  const proposal = sim.proposal('s1', 10, {
    closesAt,
    action: { type: 'admit-member', member: member(sim, 'nx', ['voter']) },
  })
  sim.add(proposal)
  const forgeTally = { yes: 3, no: 0, abstain: 0 }
  const inWindow = ['s1', 's2'].map((by, i) =>
    sim.seal(by, closesAt + 200 + i, { proposal: proposal.cid, votes: [], forgeTally }),
  )
  expect(inWindow[0]!.record.body.outcome).toBe('passed')
  return { proposal, votes: [], seals: inWindow, closesAt, inWindow }
}

describe('what a declared seal is still checked for (SPEC.md §8.5 steps 1–3)', () => {
  it('a forged declared seal by a non-steward or outside its window does not count; t stewards in it do', () => {
    const sim = simulator(undefined, 'declared seals')
    const forged = forgedAdmission(sim)
    const forgeTally = { yes: 3, no: 0, abstain: 0 }
    const byVoter = withoutLists(
      sim.seal('v1', forged.closesAt + 300, { proposal: forged.proposal.cid, votes: [], forgeTally }),
    )
    const tooLate = withoutLists(
      sim.seal('s3', forged.closesAt + DEFAULT_RULES.sealDeadlineMs + 1, {
        proposal: forged.proposal.cid,
        votes: [],
        forgeTally,
      }),
    )
    const tooEarly = withoutLists(
      sim.seal('s2', forged.closesAt + DEFAULT_RULES.sealGraceMs - 1, {
        proposal: forged.proposal.cid,
        votes: [],
        forgeTally,
      }),
    )
    const firstSteward = withoutLists(forged.inWindow[0]!)
    const fold = foldOf(sim, [forged.proposal, firstSteward, byVoter, tooLate, tooEarly], {
      declaredGovernanceSeals: true,
    })
    expect(codeOf(fold, byVoter)).toBe('seal-not-steward')
    expect(codeOf(fold, tooLate)).toBe('seal-window')
    expect(codeOf(fold, tooEarly)).toBe('seal-window')
    expect(codeOf(fold, firstSteward)).toBe('applied')
    expect(phaseOf(fold, forged)).toBe('undecided')
    expect(fold.state().head.equals(sim.federation)).toBe(true)
    // The trust a compact certificate takes on: t stewards of the electorate declaring it make it so.
    fold.add(withoutLists(forged.inWindow[1]!))
    expect(phaseOf(fold, forged)).toBe('final-passed')
    expect(fold.state().head.equals(forged.proposal.cid)).toBe(true)
    expect(fold.state().members.map((m) => m.id)).toContain(sim.did('nx'))
  })

  it('a ratify seal without its lists is never trusted: it waits for its lists, and the model stays proposed', () => {
    const fx = buildFixture()
    const sim = fx.sim
    const records = compactRecords(sim.fold).map((r) =>
      r.record.kind === 'seal' && fx.llama.seals.some((s) => s.cid.equals(r.cid))
        ? withoutLists(r as Verified<'seal'>)
        : r,
    )
    const fold = foldOf(sim, records, { declaredGovernanceSeals: true })
    for (const seal of fx.llama.seals) expect(codeOf(fold, seal)).toBe('seal-list-pending')
    expect(fold.state().proposals.get(cidKey(fx.llama.proposal.cid))?.tally).toEqual({
      yes: 4,
      no: 0,
      abstain: 0,
    })
    // Covered by the checkpoint, the ratification is final-passed by its list; the seals still wait.
    expect(fold.state().checkpoint).toBeDefined()
    const uncovered = foldOf(
      sim,
      records.filter((r) => r.record.kind !== 'checkpoint'),
      { declaredGovernanceSeals: true },
    )
    expect(phaseOf(uncovered, fx.llama)).toBe('undecided')
    expect(uncovered.state().models.get(MODEL)?.status).toBe('proposed')
    // With their lists read, the same seals count.
    for (const seal of fx.llama.seals) uncovered.add(seal)
    expect(phaseOf(uncovered, fx.llama)).toBe('final-passed')
    expect(uncovered.state().models.get(MODEL)?.status).toBe('ratified')
  })
})

/** The fixture's records from the third chain step on: what a `--since` certificate after step two holds. */
function recordsAfter(fx: Fixture, steps: number): AnyVerified[] {
  const before = new Set<string>()
  for (const step of fx.chain.slice(0, steps))
    for (const r of [step.proposal, ...step.votes, ...step.seals]) before.add(r.key)
  return [...fx.sim.fold.records()].filter((r) => r.record.kind !== 'genesis' && !before.has(r.key))
}

describe('an anchored fold (--since certificates)', () => {
  const fx = buildFixture()
  const full = fx.sim.fold.state()
  const [, admitN2, replace, changeRules] = fx.chain as [Decision, Decision, Decision, Decision]
  const anchor = { head: admitN2.proposal.cid, state: fx.sim.fold.electorate(replace.proposal.cid)! }

  it('starts the chain at the anchor with its state: the same head, state, checkpoint and model', () => {
    for (const options of [{ anchor }, { anchor, declaredGovernanceSeals: true }]) {
      const records = options.declaredGovernanceSeals
        ? compactRecords(foldOf(fx.sim, recordsAfter(fx, 2)))
        : recordsAfter(fx, 2)
      expect(records.some((r) => r.cid.equals(admitN2.proposal.cid))).toBe(false)
      const anchored = foldOf(fx.sim, records, options)
      const state = anchored.state()
      expect(state.head.equals(full.head)).toBe(true)
      expect(state.height).toBe(full.height)
      expect(state.members).toEqual(full.members)
      expect(state.rules).toEqual(full.rules)
      expect(state.checkpoint).toEqual(full.checkpoint)
      expect(state.models.get(MODEL)).toEqual(full.models.get(MODEL))
      // The proposal on the anchor is decided by the anchor's state, given, not derived.
      expect(anchored.electorate(replace.proposal.cid)).toBe(anchor.state)
      expect(phaseOf(anchored, replace)).toBe('final-passed')
      expect(phaseOf(anchored, changeRules)).toBe('final-passed')
      // n1 and n2 were admitted before the anchor: known through the anchor's state.
      expect(anchored.knownMember(fx.sim.did('n2'))).toBe(true)
    }
  })

  it('an anchor whose record is absent: the state it was given decides who votes and seals on it', () => {
    const sim = simulator(undefined, 'anchored federation')
    const replaced = decide(sim, {
      by: 's1',
      at: 10,
      action: { type: 'replace-key', id: sim.did('s3'), newId: sim.did('s3b') },
      voters: ['s1', 's2', 's3'],
      sealers: ['s1', 's2'],
    })
    const anchorState = sim.fold.headState()
    // On the replacement: s3b votes and seals.
    const next = decide(sim, {
      by: 's3b',
      at: 1400,
      action: { type: 'admit-member', member: member(sim, 'n10', ['voter']) },
      voters: ['s1', 's3b', 's2'],
      sealers: ['s3b', 's2'],
    })
    const afterAnchor = [next.proposal, ...next.votes, ...next.seals]
    const anchored = foldOf(sim, afterAnchor, { anchor: { head: replaced.proposal.cid, state: anchorState } })
    expect(anchored.state().head.equals(next.proposal.cid)).toBe(true)
    expect(anchored.state().height).toBe(2)
    expect(codeOf(anchored, next.seals[0]!)).toBe('applied')
    // Without the anchor, the same records wait for the admission.
    const plain = foldOf(sim, afterAnchor)
    expect(codeOf(plain, next.proposal)).toBe('basis-unknown')
    expect(plain.state().head.equals(sim.federation)).toBe(true)
  })

  it('the genesis state stays a chain state; states between the genesis and the anchor are unknown to it', () => {
    const records = recordsAfter(fx, 2)
    const anchored = foldOf(fx.sim, records, { anchor })
    // v1 publishes in the genesis state and in the anchor's: its manifests stay applicable.
    expect(anchored.state().manifests.get(cidKey(fx.llama.manifest.cid))?.status).toBe('ratified')
    // The steps before the anchor are not in the record set: nothing of them is reported.
    expect(anchored.report(fx.chain[0]!.proposal.cid)).toBeUndefined()
  })
})
