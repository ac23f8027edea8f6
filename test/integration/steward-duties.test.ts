/**
 * The steward duties of protocol/SPEC.md §10 that node/steward.ts implements, each seen from
 * outside: four steward nodes at threshold 3 on 127.0.0.1 sharing a fake clock
 * (test/support/stewards.ts), so each proposal becomes due exactly when the test moves the clock
 * past `closesAt + sealGraceMs`, while gossip, sync and the steward's 100 ms tick run in real time.
 *
 * - one seal per proposal and steward, also across a restart (the seal is in the log first);
 * - governance proposals on one basis are sealed in `(closesAt, CID)` order;
 * - a second ratification of a `name@version` already ratified is refused, never sealed;
 * - a ratification whose tally fails is sealed `weightsVerified: false` without a weights check.
 */
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { importDirectory } from '../../node/weights/directory.js'
import { type CID, compareCids, proposalStatus } from '../../protocol/index.js'
import {
  admission,
  importWeights,
  type LogLine,
  ratification,
  SHORT_RULES,
  type StewardNodes,
  sealsOf,
  startOnFakeClock,
  viewOf,
  votesBy,
} from '../support/stewards.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { until } from '../support/until.js'

const KEY_PREFIX = 'allmende-steward-duties-test:'
const { sealGraceMs, sealDeadlineMs, weightsDeadlineMs } = SHORT_RULES

const root = tempDirForFile('allmende-steward-duties-')

/** A fresh federation and its four nodes on a fake clock starting at the genesis. */
const federation = (tag: string, helia = false) =>
  startOnFakeClock({ name: tag, keyPrefix: KEY_PREFIX }, { root: root(), tag, helia })

/** A node's `sealed` log lines for a proposal. */
const sealedLines = (net: StewardNodes, node: string, proposal: CID): LogLine[] =>
  net.events('sealed', { node, proposal: proposal.toString() })

describe('a steward seals once per proposal', () => {
  it('and a restarted steward finds its seal in its own log and never signs a second one', async () => {
    const { sim, net, at } = await federation('restart')
    try {
      at(100)
      // P1 is due from 3700 to 7700; P2 from 4700.
      const p1 = admission(sim, 's1', 100, 'new1', 2_700)
      const p2 = admission(sim, 's1', 100, 'new2', 3_700)
      const votes = [p1, p2].flatMap((p) => votesBy(sim, ['s1', 's2', 's3'], 110, p.cid, 'yes'))
      await net.submitAll([p1, p2, ...votes])

      // P1 due, P2 not yet: s2 seals P1, and its seal reaches every node.
      at(2_700 + sealGraceMs)
      const s2 = sim.did('s2')
      await until(
        () => net.nodes.every((n) => sealsOf(n, p1.cid, s2).length === 1),
        "s2's seal of P1 on every node",
      )
      expect(sealsOf(net.nodes[1]!, p2.cid)).toEqual([])

      // Stopped, then started again without peers: what it holds now came from its own disk.
      const again = await net.restart(1, { isolated: true })
      expect(again.p2p.peers()).toEqual([])
      expect(sealsOf(again, p1.cid, s2)).toHaveLength(1)

      // P2 due too, and P1 still within its seal deadline: the restarted steward's duty runs over
      // both, P1 first (it closes first), and seals only P2.
      at(3_700 + sealGraceMs)
      expect(3_700 + sealGraceMs).toBeLessThan(2_700 + sealDeadlineMs)
      await until(() => sealsOf(again, p2.cid, s2).length === 1, 'the restarted s2 sealing P2')
      expect(sealsOf(again, p1.cid, s2)).toHaveLength(1)
      expect(sealedLines(net, 's2', p1.cid)).toHaveLength(1)
      expect(sealedLines(net, 's2', p2.cid)).toHaveLength(1)
      expect(net.events('seal-not-taken', { node: 's2' })).toEqual([])

      // Back in the federation: every node holds exactly one seal of P1 by s2, and nobody is an
      // equivocator.
      await again.p2p.dial(net.nodes[0]!.p2p.addresses()[0]!)
      await until(
        () => net.nodes.every((n) => sealsOf(n, p2.cid, s2).length === 1),
        "s2's seal of P2 on every node",
      )
      for (const n of net.nodes) {
        expect(sealsOf(n, p1.cid, s2)).toHaveLength(1)
        expect(viewOf(n, p1.cid)?.phase).toBe('final-passed')
        expect(viewOf(n, p1.cid)?.equivocators).toEqual([])
      }
    } finally {
      await net.stop()
    }
  }, 60_000)
})

describe('governance proposals on one basis', () => {
  it('are sealed in (closesAt, CID) order by every steward, and the earliest becomes the head', async () => {
    const { sim, net, at } = await federation('order')
    try {
      at(100)
      const admit = (who: string, closesAt: number) => admission(sim, 's1', 100, who, closesAt)
      // Three closing together (their CIDs decide) and one closing 50 ms earlier.
      const admitted = ['a', 'b', 'c', 'd']
      const proposals = [admit('a', 2_700), admit('b', 2_700), admit('c', 2_650), admit('d', 2_700)]
      const whom = (p: CID) => admitted[proposals.findIndex((q) => q.cid.equals(p))]!
      const order = [...proposals].sort(
        (x, y) => x.record.body.closesAt - y.record.body.closesAt || compareCids(x.cid, y.cid),
      )
      // Sent in the opposite order, so neither arrival nor signing order explains the result.
      const sent = [...order].reverse()
      const votes = sent.flatMap((p) => votesBy(sim, ['s1', 's2', 's3'], 110, p.cid, 'yes'))
      await net.submitAll([...sent, ...votes])

      // All four due at the same instant: each steward seals them in one run of its duty.
      at(2_700 + sealGraceMs)
      await until(
        () =>
          net.nodes.every((n, i) =>
            proposals.every((p) => sealsOf(n, p.cid, sim.did(net.names[i]!)).length === 1),
          ),
        'every steward sealing all four',
      )
      const expected = order.map((p) => p.cid.toString())
      for (const [i, n] of net.nodes.entries()) {
        const name = net.names[i]!
        // Its own seals, in the order its log took them, and its `sealed` lines.
        const own = [...n.store.fold.records()].filter(
          (r) => r.record.kind === 'seal' && r.record.author === sim.did(name),
        )
        expect(own.map((r) => (r.record.kind === 'seal' ? r.record.body.proposal.toString() : ''))).toEqual(
          expected,
        )
        expect(
          net
            .events('sealed', { node: name })
            .map((l) => l.proposal)
            .filter((p) => expected.includes(p as string)),
        ).toEqual(expected)
      }
      // The consequence in the fold: the earliest (closesAt, CID) is the basis's successor, the
      // head; the others passed too but are superseded.
      await until(
        () => net.nodes.every((n) => n.store.fold.state().head.equals(order[0]!.cid)),
        'the earliest proposal as the head everywhere',
      )
      // The head needs only its own seals; the others are decided once the other stewards' seals
      // (and their lists) have reached every node too.
      await until(
        () => net.nodes.every((n) => order.every((p) => viewOf(n, p.cid)?.phase !== 'undecided')),
        'all four decided everywhere',
      )
      for (const n of net.nodes) {
        expect(viewOf(n, order[0]!.cid)?.phase).toBe('final-passed')
        for (const p of order.slice(1)) expect(viewOf(n, p.cid)?.phase).toBe('superseded')
        // Only the head's member was admitted.
        const members = n.store.fold.state().members.map((m) => m.id)
        for (const p of order) expect(members.includes(sim.did(whom(p.cid)))).toBe(p === order[0])
      }
    } finally {
      await net.stop()
    }
  }, 60_000)
})

describe('a second ratification of a name@version already ratified', () => {
  it('is refused by every steward: no seal at all, a seal-refused line, and the first stays ratified', async () => {
    const modelDir = join(root(), 'twice-model')
    await generateModel(modelDir, { seed: 21, layers: 1, vocab: 256 })
    const weights = await importDirectory(modelDir)
    const { sim, net, at } = await federation('twice', true)
    try {
      for (const n of net.nodes) expect((await importWeights(n, modelDir)).root).toBe(weights.root.toString())
      at(100)
      const first = sim.manifest('s1', 100, { id: 'first', name: 'tiny', version: '1.0.0', weights })
      const r1 = ratification(sim, 's1', 101, first.cid, 2_700)
      await net.submitAll([first, r1, ...votesBy(sim, ['s1', 's2', 's3'], 110, r1.cid, 'yes')])
      at(2_700 + sealGraceMs)
      await until(
        () => net.nodes.every((n) => n.store.fold.state().models.get('tiny@1.0.0')?.status === 'ratified'),
        'tiny@1.0.0 ratified everywhere',
      )

      // Another manifest for the same name@version, the same (held, valid) weights: everything a
      // steward needs to seal it true, but for the version being taken already.
      at(3_800)
      const second = sim.manifest('s2', 3_800, {
        id: 'second',
        name: 'tiny',
        version: '1.0.0',
        description: 'the same version again',
        weights,
      })
      const r2 = ratification(sim, 's2', 3_801, second.cid, 6_400)
      await net.submitAll([second, r2, ...votesBy(sim, ['s1', 's2', 's3', 'v1'], 3_810, r2.cid, 'yes')])
      at(6_400 + sealGraceMs)
      await until(
        () =>
          net.names.every(
            (node) => net.events('seal-refused', { node, proposal: r2.cid.toString() }).length > 0,
          ),
        'every steward refusing the second ratification',
      )
      for (const node of net.names) {
        const refused = net.events('seal-refused', { node, proposal: r2.cid.toString() })
        expect(refused).toHaveLength(1)
        expect(refused[0]!.reason).toBe('tiny@1.0.0 is already ratified')
        expect(sealedLines(net, node, r2.cid)).toEqual([])
      }
      // Past its seal deadline: nobody sealed it, it expired, and the first ratification stands.
      at(6_400 + sealDeadlineMs + 1)
      await until(
        () => net.nodes.every((n) => sealsOf(n, r1.cid).length === 4),
        'all four seals of the first ratification everywhere',
      )
      for (const n of net.nodes) {
        expect(sealsOf(n, r2.cid)).toEqual([])
        const v = viewOf(n, r2.cid)!
        expect(v.phase).toBe('undecided')
        expect(proposalStatus(v, sim.base + 6_400 + sealDeadlineMs + 1)).toBe('expired')
        const model = n.store.fold.state().models.get('tiny@1.0.0')
        expect(model?.status).toBe('ratified')
        expect(model?.status === 'ratified' && model.manifest?.equals(first.cid)).toBe(true)
      }
    } finally {
      await net.stop()
    }
  }, 60_000)
})

describe('a ratification whose tally fails', () => {
  it('is sealed weightsVerified: false at once, without a weights check or fetch', async () => {
    // Weights nobody holds: any look at them would start a background fetch and log it.
    const failDir = join(root(), 'fails-model')
    const controlDir = join(root(), 'control-model')
    await generateModel(failDir, { seed: 31, layers: 1, vocab: 256 })
    await generateModel(controlDir, { seed: 32, layers: 1, vocab: 256 })
    const failing = await importDirectory(failDir)
    const control = await importDirectory(controlDir)
    const { sim, net, at } = await federation('tally-fails', true)
    try {
      at(100)
      const mFail = sim.manifest('s1', 100, {
        id: 'fails',
        name: 'fails',
        version: '1.0.0',
        weights: failing,
      })
      const mControl = sim.manifest('s1', 100, {
        id: 'control',
        name: 'control',
        version: '1.0.0',
        weights: control,
      })
      const rFail = ratification(sim, 's1', 101, mFail.cid, 2_700)
      const rControl = ratification(sim, 's1', 101, mControl.cid, 2_700)
      await net.submitAll([
        mFail,
        mControl,
        rFail,
        rControl,
        ...votesBy(sim, ['s1', 's2', 's3', 'v1'], 110, rFail.cid, 'no'),
        ...votesBy(sim, ['s1', 's2', 's3', 'v1'], 110, rControl.cid, 'yes'),
      ])
      // Closed, the grace passed, the weights deadline not: the clock stays here.
      at(2_700 + sealGraceMs)
      await until(
        () => net.nodes.every((n) => sealsOf(n, rFail.cid).length === 4),
        'four seals of the failing ratification everywhere',
      )
      // The control, whose tally passes, is checked: its weights are looked for (and never found).
      await until(
        () =>
          net.names.every(
            (node) =>
              net.events('weights-check-started', { node, manifest: mControl.cid.toString() }).length > 0,
          ),
        'every steward checking the passing ratification',
      )
      for (const s of sealsOf(net.nodes[0]!, rFail.cid)) {
        expect(s.record.body.outcome).toBe('rejected')
        expect(s.record.body.tally).toEqual({ yes: 0, no: 4, abstain: 0 })
        expect(s.record.body.weightsVerified).toBe(false)
        // Sealed when the grace ended, not at the weights deadline.
        expect(s.record.at).toBe(sim.base + 2_700 + sealGraceMs)
        expect(s.record.at).toBeLessThan(sim.base + 2_700 + weightsDeadlineMs)
      }
      for (const node of net.names)
        expect(sealedLines(net, node, rFail.cid)).toEqual([
          expect.objectContaining({ outcome: 'rejected', weightsVerified: false }),
        ])
      // Not one weights log line names the failing manifest or its weights.
      const named = net.lines.filter(
        (l) =>
          l.event.startsWith('weights-') &&
          (l.manifest === mFail.cid.toString() || l.root === failing.root.toString()),
      )
      expect(named).toEqual([])
      expect(net.lines.some((l) => JSON.stringify(l).includes(failing.root.toString()))).toBe(false)
      for (const n of net.nodes) expect(viewOf(n, rFail.cid)?.phase).toBe('final-rejected')
      // The control waits for its weights: no seal before the weights deadline.
      for (const n of net.nodes) expect(sealsOf(n, rControl.cid)).toEqual([])
    } finally {
      await net.stop()
    }
  }, 60_000)
})
