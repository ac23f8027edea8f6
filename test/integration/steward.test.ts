/**
 * Steward nodes seal on their own (protocol/SPEC.md §10, steward duties): four steward nodes at
 * seal threshold 3 on 127.0.0.1 (test/support/stewards.ts), real time with short timing rules.
 */
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { buildCertificate, proposalStatus, type Rules, verifyCertificate } from '../../protocol/index.js'
import { submit } from '../support/cluster.js'
import {
  admission,
  holdWeights,
  SHORT_RULES,
  startOnRealClock,
  submitRatificationNow,
  untilFinalPassed,
  viewOf,
} from '../support/stewards.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { until } from '../support/until.js'

const KEY_PREFIX = 'allmende-steward-test:'
const { sealGraceMs, sealDeadlineMs } = SHORT_RULES
const root = tempDirForFile('allmende-steward-')

/**
 * A fresh federation per test (it starts "now", so its proposals are open while it runs) and its
 * four steward nodes, each with its steward key file, in a star around the first.
 */
const federation = (name: string, tag: string, options: { rules?: Partial<Rules>; helia?: boolean } = {}) =>
  startOnRealClock(
    { name, keyPrefix: KEY_PREFIX, rules: options.rules ?? {} },
    {
      root: root(),
      tag,
      helia: options.helia ?? false,
    },
  )

describe('four steward nodes at threshold 3', () => {
  it('take a proposal from open to final on their own, and the fourth agrees', async () => {
    const { sim, net } = await federation('seal-final', 'final')
    const nodes = net.nodes
    // Simulation time now: node start-up takes a while, and a proposal signed at base + 0
    // would be first seen after at + sealGraceMs, i.e. backdated.
    const t = Date.now() - sim.base
    try {
      const p = admission(sim, 's1', t, 'new', t + 2_600)
      expect((await submit(nodes[0]!, p)).status).toBe(201)
      for (const [i, v] of ['s1', 's2', 's3', 'v1'].entries()) {
        const vote = sim.vote(v, t + 10 + i, { proposal: p.cid, choice: v === 'v1' ? 'no' : 'yes' })
        expect((await submit(nodes[i % 4]!, vote)).status).toBe(201)
      }
      expect(viewOf(nodes[0]!, p.cid)?.reason).toBeUndefined()
      expect(proposalStatus(viewOf(nodes[0]!, p.cid)!, Date.now())).toBe('open')
      await untilFinalPassed(nodes, p.cid)
      // Every steward sealed, once, the same tally; the fourth's seal agrees with the others.
      await until(
        () =>
          nodes.every(
            (n) => [...n.store.fold.records()].filter((r) => r.record.kind === 'seal').length === 4,
          ),
        'all four seals everywhere',
        10_000,
      )
      const seals = [...nodes[3]!.store.fold.records()].filter((r) => r.record.kind === 'seal')
      const authors = new Set(seals.map((s) => s.record.author))
      expect(authors.size).toBe(4)
      for (const s of seals) {
        if (s.record.kind !== 'seal') continue
        expect(s.record.body.outcome).toBe('passed')
        expect(s.record.body.tally).toEqual({ yes: 3, no: 1, abstain: 0 })
        expect(nodes[3]!.store.fold.report(s.cid)?.status).toBe('applied')
      }
      expect(viewOf(nodes[3]!, p.cid)?.equivocators).toEqual([])
    } finally {
      await net.stop()
    }
  }, 60_000)

  it('leave a proposal expired when only 2 of 4 are up', async () => {
    const { sim, net } = await federation('seal-expired', 'expired')
    const nodes = net.nodes
    // Simulation time now: node start-up takes a while, and a proposal signed at base + 0
    // would be first seen after at + sealGraceMs, i.e. backdated.
    try {
      await Promise.all([nodes[2]!.stop(), nodes[3]!.stop()])
      const t = Date.now() - sim.base
      const p = sim.proposal('s1', t, {
        closesAt: t + 2_600,
        action: { type: 'remove-member', id: sim.did('v1') },
        basis: sim.federation,
      })
      expect((await submit(nodes[0]!, p)).status).toBe(201)
      for (const v of ['s1', 's2', 's3'])
        expect(
          (await submit(nodes[0]!, sim.vote(v, t + 20, { proposal: p.cid, choice: 'yes' }))).status,
        ).toBe(201)
      // The two up seal; two seals never reach the threshold.
      await until(
        () => [...nodes[0]!.store.fold.records()].filter((r) => r.record.kind === 'seal').length === 2,
        'two seals',
        10_000,
      )
      const deadline = p.record.body.closesAt + sealDeadlineMs
      await until(() => Date.now() > deadline, 'the seal deadline', 15_000, 100)
      for (const n of nodes.slice(0, 2)) {
        expect(viewOf(n, p.cid)?.phase).toBe('undecided')
        expect(proposalStatus(viewOf(n, p.cid)!, Date.now())).toBe('expired')
      }
    } finally {
      await net.stop()
    }
  }, 60_000)

  it('never count a backdated vote, and never seal a backdated proposal', async () => {
    const { sim, net } = await federation('seal-backdated', 'backdated')
    const nodes = net.nodes
    // Simulation time now: node start-up takes a while, and a proposal signed at base + 0
    // would be first seen after at + sealGraceMs, i.e. backdated.
    const t = Date.now() - sim.base
    try {
      const p = admission(sim, 's1', t, 'late', t + 2_600)
      expect((await submit(nodes[0]!, p)).status).toBe(201)
      for (const v of ['s1', 's2', 's3']) {
        const vote = sim.vote(v, t + 10, { proposal: p.cid, choice: 'yes' })
        expect((await submit(nodes[0]!, vote)).status).toBe(201)
      }
      // A proposal signed as if made 10 s ago and closing as the other does, first seen now.
      const old = admission(sim, 's2', t - 10_000, 'old', t + 2_600)
      expect((await submit(nodes[1]!, old)).status).toBe(201)
      expect(
        (await submit(nodes[1]!, sim.vote('s2', t + 20, { proposal: old.cid, choice: 'yes' }))).status,
      ).toBe(201)
      // Between close + grace/2 (the witness cut-off) and close + grace (when sealing starts): a
      // vote signed before close, received too late to count, yet before any steward has sealed.
      const cutoff = p.record.body.closesAt + Math.floor(sealGraceMs / 2)
      await until(() => Date.now() > cutoff + 20, 'close + grace/2', 10_000, 5)
      expect(
        (await submit(nodes[2]!, sim.vote('s4', t + 1_000, { proposal: p.cid, choice: 'no' }))).status,
      ).toBe(201)
      // After close + grace: another vote signed before close, sent now.
      await until(() => Date.now() > p.record.body.closesAt + sealGraceMs, 'close + grace', 10_000, 50)
      expect(
        (await submit(nodes[2]!, sim.vote('v1', t + 1_000, { proposal: p.cid, choice: 'no' }))).status,
      ).toBe(201)
      await untilFinalPassed(nodes, p.cid)
      // Only the votes received in time count: the backdated noes are in no seal.
      for (const n of nodes) expect(viewOf(n, p.cid)?.tally).toEqual({ yes: 3, no: 0, abstain: 0 })
      // The backdated proposal: no steward seals it.
      await until(
        () => Date.now() > old.record.body.closesAt + sealGraceMs + 1_000,
        'a few ticks',
        10_000,
        50,
      )
      for (const n of nodes) {
        const seals = [...n.store.fold.records()].filter(
          (r) => r.record.kind === 'seal' && r.record.body.proposal.equals(old.cid),
        )
        expect(seals).toHaveLength(0)
      }
    } finally {
      await net.stop()
    }
  }, 60_000)
})

describe('stewards with the weights', () => {
  it('verify them, seal the ratification, sign agreeing checkpoints, and a certificate verifies offline', async () => {
    const modelDir = join(root(), 'model')
    await generateModel(modelDir, { seed: 7 })
    // Room for a loaded machine. Submitting the records took seconds there, so the proposal
    // reached the stewards after at + sealGraceMs and none sealed it (backdated): a longer grace,
    // and a voting period over twice as long (the rules require it), so the votes also arrive
    // before close + grace/2. Every steward checks the weights by the weights deadline (else it
    // seals weightsVerified false and the ratification fails).
    const rules = {
      checkpointIntervalMs: 2_000,
      votingPeriodMs: 9_000,
      sealGraceMs: 4_000,
      weightsDeadlineMs: 9_000,
      sealDeadlineMs: 13_000,
    }
    const { sim, net } = await federation('checkpoints', 'cp', { rules, helia: true })
    const nodes = net.nodes
    try {
      // Every steward holds the weights (as after an upload or a fetch).
      const weights = await holdWeights(nodes, modelDir)
      const { manifest: m, proposal: p } = await submitRatificationNow(sim, nodes[0]!, 'cp', weights)
      // Sealed by the seal deadline, after the close; slack on top for a loaded machine.
      await untilFinalPassed(nodes, p.cid, rules.votingPeriodMs + rules.sealDeadlineMs + 15_000)
      expect(viewOf(nodes[0]!, p.cid)?.weightsVerified).toBe(true)
      // A counted checkpoint covering the decision, on every node: an epoch's checkpoint is signed
      // once its seal deadline has passed.
      await until(
        () => nodes.every((n) => (n.store.fold.state().checkpoint?.epoch ?? 0) >= p.record.body.closesAt),
        'a counted checkpoint after the close',
        rules.sealDeadlineMs + 2 * rules.checkpointIntervalMs + 15_000,
        100,
      )
      const cp = nodes[0]!.store.fold.state().checkpoint!
      const signed = [...nodes[0]!.store.fold.records()].filter(
        (r) => r.record.kind === 'checkpoint' && r.record.body.epoch === cp.epoch,
      )
      expect(new Set(signed.map((r) => r.record.author)).size).toBeGreaterThanOrEqual(3)
      for (const r of signed)
        if (r.record.kind === 'checkpoint') expect(r.record.body.stateRoot.equals(cp.stateRoot)).toBe(true)
      // Exported afterwards, verified with nothing but the federation id.
      const car = buildCertificate(nodes[1]!.store.fold, 'tiny@1.0.0')
      const verdict = verifyCertificate(sim.federation, car, {
        now: Date.now(),
        maxAgeMs: 60_000,
        model: 'tiny@1.0.0',
      })
      expect(verdict.ok, JSON.stringify(verdict.problems)).toBe(true)
      expect(verdict.status).toBe('ratified')
      expect(verdict.manifest?.equals(m.cid)).toBe(true)
      // Too old for a stricter verifier.
      const stale = verifyCertificate(sim.federation, car, { now: Date.now() + 120_000, maxAgeMs: 60_000 })
      expect(stale.ok).toBe(false)
    } finally {
      await net.stop()
    }
  }, 90_000)
})
