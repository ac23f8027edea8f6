/**
 * Compact and full certificates (SPEC.md §12.1, §12.2, §10; docs/adr/0020). A compact file proves
 * each governance step by its proposal and t agreeing seals of stewards of the state before it,
 * without their votes; the deciding proposal is re-tallied from its votes in both modes. For
 * honest files the two modes agree on everything; the one thing compact takes on trust is shown
 * at the end: t stewards who seal a governance step with a forged tally.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { fastEd25519 } from '../../../node/ed25519-native.js'
import {
  type AnyVerified,
  buildCertificate,
  buildList,
  type CertificateVerdict,
  checkpointFor,
  compareCids,
  createFold,
  type Fold,
  signRecord,
  type Verified,
  verifyCertificate,
} from '../../../protocol/index.js'
import { decodeOwnRecord } from '../../../protocol/record.js'
import {
  blockOf,
  codeSet,
  codes,
  expectRefused,
  operate,
  partsOf,
  verifyWith,
} from '../../support/certificate-surgery.js'
import {
  buildFixture,
  decide,
  type Fixture,
  HOUR,
  hasBlock,
  MODEL,
  member,
  simulator,
} from '../../support/federation.js'
import { DEFAULT_RULES } from '../../support/simulator.js'

const SEAL_DEADLINE = DEFAULT_RULES.sealDeadlineMs

let fx: Fixture
beforeAll(() => {
  fx = buildFixture()
})

/** What a verdict says, without the problems' wording. */
function summary(v: CertificateVerdict) {
  return {
    ok: v.ok,
    status: v.status,
    model: v.model,
    manifest: v.manifest?.toString(),
    proposal: v.proposal?.toString(),
    checkpoint: v.checkpoint && { ...v.checkpoint, cid: v.checkpoint.cid.toString() },
    mark: v.trusted && { height: v.trusted.height, epoch: v.trusted.epoch },
    codes: codeSet(v),
  }
}

describe('honest files: compact and full agree on everything', () => {
  for (const model of [MODEL, 'other@1.0.0', 'twin@1.0.0', 'ghost@1.0.0']) {
    it(`${model}`, () => {
      const compact = verifyWith(fx, buildCertificate(fx.sim.fold, model))
      const full = verifyWith(fx, buildCertificate(fx.sim.fold, model, { mode: 'full' }))
      expect(compact.mode).toBe('compact')
      expect(full.mode).toBe('full')
      expect(summary(compact)).toEqual(summary(full))
    })
  }

  it('after a revocation too', () => {
    const f = buildFixture()
    decide(f.sim, {
      by: 's1',
      at: f.epoch + 10_000,
      action: { type: 'revoke-model', manifest: f.llama.manifest.cid, reason: 'withdrawn' },
      voters: ['s1', 's2', 'v1'],
      sealers: ['s1', 's2'],
    })
    const at2 = 2 * HOUR + SEAL_DEADLINE + 100
    f.sim.add(f.sim.checkpoint('s1', at2, 2 * HOUR), f.sim.checkpoint('s2', at2 + 1, 2 * HOUR))
    const now = f.sim.base + 2 * HOUR + SEAL_DEADLINE + 60_000
    const verdict = (mode: 'full' | 'compact') =>
      verifyCertificate(f.sim.federation, buildCertificate(f.sim.fold, MODEL, { mode }), {
        now,
        ed25519: fastEd25519,
      })
    expect(verdict('compact').status).toBe('revoked')
    expect(summary(verdict('compact'))).toEqual(summary(verdict('full')))
  })

  it('a compact file is smaller: no votes of chain steps, no list blocks of their seals', () => {
    const full = buildCertificate(fx.sim.fold, MODEL, { mode: 'full' })
    expect(fx.car.length).toBeLessThan(full.length)
    for (const step of fx.chain) {
      expect(hasBlock(fx.car, step.proposal.cid)).toBe(true)
      for (const vote of step.votes) expect(hasBlock(fx.car, vote.cid)).toBe(false)
      for (const seal of step.seals) expect(hasBlock(fx.car, seal.record.body.votes.root)).toBe(false)
    }
    // The deciding proposal keeps its votes and lists in both.
    for (const vote of fx.llama.votes) expect(hasBlock(fx.car, vote.cid)).toBe(true)
    expect(hasBlock(fx.car, fx.llama.seals[0]!.record.body.votes.root)).toBe(true)
  })
})

describe('a compact governance step: exactly t agreeing seals, the smallest CIDs', () => {
  /** A federation whose one governance step is sealed by all three stewards (t = 2). */
  function threeSealers() {
    const sim = simulator()
    const step = decide(sim, {
      by: 's1',
      at: 10,
      action: { type: 'admit-member', member: member(sim, 'n1', ['voter']) },
      voters: ['s1', 's2', 's3'],
      sealers: ['s1', 's2', 's3'],
    })
    const m = sim.manifest('v1', 1500, { id: 'm', name: 'm', version: '1.0.0' })
    sim.add(m)
    const ratify = decide(sim, {
      by: 's1',
      at: 1600,
      action: { type: 'ratify-model', manifest: m.cid },
      voters: ['s1', 's2', 'v1'],
      sealers: ['s1', 's2'],
    })
    const at = HOUR + SEAL_DEADLINE + 100
    sim.add(sim.checkpoint('s1', at, HOUR), sim.checkpoint('s2', at + 1, HOUR))
    const now = sim.base + HOUR + SEAL_DEADLINE + 1000
    return { sim, step, ratify, now, model: 'm@1.0.0' }
  }

  it('holds the two seals with the smallest CIDs, without lists; full holds all three with lists', () => {
    const { sim, step, model, now } = threeSealers()
    const compact = buildCertificate(sim.fold, model)
    const smallest = [...step.seals].sort((a, b) => compareCids(a.cid, b.cid))
    expect(smallest.map((s) => hasBlock(compact, s.cid))).toEqual([true, true, false])
    for (const seal of step.seals) expect(hasBlock(compact, seal.record.body.votes.root)).toBe(false)
    const full = buildCertificate(sim.fold, model, { mode: 'full' })
    for (const seal of step.seals) expect(hasBlock(full, seal.cid)).toBe(true)
    const opts = { now, ed25519: fastEd25519 }
    expect(verifyCertificate(sim.federation, compact, opts).problems).toEqual([])
    expect(verifyCertificate(sim.federation, full, opts).problems).toEqual([])
  })

  it('the third seal added to a compact file → cert-not-canonical', () => {
    const { sim, step, model, now } = threeSealers()
    const largest = [...step.seals].sort((a, b) => compareCids(b.cid, a.cid))[0]!
    const car = operate(buildCertificate(sim.fold, model), { add: [blockOf(largest)] })
    const v = verifyCertificate(sim.federation, car, { now, ed25519: fastEd25519 })
    expect(codes(v)).toEqual(['cert-not-canonical'])
  })

  it('one of the t seals removed → the chain is not sealed: cert-checkpoint-invalid, cert-checkpoint-unsigned', () => {
    const { sim, step, model, now } = threeSealers()
    const compact = buildCertificate(sim.fold, model)
    const held = step.seals.find((s) => hasBlock(compact, s.cid))!
    const v = verifyCertificate(sim.federation, operate(compact, { remove: [held.cid] }), {
      now,
      ed25519: fastEd25519,
    })
    expectRefused(v, 'cert-checkpoint-invalid', 'cert-checkpoint-unsigned')
  })
})

describe('the deciding proposal is re-tallied in both modes', () => {
  it('its seals re-signed with a forged tally by the same stewards → refused in compact too', () => {
    const f = buildFixture()
    const forged = f.llama.seals.map((seal) =>
      signRecord(
        {
          kind: 'seal',
          federation: f.sim.federation,
          at: seal.record.at,
          body: { ...seal.record.body, tally: { yes: 99, no: 0, abstain: 0 } },
        },
        f.sim.signer(f.sim.nameOf(seal.record.author)!),
        { lists: seal.lists! },
      ),
    )
    const car = operate(f.car, { remove: f.llama.seals.map((s) => s.cid), add: forged.map(blockOf) })
    expectRefused(verifyWith(f, car), 'cert-ratification-unproven')
  })
})

describe('what compact takes on trust (SPEC.md §10): t stewards sealing a governance step', () => {
  /**
   * Everybody votes no on admitting `x` as a publisher, but s1 and s2 (t = 2) seal it passed with a
   * forged tally. A node re-tallies and refuses the step; a compact certificate built from the
   * seals' word, with the stewards' checkpoint over it, holds the step without its votes.
   */
  function forgedStep() {
    const sim = simulator()
    const step = sim.proposal('s1', 10, {
      closesAt: 1110,
      action: { type: 'admit-member', member: member(sim, 'x', ['publisher', 'voter']) },
    })
    sim.add(step)
    const votes = ['s1', 's2', 's3', 'v1'].map((v, i) =>
      sim.vote(v, 20 + i, { proposal: step.cid, choice: 'no' }),
    )
    sim.add(...votes)
    const seals = ['s1', 's2'].map((s, i) =>
      sim.seal(s, 1310 + i, { proposal: step.cid, forgeTally: { yes: 4, no: 0, abstain: 0 } }),
    )
    sim.add(...seals)
    const m = sim.manifest('v1', 30, { id: 'm', name: 'm', version: '1.0.0' })
    sim.add(m)
    const ratify = decide(sim, {
      by: 's1',
      at: 40,
      basis: sim.federation,
      action: { type: 'ratify-model', manifest: m.cid },
      voters: ['s1', 's2', 'v1'],
      sealers: ['s1', 's2'],
    })
    const bare = new Set(seals.map((s) => s.key))
    const trusting = foldTrustingGovernanceSeals(sim.genesis, [...sim.fold.records()].slice(1), bare)
    const content = checkpointFor(trusting.state(), sim.base + HOUR)
    const checkpoints = ['s1', 's2'].map((s, i) =>
      signRecord(
        {
          kind: 'checkpoint',
          federation: sim.federation,
          at: sim.base + HOUR + SEAL_DEADLINE + i,
          body: content.body,
        },
        sim.signer(s),
        { finalized: content.finalized },
      ),
    )
    for (const c of checkpoints) trusting.add(c)
    return { sim, step, votes, seals, ratify, trusting, now: sim.base + HOUR + SEAL_DEADLINE + 1000 }
  }

  it('accepted in compact, refused in full', () => {
    const { sim, step, votes, seals, trusting, now } = forgedStep()
    expect(sim.fold.state().proposals.get(step.key)?.phase).not.toBe('final-passed')
    const opts = { now, ed25519: fastEd25519 }
    const compact = buildCertificate(trusting, 'm@1.0.0')
    const accepted = verifyCertificate(sim.federation, compact, opts)
    expect(accepted.problems).toEqual([])
    expect(accepted.ok).toBe(true)
    expect(accepted.checkpoint?.height).toBe(1)
    // The same records as a full file: the step's votes and the seals' lists added.
    const lists = seals.flatMap((s) => [
      ...buildList(s.lists!.votes).blocks,
      ...buildList(s.lists!.attestations).blocks,
    ])
    const full = operate(compact, { add: [...votes.map(blockOf), ...lists], header: { mode: 'full' } })
    expect(partsOf(full).header.mode).toBe('full')
    const refused = verifyCertificate(sim.federation, full, opts)
    expectRefused(refused, 'cert-checkpoint-invalid', 'cert-checkpoint-unsigned')
    expect(refused.mode).toBe('full')
  })
})

/**
 * A fold that counts governance seals without lists for what they declare, as a compact file's
 * does; the seals named in `bare` are added without their lists.
 */
function foldTrustingGovernanceSeals(
  genesis: Verified<'genesis'>,
  records: readonly AnyVerified[],
  bare: ReadonlySet<string>,
): Fold {
  const fold = createFold(genesis, { declaredGovernanceSeals: true })
  for (const record of records) fold.add(bare.has(record.key) ? decodeOwnRecord(record.bytes)! : record)
  return fold
}
