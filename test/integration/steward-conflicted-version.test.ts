/**
 * "Never seal a second ratification of a `name@version` already ratified" (protocol/SPEC.md
 * §10, steward duties) when the version is `conflicted`: two of its manifests are ratified
 * (two ratifications that closed together; this steward seals only the first and defers the other
 * while the first may pass, but other stewards make both final), and a third ratification of the
 * same version comes. The steward refuses it, as it refuses a second
 * ratification of a `ratified` version (node/steward.ts; it once sealed this one).
 *
 * One steward node (s1) of a four-steward federation at threshold 3, on a fake clock; the other
 * stewards' seals are signed by the Simulator and handed to the node's store.
 */
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { importDirectory } from '../../node/weights/directory.js'
import {
  importWeights,
  ratification,
  SHORT_RULES,
  sealsOf,
  startOnFakeClock,
  viewOf,
  votesBy,
} from '../support/stewards.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { until } from '../support/until.js'

const KEY_PREFIX = 'allmende-steward-conflicted-test:'
const { sealGraceMs } = SHORT_RULES

const root = tempDirForFile('allmende-steward-conflicted-')

describe('a ratification of a name@version that is conflicted', () => {
  it('is not sealed: the version already has ratified manifests', async () => {
    const modelDir = join(root(), 'model')
    await generateModel(modelDir, { seed: 61, layers: 1, vocab: 256 })
    const weights = await importDirectory(modelDir)
    const { sim, net, at } = await startOnFakeClock(
      { name: 'conflicted', keyPrefix: KEY_PREFIX },
      { root: root(), tag: 'conflicted', names: ['s1'], helia: true },
    )
    const node = net.nodes[0]!
    const s1 = sim.did('s1')
    try {
      expect((await importWeights(node, modelDir)).root).toBe(weights.root.toString())
      const manifest = (id: string, t: number) =>
        sim.manifest('s1', t, { id, name: 'tiny', version: '1.0.0', description: id, weights })
      const ratify = (m: ReturnType<typeof manifest>, t: number, closesAt: number) =>
        ratification(sim, 's1', t, m.cid, closesAt)

      // Two ratifications of tiny@1.0.0 closing together.
      at(100)
      const m1 = manifest('first', 100)
      const m2 = manifest('second', 100)
      const r1 = ratify(m1, 101, 2_700)
      const r2 = ratify(m2, 101, 2_700)
      const votes = [r1, r2].flatMap((p) => votesBy(sim, ['s1', 's2', 's3'], 110, p.cid, 'yes'))
      sim.add(m1, m2, r1, r2, ...votes)
      await net.submitAll([m1, m2, r1, r2, ...votes])
      at(2_700 + sealGraceMs)
      // s1 seals the first in (closesAt, CID) order and defers the other while the first may pass:
      // sealing both in one run would let honest stewards make the version conflicted.
      const [first, second] = [r1, r2].sort((a, b) => Buffer.compare(a.cid.bytes, b.cid.bytes))
      await until(
        () =>
          sealsOf(node, first!.cid, s1).length === 1 &&
          net.events('seal-deferred', { proposal: second!.cid.toString() }).length === 1,
        's1 sealing the first and deferring the second',
      )
      expect(sealsOf(node, second!.cid, s1)).toEqual([])
      // Other stewards make both final-passed all the same (s2, s3 the first; s2, s3, s4 the
      // second): the version is conflicted, and s1 never sealed the second.
      const others = [
        ...['s2', 's3'].map((by) => [first!, by] as const),
        ...['s2', 's3', 's4'].map((by) => [second!, by] as const),
      ]
      for (const [p, by] of others) {
        const seal = sim.seal(by, 2_700 + sealGraceMs + 10, { proposal: p.cid, weightsVerified: true })
        const taken = await node.store.ingest(seal.bytes, [...sim.blocks.values()])
        expect(taken.verdict).toBe('accept')
      }
      expect(viewOf(node, r1.cid)?.phase).toBe('final-passed')
      expect(viewOf(node, r2.cid)?.phase).toBe('final-passed')
      expect(node.store.fold.state().models.get('tiny@1.0.0')?.status).toBe('conflicted')

      // A third ratification of the same version, with weights the steward holds and can verify.
      at(3_800)
      const m3 = manifest('third', 3_800)
      const r3 = ratify(m3, 3_801, 6_400)
      await net.submitAll([m3, r3, ...votesBy(sim, ['s1', 's2', 's3'], 3_810, r3.cid, 'yes')])
      at(6_400 + sealGraceMs)
      // Whichever the steward does, it does it in its next run: seal, or refuse and log why.
      await until(
        () =>
          sealsOf(node, r3.cid, s1).length > 0 ||
          net.events('seal-refused', { proposal: r3.cid.toString() }).length > 0,
        "s1's decision on the third ratification",
      )
      const sealed = sealsOf(node, r3.cid, s1).map((r) => ({
        outcome: r.record.body.outcome,
        weightsVerified: r.record.body.weightsVerified,
      }))
      expect(sealed).toEqual([])
      expect(net.events('seal-refused', { proposal: r3.cid.toString() })).toHaveLength(1)
    } finally {
      await net.stop()
    }
  }, 60_000)
})
