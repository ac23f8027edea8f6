/**
 * The fold rule `checkpoint-epoch` (SPEC.md §11.2): a checkpoint's epoch is a multiple of its
 * head state's checkpointIntervalMs, and every known proposal its finalized list names closed by
 * the epoch; otherwise it is inapplicable and counts for nothing. It is checked after the labels
 * and the head, since it needs the head state's rules.
 *
 * Stewards s1, s2, s3 (t = 2) and voter v1; one admission decided before the first epoch
 * boundary after the genesis (HOUR, in simulation time).
 */
import { describe, expect, it } from 'vitest'
import {
  type AnyVerified,
  buildList,
  type CheckpointBody,
  type CID,
  canonicalState,
  checkpointFor,
  cidOfBlock,
  compareCids,
  createFold,
  encode,
  type FinalizedEntry,
  type Fold,
  signRecord,
  type Verified,
} from '../../../../protocol/index.js'
import { CHANGED_RULES, decide, HOUR, member, simulator } from '../../../support/federation.js'
import { DEFAULT_RULES, type Simulator } from '../../../support/simulator.js'

const SIGNED_AT = HOUR + DEFAULT_RULES.sealDeadlineMs + 100

interface Scenario {
  readonly sim: Simulator
  /** Sim time of the admission's close. */
  readonly closesAt: number
}

function scenario(name: string): Scenario {
  const sim = simulator(undefined, name)
  const admission = decide(sim, {
    by: 's1',
    at: 10,
    action: { type: 'admit-member', member: member(sim, 'n1', ['voter']) },
    voters: ['s1', 's2', 's3'],
    sealers: ['s1', 's2'],
  })
  return { sim, closesAt: admission.closesAt }
}

/** A checkpoint signed by hand over `body`, with its finalized entries attached. */
function signCheckpoint(
  sim: Simulator,
  by: string,
  body: CheckpointBody,
  finalized: readonly FinalizedEntry[],
): Verified<'checkpoint'> {
  return signRecord(
    { kind: 'checkpoint', federation: sim.federation, at: sim.base + SIGNED_AT, body },
    sim.signer(by),
    { finalized },
  )
}

/** s1's and s2's copies of one content: enough to count (t = 2) if the content holds. */
function signedByT(sim: Simulator, body: CheckpointBody, finalized: readonly FinalizedEntry[]) {
  return ['s1', 's2'].map((by) => signCheckpoint(sim, by, body, finalized))
}

/** `finalized` with `entry` added in CID order, and the body naming the new list. */
function listing(
  body: CheckpointBody,
  finalized: readonly FinalizedEntry[],
  entry: FinalizedEntry,
): { body: CheckpointBody; finalized: FinalizedEntry[] } {
  const entries = [...finalized, entry].sort(([a], [b]) => compareCids(a, b))
  const list = buildList(entries)
  return { body: { ...body, finalized: { root: list.root, count: list.count } }, finalized: entries }
}

function foldOf(sim: Simulator, records: Iterable<AnyVerified>): Fold {
  const fold = createFold(sim.genesis)
  for (const r of records) fold.add(r)
  return fold
}

function recordsOf(sim: Simulator): AnyVerified[] {
  return [...sim.fold.records()].filter((r) => r.record.kind !== 'genesis')
}

function codeOf(fold: Fold, record: AnyVerified): string | undefined {
  const report = fold.report(record.cid)
  return report && report.status !== 'applied' ? report.code : report?.status
}

/** A proposal on the head that closes at `closesAt` (sim time); nobody votes or seals it. */
function openProposal(sim: Simulator, closesAt: number, name: string): Verified<'proposal'> {
  return sim.proposal('s3', closesAt - 1100, {
    closesAt,
    action: { type: 'admit-member', member: member(sim, name, ['voter']) },
  })
}

describe('checkpoint-epoch: the epoch is a boundary of the head state interval', () => {
  it('one millisecond off the boundary → checkpoint-epoch and it counts for nothing; on it, the same content counts', () => {
    const { sim } = scenario('epoch boundary')
    const honest = checkpointFor(sim.fold.state(), sim.base + HOUR)
    const off = signedByT(sim, { ...honest.body, epoch: sim.base + HOUR + 1 }, honest.finalized)
    const offFold = foldOf(sim, [...recordsOf(sim), ...off])
    for (const c of off) expect(codeOf(offFold, c)).toBe('checkpoint-epoch')
    expect(offFold.state().checkpoint).toBeUndefined()
    const on = signedByT(sim, honest.body, honest.finalized)
    const onFold = foldOf(sim, [...recordsOf(sim), ...on])
    for (const c of on) expect(codeOf(onFold, c)).toBe('applied')
    expect(onFold.state().checkpoint?.epoch).toBe(sim.base + HOUR)
  })

  it("the head state's interval decides, not the genesis': after a rule change to two hours, HOUR is refused", () => {
    const sim = simulator(undefined, 'epoch after a rule change')
    decide(sim, {
      by: 's1',
      at: 10,
      action: { type: 'change-rules', rules: { ...CHANGED_RULES, checkpointIntervalMs: 2 * HOUR } },
      voters: ['s1', 's2', 's3'],
      sealers: ['s1', 's2'],
    })
    const atHour = checkpointFor(sim.fold.state(), sim.base + HOUR)
    expect(atHour.body.height).toBe(1)
    const refused = signedByT(sim, atHour.body, atHour.finalized)
    const atTwo = checkpointFor(sim.fold.state(), sim.base + 2 * HOUR)
    const counted = signedByT(sim, atTwo.body, atTwo.finalized)
    const fold = foldOf(sim, [...recordsOf(sim), ...refused, ...counted])
    for (const c of refused) expect(codeOf(fold, c)).toBe('checkpoint-epoch')
    for (const c of counted) expect(codeOf(fold, c)).toBe('applied')
    expect(fold.state().checkpoint?.epoch).toBe(sim.base + 2 * HOUR)
  })
})

describe('checkpoint-epoch: every known proposal listed closed by the epoch', () => {
  it('a listed proposal closing after the epoch → checkpoint-epoch; one closing at the epoch is covered', () => {
    const { sim } = scenario('listed after the epoch')
    const late = openProposal(sim, HOUR + 1, 'late')
    const atEpoch = openProposal(sim, HOUR, 'at epoch')
    sim.add(late, atEpoch)
    const honest = checkpointFor(sim.fold.state(), sim.base + HOUR)
    // Neither is decided, so an honest list names neither.
    expect(honest.finalized.some(([c]) => c.equals(late.cid) || c.equals(atEpoch.cid))).toBe(false)
    const tooEarly = listing(honest.body, honest.finalized, [late.cid, 'final-rejected'])
    const refused = signedByT(sim, tooEarly.body, tooEarly.finalized)
    const refusedFold = foldOf(sim, [...recordsOf(sim), ...refused])
    for (const c of refused) expect(codeOf(refusedFold, c)).toBe('checkpoint-epoch')
    expect(refusedFold.state().checkpoint).toBeUndefined()
    const covering = listing(honest.body, honest.finalized, [atEpoch.cid, 'final-rejected'])
    const counted = signedByT(sim, covering.body, covering.finalized)
    const countedFold = foldOf(sim, [...recordsOf(sim), ...counted])
    for (const c of counted) expect(codeOf(countedFold, c)).toBe('applied')
    expect(countedFold.state().proposals.get(atEpoch.key)?.phase).toBe('final-rejected')
  })

  it('a listed proposal not known yet: the checkpoint counts until it arrives, then checkpoint-epoch, as a batch fold says', () => {
    const { sim } = scenario('listed and unknown')
    const late = openProposal(sim, HOUR + 1, 'late')
    const honest = checkpointFor(sim.fold.state(), sim.base + HOUR)
    const tooEarly = listing(honest.body, honest.finalized, [late.cid, 'final-rejected'])
    const checkpoints = signedByT(sim, tooEarly.body, tooEarly.finalized)
    const fold = foldOf(sim, [...recordsOf(sim), ...checkpoints])
    expect(fold.state().checkpoint?.epoch).toBe(sim.base + HOUR)
    for (const c of checkpoints) expect(codeOf(fold, c)).toBe('applied')
    fold.add(late)
    expect(fold.state().checkpoint).toBeUndefined()
    for (const c of checkpoints) expect(codeOf(fold, c)).toBe('checkpoint-epoch')
    const batch = foldOf(sim, [...recordsOf(sim), late, ...checkpoints])
    expect(canonicalState(fold.state())).toEqual(canonicalState(batch.state()))
    for (const r of [late, ...checkpoints]) expect(fold.report(r.cid)).toEqual(batch.report(r.cid))
  })
})

describe('checkpoint-epoch comes after the label and head checks', () => {
  const { sim } = scenario('check order')
  const honest = checkpointFor(sim.fold.state(), sim.base + HOUR)
  const offEpoch = { ...honest.body, epoch: sim.base + HOUR + 1 }

  function codesOf(body: CheckpointBody, finalized: readonly FinalizedEntry[]): (string | undefined)[] {
    const checkpoints = signedByT(sim, body, finalized)
    const fold = foldOf(sim, [...recordsOf(sim), ...checkpoints])
    return checkpoints.map((c) => codeOf(fold, c))
  }

  it('a bad label and an epoch off the interval → checkpoint-label', () => {
    const badLabels = honest.finalized.map(([c]) => [c, 'open'] as const)
    const list = buildList(badLabels)
    const body = { ...offEpoch, finalized: { root: list.root, count: list.count } }
    expect(codesOf(body, badLabels)).toEqual(['checkpoint-label', 'checkpoint-label'])
  })

  it('a height the chain does not reach and an epoch off the interval → checkpoint-head', () => {
    expect(codesOf({ ...offEpoch, height: 2 }, honest.finalized)).toEqual([
      'checkpoint-head',
      'checkpoint-head',
    ])
  })

  it('an unknown head and an epoch off the interval → pending (basis-unknown)', () => {
    const unknownHead: CID = cidOfBlock(encode({ a: 'head nobody has' }))
    expect(codesOf({ ...offEpoch, head: unknownHead }, honest.finalized)).toEqual([
      'basis-unknown',
      'basis-unknown',
    ])
  })
})
