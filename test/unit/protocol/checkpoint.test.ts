/**
 * Checkpoints (SPEC.md §11.2–§11.3): what they cover, when
 * they count, and the anchoring — once t stewards signed a checkpoint for
 * epoch E, its `finalized` list decides every proposal with closesAt ≤ E,
 * so a seal held back past the deadline cannot resurrect an expired
 * decision (and cannot void the decisions made after it).
 *
 * The scenario: stewards s1, s2, s3 (t = 2) and voter v1.
 * - X admits nx; it gets one seal in time (s1). s2's seal is signed inside
 *   the window but withheld, so X expires.
 * - Y admits ny, proposed on the genesis more than sealDeadlineMs after X
 *   closed, and passes. (Were X final, Y would be void: its basis would be
 *   stale.)
 * - s1 and s2 sign the checkpoint for the first epoch boundary E.
 * - Later, s2's withheld seal for X is published.
 */
import { describe, expect, it } from 'vitest'
import {
  type AnyVerified,
  buildList,
  buildStateRoot,
  type CheckpointBody,
  canonicalState,
  checkpointFor,
  cidKey,
  cidOfBlock,
  compareCids,
  createFold,
  derivationsOf,
  encode,
  type FederationState,
  type FinalizedEntry,
  fold,
  proposalStatus,
  signRecord,
  type Verified,
} from '../../../protocol/index.js'
import { fromSignedRecord } from '../../../protocol/record.js'
import { type Decision, decide, HOUR, member, simulator } from '../../support/federation.js'
import { DEFAULT_RULES, type SimMember, type Simulator } from '../../support/simulator.js'

const SEAL_DEADLINE = DEFAULT_RULES.sealDeadlineMs

const MEMBERS: readonly SimMember[] = [
  { name: 's1', roles: ['steward', 'voter'], weight: 1 },
  { name: 's2', roles: ['steward', 'voter'], weight: 1 },
  { name: 's3', roles: ['steward', 'voter'], weight: 1 },
  { name: 'v1', roles: ['publisher', 'voter'], weight: 1 },
]

interface Scenario {
  readonly sim: Simulator
  /** Admits nx; only s1's seal was added; `late` is s2's withheld one. */
  readonly x: Decision
  readonly late: Verified<'seal'>
  /** Admits ny on the genesis, after X expired. */
  readonly y: Decision
  /** Epoch (sim time) covering X and Y, and when its checkpoints are signed. */
  readonly epoch: number
  readonly signedAt: number
}

/** X and Y as in the header; no checkpoint and no late seal added yet. */
function scenario(name = 'checkpoint federation'): Scenario {
  const sim = simulator(MEMBERS, name)
  const x = decide(sim, {
    by: 's1',
    at: 10,
    action: { type: 'admit-member', member: member(sim, 'nx', ['voter']) },
    voters: ['s1', 's2', 's3'],
    sealers: ['s1', 's2'],
    withholdSeals: true,
  })
  sim.add(x.seals[0]!)
  const late = x.seals[1]!
  // Inside X's seal window: only its publication is late.
  expect(late.record.at).toBeGreaterThanOrEqual(sim.base + x.closesAt + DEFAULT_RULES.sealGraceMs)
  expect(late.record.at).toBeLessThanOrEqual(sim.base + x.closesAt + SEAL_DEADLINE)
  const yAt = x.closesAt + SEAL_DEADLINE + 1000
  expect(sim.fold.state().head.equals(sim.federation)).toBe(true)
  const y = decide(sim, {
    by: 's2',
    at: yAt,
    action: { type: 'admit-member', member: member(sim, 'ny', ['voter']) },
    voters: ['s1', 's2', 's3'],
    sealers: ['s1', 's2'],
  })
  const epoch = HOUR
  return { sim, x, late, y, epoch, signedAt: epoch + SEAL_DEADLINE + 100 }
}

function view(state: FederationState, d: Decision) {
  return state.proposals.get(cidKey(d.proposal.cid))!
}

function memberIds(state: FederationState): string[] {
  return state.members.map((m) => m.id)
}

/** Every record the simulator's fold holds but the genesis. */
function recordsOf(sim: Simulator): AnyVerified[] {
  return [...sim.fold.records()].filter((r) => r.record.kind !== 'genesis')
}

/** A checkpoint signed by hand, with its finalized entries attached. */
function signCheckpoint(
  sim: Simulator,
  by: string,
  at: number,
  body: CheckpointBody,
  finalized: readonly FinalizedEntry[],
): Verified<'checkpoint'> {
  return signRecord(
    { kind: 'checkpoint', federation: sim.federation, at: sim.base + at, body },
    sim.signer(by),
    { finalized },
  )
}

describe('the anchoring works', () => {
  it('with a counted checkpoint, a withheld seal published late cannot finalize an expired decision', () => {
    const s = scenario()
    const { sim } = s
    const now = sim.base + s.signedAt
    expect(proposalStatus(view(sim.fold.state(), s.x), now)).toBe('expired')
    sim.add(sim.checkpoint('s1', s.signedAt, s.epoch), sim.checkpoint('s2', s.signedAt + 1, s.epoch))
    const before = sim.fold.state()
    expect(before.checkpoint?.epoch).toBe(sim.base + s.epoch)
    expect(before.head.equals(s.y.proposal.cid)).toBe(true)

    sim.add(s.late)
    const after = sim.fold.state()
    const x = view(after, s.x)
    expect(x.phase).toBe('undecided')
    expect(proposalStatus(x, now)).toBe('expired')
    expect(proposalStatus(x, Number.MAX_SAFE_INTEGER)).toBe('expired')
    expect(x.confirmed).toBe(true)
    expect(memberIds(after)).not.toContain(sim.did('nx'))
    expect(memberIds(after)).toContain(sim.did('ny'))
    expect(after.height).toBe(before.height)
    expect(after.height).toBe(1)
    expect(after.head.equals(before.head)).toBe(true)
    // The later decision keeps its state.
    const y = view(after, s.y)
    expect(y.phase).toBe('final-passed')
    expect(y.confirmed).toBe(true)

    // The same record set in another order (the late seal first) gives the same state.
    const records = recordsOf(sim)
    const reordered = fold(sim.genesis, [s.late, ...records.reverse()])
    expect(view(reordered, s.x).phase).toBe('undecided')
    expect(reordered.head.equals(after.head)).toBe(true)
    expect(memberIds(reordered)).toEqual(memberIds(after))
  })

  it('without the checkpoint, the same withheld seal finalizes it (and voids the decision after it)', () => {
    const s = scenario()
    const { sim } = s
    // The checkpoints are signed, but this node never receives them.
    sim.checkpoint('s1', s.signedAt, s.epoch)
    sim.checkpoint('s2', s.signedAt + 1, s.epoch)
    sim.add(s.late)
    const state = sim.fold.state()
    expect(state.checkpoint).toBeUndefined()
    const x = view(state, s.x)
    expect(x.phase).toBe('final-passed')
    expect(proposalStatus(x, Number.MAX_SAFE_INTEGER)).toBe('final-passed')
    expect(x.confirmed).toBe(false)
    expect(memberIds(state)).toContain(sim.did('nx'))
    expect(state.head.equals(s.x.proposal.cid)).toBe(true)
    // Y was made on the genesis long after X closed: with X final, its basis is stale.
    const y = view(state, s.y)
    expect(y.phase).toBe('void')
    expect(y.reason?.code).toBe('basis-stale')
    expect(memberIds(state)).not.toContain(sim.did('ny'))
  })
})

describe('checkpoint content', () => {
  it('checkpointFor is the same for two simulators that received the same records in different orders', () => {
    const s = scenario()
    s.sim.add(s.late)
    // A ratification too, so that the state roots hold an entry.
    const manifest = s.sim.manifest('v1', 8000, { id: 'tiny weights', name: 'tiny', version: '0.1.0' })
    s.sim.add(manifest)
    decide(s.sim, {
      by: 'v1',
      at: 8200,
      action: { type: 'ratify-model', manifest: manifest.cid },
      voters: ['s1', 's2', 'v1'],
      sealers: ['s2', 's3'],
    })
    expect(s.sim.fold.state().models.get('tiny@0.1.0')?.status).toBe('ratified')
    // Two more simulators of the same federation, fed the same records in other orders.
    const other = simulator(MEMBERS, 'checkpoint federation')
    const interleaved = simulator(MEMBERS, 'checkpoint federation')
    expect(other.federation.equals(s.sim.federation)).toBe(true)
    const records = recordsOf(s.sim)
    for (const r of [...records].reverse()) other.add(r)
    for (const r of [...records.filter((_, i) => i % 2 === 1), ...records.filter((_, i) => i % 2 === 0)])
      interleaved.add(r)
    for (const epoch of [s.x.closesAt, s.y.closesAt - 1, s.epoch]) {
      const a = checkpointFor(s.sim.fold.state(), s.sim.base + epoch)
      for (const sim of [other, interleaved]) {
        const b = checkpointFor(sim.fold.state(), sim.base + epoch)
        expect(encode(b.body)).toEqual(encode(a.body))
        expect(b.body.stateRoot.equals(a.body.stateRoot)).toBe(true)
        expect(b.body.finalized.root.equals(a.body.finalized.root)).toBe(true)
        expect(b.body.head.equals(a.body.head)).toBe(true)
        expect(b.body.height).toBe(a.body.height)
      }
    }
    // And the signed records themselves are identical.
    const signed = s.sim.checkpoint('s1', s.signedAt, s.epoch)
    expect(other.checkpoint('s1', s.signedAt, s.epoch).cid.equals(signed.cid)).toBe(true)
    const full = checkpointFor(s.sim.fold.state(), s.sim.base + s.epoch)
    expect(full.root.paths.has('tiny@0.1.0')).toBe(true)
    const body = full.body
    expect(body.head.equals(s.x.proposal.cid)).toBe(true)
    expect(body.height).toBe(1)
  })

  it('covers exactly the decisions with closesAt ≤ epoch', () => {
    const s = scenario()
    const base = s.sim.base
    const state = s.sim.fold.state()
    const early = checkpointFor(state, base + s.y.closesAt - 1)
    expect(early.finalized).toEqual([])
    expect(early.body.head.equals(s.sim.federation)).toBe(true)
    expect(early.body.height).toBe(0)
    const covering = checkpointFor(state, base + s.y.closesAt)
    expect(covering.finalized.map(([c, l]) => [c.toString(), l])).toEqual([
      [s.y.proposal.cid.toString(), 'final-passed'],
    ])
    expect(covering.body.head.equals(s.y.proposal.cid)).toBe(true)
    expect(covering.body.height).toBe(1)
  })
})

describe('counting checkpoints', () => {
  it('one signature short of the threshold does not count; t signatures do, and are listed', () => {
    const s = scenario()
    const { sim } = s
    const a = sim.checkpoint('s1', s.signedAt, s.epoch)
    sim.add(a)
    expect(sim.fold.state().checkpoint).toBeUndefined()
    expect(sim.fold.report(a.cid)?.status).toBe('applied')
    expect(view(sim.fold.state(), s.y).confirmed).toBe(false)
    const b = sim.checkpoint('s3', s.signedAt + 7, s.epoch)
    sim.add(b)
    const cp = sim.fold.state().checkpoint
    expect(cp).toBeDefined()
    expect(cp!.signers).toEqual([sim.did('s1'), sim.did('s3')].sort())
    expect(cp!.epoch).toBe(sim.base + s.epoch)
    expect(cp!.height).toBe(1)
    expect(cp!.head.equals(s.y.proposal.cid)).toBe(true)
    expect(cp!.stateRoot.equals(a.record.body.stateRoot)).toBe(true)
    // The view names the copy with the smallest CID.
    expect(cp!.cid.equals(compareCids(a.cid, b.cid) < 0 ? a.cid : b.cid)).toBe(true)
  })

  it('a steward who signs two different checkpoints for one epoch is an equivocator', () => {
    const s = scenario()
    const { sim } = s
    // A premature view: the state before Y's seals arrived.
    const ySeals = new Set(s.y.seals.map((x) => cidKey(x.cid)))
    const premature = fold(
      sim.genesis,
      recordsOf(sim).filter((r) => !ySeals.has(cidKey(r.cid))),
    )
    const early = checkpointFor(premature, sim.base + s.epoch)
    expect(early.body.head.equals(sim.federation)).toBe(true)
    sim.add(signCheckpoint(sim, 's3', s.signedAt, early.body, early.finalized))
    sim.add(sim.checkpoint('s3', s.signedAt + 1, s.epoch), sim.checkpoint('s1', s.signedAt + 2, s.epoch))
    const state = sim.fold.state()
    expect(state.checkpointEquivocators).toEqual([sim.did('s3')])
    // Both of its signatures still count for what they say: the honest content has t signers.
    expect(state.checkpoint?.head.equals(s.y.proposal.cid)).toBe(true)
    expect(state.checkpoint?.signers).toEqual([sim.did('s1'), sim.did('s3')].sort())
  })

  it('decisions not covered are final but unconfirmed; covered ones are confirmed', () => {
    const s = scenario()
    const { sim } = s
    sim.add(sim.checkpoint('s1', s.signedAt, s.epoch), sim.checkpoint('s2', s.signedAt, s.epoch))
    const z = decide(sim, {
      by: 's3',
      at: s.epoch + 10_000,
      action: { type: 'admit-member', member: member(sim, 'nz', ['voter']) },
      voters: ['s1', 's2', 's3', 'ny'],
      sealers: ['s2', 's3'],
    })
    const state = sim.fold.state()
    const zv = view(state, z)
    expect(zv.phase).toBe('final-passed')
    expect(zv.confirmed).toBe(false)
    expect(zv.decidedBy).toBeDefined()
    expect(view(state, s.y).confirmed).toBe(true)
    expect(view(state, s.y).decidedBy).toBeDefined()
    expect(view(state, s.x).confirmed).toBe(true)
    expect(memberIds(state)).toContain(sim.did('nz'))
    expect(state.height).toBe(2)
    // A checkpoint for the next epoch confirms it.
    const next = 2 * HOUR
    sim.add(
      sim.checkpoint('s1', next + SEAL_DEADLINE + 100, next),
      sim.checkpoint('s3', next + SEAL_DEADLINE + 100, next),
    )
    const later = sim.fold.state()
    expect(later.checkpoint?.height).toBe(2)
    expect(view(later, z).confirmed).toBe(true)
    expect(view(later, z).phase).toBe('final-passed')
  })
})

describe('a chain that no steward sealed', () => {
  // 'mallory' — no member at all — proposes two key replacements nobody voted on; fresh keys
  // a1 and a2 sign a checkpoint listing them as final-passed. Each step of a checkpoint's head
  // chain must be sealed by t stewards of the state before it (SPEC.md §11.2), so the forged
  // checkpoint never counts and the sealed decision Y stands.
  it('cannot count, nor erase a sealed decision', () => {
    const s = scenario()
    const { sim } = s
    sim.add(sim.checkpoint('s1', s.signedAt, s.epoch), sim.checkpoint('s2', s.signedAt, s.epoch))
    const replace = (id: string, newId: string) =>
      ({ type: 'replace-key', id: sim.did(id), newId: sim.did(newId) }) as const
    const p1 = sim.proposal('mallory', 10, {
      closesAt: 1200,
      basis: sim.federation,
      action: replace('s1', 'a1'),
    })
    const p2 = sim.proposal('mallory', 1300, { closesAt: 2400, basis: p1.cid, action: replace('s2', 'a2') })
    const finalized = [p1, p2].map((p) => [p.cid, 'final-passed'] as const)
    const list = buildList(finalized)
    const body: CheckpointBody = {
      head: p2.cid,
      height: 2,
      epoch: sim.base + s.epoch,
      stateRoot: buildStateRoot({ head: p2.cid, height: 2, entries: [] }).root,
      finalized: { root: list.root, count: list.count },
    }
    const forged = ['a1', 'a2'].map((by) => signCheckpoint(sim, by, s.signedAt, body, finalized))
    sim.add(p1, p2, ...forged)
    const state = sim.fold.state()
    expect(view(state, s.y).phase).toBe('final-passed')
    expect(state.head.equals(s.y.proposal.cid)).toBe(true)
    expect(state.checkpoint?.height).toBe(1)
  })
})

describe('inapplicable checkpoints', () => {
  it('a head its own finalized list does not support → checkpoint-head', () => {
    const s = scenario()
    const { sim } = s
    const honest = checkpointFor(sim.fold.state(), sim.base + s.epoch)
    // The list without Y, but the head still Y.
    const entries = honest.finalized.filter(([c]) => !c.equals(s.y.proposal.cid))
    const list = buildList(entries)
    for (const b of list.blocks) sim.blocks.set(cidKey(b.cid), b.bytes)
    const tampered: CheckpointBody = { ...honest.body, finalized: { root: list.root, count: list.count } }
    const forged = ['s1', 's2'].map((by) => signCheckpoint(sim, by, s.signedAt, tampered, entries))
    // Y listed as rejected, the head still Y.
    const relabelled = honest.finalized.map(([c, l]) =>
      c.equals(s.y.proposal.cid) ? ([c, 'final-rejected'] as const) : ([c, l] as const),
    )
    const rl = buildList(relabelled)
    const relabelledBody: CheckpointBody = { ...honest.body, finalized: { root: rl.root, count: rl.count } }
    const forged2 = ['s1', 's2'].map((by) => signCheckpoint(sim, by, s.signedAt, relabelledBody, relabelled))
    // The right list and head, a wrong height.
    const tall: CheckpointBody = { ...honest.body, height: 2 }
    const forged3 = ['s1', 's2'].map((by) => signCheckpoint(sim, by, s.signedAt, tall, honest.finalized))
    sim.add(...forged, ...forged2, ...forged3)
    for (const c of [...forged, ...forged2, ...forged3]) {
      const r = sim.fold.report(c.cid)
      expect(r?.status).toBe('inapplicable')
      expect(r && r.status === 'inapplicable' ? r.code : undefined).toBe('checkpoint-head')
    }
    expect(sim.fold.state().checkpoint).toBeUndefined()
    // Honest ones still count beside them.
    sim.add(sim.checkpoint('s1', s.signedAt, s.epoch), sim.checkpoint('s2', s.signedAt, s.epoch))
    expect(sim.fold.state().checkpoint?.head.equals(s.y.proposal.cid)).toBe(true)
  })

  it('a label that is not a decided phase → checkpoint-label', () => {
    const s = scenario()
    const { sim } = s
    const honest = checkpointFor(sim.fold.state(), sim.base + s.epoch)
    const entries = honest.finalized.map(([c]) => [c, 'open'] as const)
    const list = buildList(entries)
    const body: CheckpointBody = { ...honest.body, finalized: { root: list.root, count: list.count } }
    const c = signCheckpoint(sim, 's1', s.signedAt, body, entries)
    sim.add(c)
    const r = sim.fold.report(c.cid)
    expect(r?.status === 'inapplicable' ? r.code : r?.status).toBe('checkpoint-label')
  })

  it('signed by a non-steward → checkpoint-not-steward, and it does not count', () => {
    const s = scenario()
    const { sim } = s
    const byVoter = sim.checkpoint('v1', s.signedAt, s.epoch)
    const byOutsider = sim.checkpoint('mallory', s.signedAt, s.epoch)
    const byS1 = sim.checkpoint('s1', s.signedAt, s.epoch)
    sim.add(byVoter, byOutsider, byS1)
    for (const c of [byVoter, byOutsider]) {
      const r = sim.fold.report(c.cid)
      expect(r?.status === 'inapplicable' ? r.code : r?.status).toBe('checkpoint-not-steward')
    }
    expect(sim.fold.state().checkpoint).toBeUndefined()
  })

  it('without its finalized list blocks → pending', () => {
    const s = scenario()
    const { sim } = s
    const full = sim.checkpoint('s1', s.signedAt, s.epoch)
    const bare = fromSignedRecord(full.record)
    sim.add(bare)
    const r = sim.fold.report(bare.cid)
    expect(r?.status === 'pending' ? r.code : r?.status).toBe('checkpoint-list-pending')
  })
})

/** The report's code, or its status when it has none. */
function codeOf(sim: Simulator, c: AnyVerified): string | undefined {
  const r = sim.fold.report(c.cid)
  return r && r.status !== 'applied' ? r.code : r?.status
}

describe('checkpoints that cannot count cost O(1)', () => {
  /**
   * A member's stream of checkpoints that cannot change the newest counted one (SPEC.md §11.2):
   * nothing is derived again and nothing in the state moves, whatever the kind of checkpoint.
   */
  it('a stream of checkpoints that cannot count re-derives nothing and changes nothing', () => {
    const s = scenario()
    const { sim } = s
    sim.add(sim.checkpoint('s1', s.signedAt, s.epoch), sim.checkpoint('s2', s.signedAt + 1, s.epoch))
    const before = sim.fold.state()
    expect(before.checkpoint?.epoch).toBe(sim.base + s.epoch)
    const derived = derivationsOf(sim.fold)

    const honest = checkpointFor(before, sim.base + s.epoch)
    const later = (k: number): CheckpointBody => ({ ...honest.body, epoch: sim.base + (k + 2) * HOUR })
    const badLabels = honest.finalized.map(([c]) => [c, 'open'] as const)
    const badList = buildList(badLabels)
    const unknownHead = cidOfBlock(encode({ a: 'head nobody has' }))
    const stream: [Verified<'checkpoint'>, string][] = []
    for (let k = 0; k < 20; k++) {
      const at = s.signedAt + 10 + k
      stream.push(
        // Copies of the counted checkpoint by a voter and by a stranger.
        [signCheckpoint(sim, 'v1', at, honest.body, honest.finalized), 'checkpoint-not-steward'],
        [signCheckpoint(sim, 'mallory', at, honest.body, honest.finalized), 'checkpoint-not-steward'],
        // A later epoch by a voter, and by one steward alone (t = 2).
        [signCheckpoint(sim, 'v1', at, later(k), honest.finalized), 'checkpoint-not-steward'],
        [signCheckpoint(sim, 's3', at, later(k), honest.finalized), 'applied'],
        // A height the chain does not reach, a label that is no decided phase, a head nobody has.
        [signCheckpoint(sim, 's1', at, { ...later(k), height: 2 }, honest.finalized), 'checkpoint-head'],
        [
          signCheckpoint(
            sim,
            's2',
            at,
            { ...later(k), finalized: { root: badList.root, count: badList.count } },
            badLabels,
          ),
          'checkpoint-label',
        ],
        [
          // (Another epoch: two contents for one epoch would make s2 an equivocator.)
          signCheckpoint(sim, 's2', at, { ...later(k + 20), head: unknownHead }, honest.finalized),
          'basis-unknown',
        ],
      )
    }
    // Counted, but older than the newest counted checkpoint: t stewards for an earlier epoch (a
    // multiple of checkpointIntervalMs, as every applicable checkpoint's epoch is).
    const older = checkpointFor(before, sim.base + s.epoch - HOUR)
    for (const by of ['s1', 's2', 's3'])
      stream.push([signCheckpoint(sim, by, s.signedAt + 100, older.body, older.finalized), 'applied'])

    for (const [c, code] of stream) {
      sim.add(c)
      expect(codeOf(sim, c), `${sim.nameOf(c.record.author) ?? 'mallory'}: ${code}`).toBe(code)
      expect(derivationsOf(sim.fold)).toBe(derived)
      expect(canonicalState(sim.fold.state())).toEqual(canonicalState(before))
    }
    expect(sim.fold.state().checkpoint?.signers).toEqual([sim.did('s1'), sim.did('s2')].sort())
    // Just what folding the same records at once says, reports included.
    const batch = createFold(sim.genesis)
    for (const r of recordsOf(sim)) batch.add(r)
    expect(canonicalState(batch.state())).toEqual(canonicalState(sim.fold.state()))
    for (const [c] of stream) expect(batch.report(c.cid)).toEqual(sim.fold.report(c.cid))
  })

  it('a group is derived again the moment it reaches the threshold, and then counts', () => {
    const s = scenario()
    const { sim } = s
    sim.add(sim.checkpoint('s1', s.signedAt, s.epoch), sim.checkpoint('s2', s.signedAt + 1, s.epoch))
    sim.fold.state()
    const derived = derivationsOf(sim.fold)
    const next = 2 * HOUR
    const first = sim.checkpoint('s3', next + SEAL_DEADLINE + 100, next)
    sim.add(first)
    expect(sim.fold.state().checkpoint?.epoch).toBe(sim.base + s.epoch)
    expect(derivationsOf(sim.fold)).toBe(derived)
    const second = sim.checkpoint('s1', next + SEAL_DEADLINE + 101, next)
    sim.add(second)
    const state = sim.fold.state()
    expect(derivationsOf(sim.fold)).toBe(derived + 1)
    expect(state.checkpoint?.epoch).toBe(sim.base + next)
    expect(state.checkpoint?.signers).toEqual([sim.did('s1'), sim.did('s3')].sort())
    // A third signer of the newest counted checkpoint only adds to its signers.
    sim.add(sim.checkpoint('s2', next + SEAL_DEADLINE + 102, next))
    expect(sim.fold.state().checkpoint?.signers).toEqual([sim.did('s1'), sim.did('s2'), sim.did('s3')].sort())
    expect(derivationsOf(sim.fold)).toBe(derived + 1)
  })

  it('names the copy with the smallest CID among the stewards’ copies: a non-steward’s copy never becomes it', () => {
    const s = scenario()
    const { sim } = s
    const honest = checkpointFor(sim.fold.state(), sim.base + s.epoch)
    const byStewards = [sim.checkpoint('s1', s.signedAt, s.epoch), sim.checkpoint('s2', s.signedAt, s.epoch)]
    const smallest = byStewards.map((c) => c.cid).sort(compareCids)[0]!
    // Copies by a voter until one has a smaller CID than both stewards' copies.
    let copy: Verified<'checkpoint'> | undefined
    for (let k = 0; !copy; k++) {
      const c = signCheckpoint(sim, 'v1', s.signedAt + k, honest.body, honest.finalized)
      if (compareCids(c.cid, smallest) < 0) copy = c
    }
    for (const order of [
      [...byStewards, copy],
      [copy, ...byStewards],
    ]) {
      const f = fold(sim.genesis, [...recordsOf(sim), ...order])
      expect(f.checkpoint?.cid.equals(smallest)).toBe(true)
    }
  })
})
