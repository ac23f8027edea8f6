/**
 * Two manifests naming the same weights (protocol/SPEC.md §10, steward duties): four steward
 * nodes at threshold 3 on 127.0.0.1 sharing a fake clock (test/support/stewards.ts); only s1
 * holds the weights, the others fetch them from s1's trustless gateway. Two ratifications of different models with the
 * same weights root close together, so each steward's duty asks for both weights checks in one
 * run. A fetching steward fetches the root once: the second manifest waits until that fetch has
 * ended and is then checked against the blocks it brought, with no fetch of its own. Both
 * ratifications are sealed `weightsVerified: true` by every steward and become final.
 *
 * The clock stays at `closesAt + sealGraceMs`, before the weights deadline: a steward seals only
 * once its check says true, never `false` for want of time, however slow the fetch.
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
  untilFinalPassed,
  viewOf,
  votesBy,
} from '../support/stewards.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { until } from '../support/until.js'

const KEY_PREFIX = 'allmende-steward-shared-weights-test:'
const { votingPeriodMs, sealGraceMs, weightsDeadlineMs } = SHORT_RULES

const root = tempDirForFile('allmende-steward-shared-weights-')

describe('two ratifications whose manifests name the same weights', () => {
  it('are checked with one fetch of the root per steward, and both are sealed weightsVerified: true', async () => {
    expect(votingPeriodMs).toBeGreaterThan(2 * sealGraceMs)
    expect(weightsDeadlineMs).toBeGreaterThan(sealGraceMs)
    // The default demo model (a few MiB, many blocks): its fetch is still running while the
    // steward's duty moves on from the first ratification to the second.
    const modelDir = join(root(), 'model')
    await generateModel(modelDir, { seed: 41 })
    const weights = await importDirectory(modelDir)
    const rootKey = weights.root.toString()

    const { sim, clock, net, at } = await startOnFakeClock(
      { name: 'shared-weights', keyPrefix: KEY_PREFIX },
      { root: root(), tag: 'shared', helia: true, gateways: true },
    )
    try {
      // Only s1 holds the weights; s2, s3 and s4 fetch them from its gateway.
      expect((await importWeights(net.nodes[0]!, modelDir)).root).toBe(rootKey)
      const fetchers = net.names.slice(1)

      at(100)
      const manifests = ['alpha', 'beta'].map((name) =>
        sim.manifest('s1', 100, { id: name, name: `shared-${name}`, version: '1.0.0', weights }),
      )
      expect(manifests[0]!.cid.equals(manifests[1]!.cid)).toBe(false)
      expect(manifests.every((m) => m.record.body.weights.equals(weights.root))).toBe(true)
      // Both close at the same moment, a voting period after they were made: each steward's duty
      // finds them due in the same run.
      const closesAt = 2_700
      expect(closesAt - 101).toBeGreaterThanOrEqual(votingPeriodMs)
      const proposals = manifests.map((m) => ratification(sim, 's1', 101, m.cid, closesAt))
      await net.submitAll([
        ...manifests,
        ...proposals,
        ...proposals.flatMap((p) => votesBy(sim, ['s1', 's2', 's3'], 110, p.cid, 'yes')),
      ])
      for (const node of net.names) expect(net.events('weights-check-started', { node })).toEqual([])

      // Closed and the grace passed; the weights deadline not, and the clock stays here.
      at(closesAt + sealGraceMs)
      await until(
        () =>
          net.nodes.every((n) =>
            proposals.every((p) => net.names.every((s) => sealsOf(n, p.cid, sim.did(s)).length === 1)),
          ),
        'every steward sealing both ratifications, on every node',
        45_000,
      )
      expect(clock.now()).toBeLessThan(sim.base + closesAt + weightsDeadlineMs)

      // Each fetching steward started one check for the two manifests, fetched the root once
      // (every block, through s1's gateway), and checked the other manifest with what it brought.
      const manifestKeys = manifests.map((m) => m.cid.toString())
      for (const node of fetchers) {
        const started = net.events('weights-check-started', { node })
        expect(started, `${node}: weights-check-started`).toHaveLength(1)
        expect(started[0]!.root).toBe(rootKey)
        expect(manifestKeys).toContain(started[0]!.manifest)
        const fetched = net.events('weights-fetched', { node, root: rootKey })
        expect(fetched, `${node}: weights-fetched`).toHaveLength(1)
        expect(fetched[0]!.fetched).toBe(fetched[0]!.blocks)
        expect(fetched[0]!.viaGateway).toBe(fetched[0]!.blocks)
        expect(net.events('weights-checked', { node })).toEqual([
          expect.objectContaining({ manifest: started[0]!.manifest, ok: true }),
        ])
        expect(await net.nodes[net.names.indexOf(node)]!.p2p.helia!.pins.isPinned(weights.root)).toBe(true)
      }
      // s1 held the weights: both checked at once, nothing fetched.
      expect(net.events('weights-check-started', { node: 's1' })).toEqual([])
      expect(net.events('weights-fetched', { node: 's1' })).toEqual([])
      expect(net.lines.filter((l) => l.event.startsWith('weights-') && l.level === 'warn')).toEqual([])

      // Every seal of both says weightsVerified: true, and both models are ratified everywhere.
      for (const [i, p] of proposals.entries()) {
        for (const node of net.names)
          expect(net.events('sealed', { node, proposal: p.cid.toString() })).toEqual([
            expect.objectContaining({ outcome: 'passed', weightsVerified: true }),
          ])
        const model = `shared-${['alpha', 'beta'][i]}@1.0.0`
        await untilFinalPassed(net.nodes, p.cid)
        for (const n of net.nodes) {
          const seals = sealsOf(n, p.cid)
          expect(seals).toHaveLength(4)
          for (const s of seals) {
            expect(s.record.body.outcome).toBe('passed')
            expect(s.record.body.weightsVerified).toBe(true)
          }
          expect(viewOf(n, p.cid)?.weightsVerified).toBe(true)
          const state = n.store.fold.state().models.get(model)
          expect(state?.status).toBe('ratified')
          expect(state?.status === 'ratified' && state.manifest?.equals(manifests[i]!.cid)).toBe(true)
        }
      }
    } finally {
      await net.stop()
    }
  }, 90_000)
})
