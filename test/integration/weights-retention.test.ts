/**
 * Revoked weights are unpinned after the configured delay (node/weights/retention.ts), with a
 * delay > 0: four steward nodes at threshold 3 on 127.0.0.1 sharing a fake clock, each holding
 * two models imported (and pinned) through its HTTP API. Two revocations close 5 s apart; the
 * clock is then set to where the first one's delay has run out and the second one's has not, so
 * the retention run that lets the first weights go is the same run that keeps the second.
 * The retention timer runs every 100 ms of real time; only the fake clock decides what is due.
 */
import { join } from 'node:path'
import { FsBlockstore } from 'blockstore-fs'
import { describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import type { AllmendeNode } from '../../node/node.js'
import { type DirectoryImport, importDirectory } from '../../node/weights/directory.js'
import { verifyDag } from '../../node/weights/verify.js'
import { importWeights, SHORT_RULES, startOnFakeClock, votesBy } from '../support/stewards.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { until } from '../support/until.js'

const KEY_PREFIX = 'allmende-weights-retention-test:'
const DELAY_MS = 20_000
const { sealGraceMs } = SHORT_RULES

const root = tempDirForFile('allmende-retention-')

/** Whether node `n` still holds `model`: its pin, and every block of the DAG checked. */
async function held(
  n: AllmendeNode,
  model: DirectoryImport,
): Promise<{ pinned: boolean; problems: string[] }> {
  const pinned = await n.p2p.helia!.pins.isPinned(model.root)
  // A second handle on the node's block directory, read only (as the other weights tests do).
  const store = new FsBlockstore(join(n.home, 'blocks'))
  await store.open()
  try {
    const check = await verifyDag(
      store,
      { weights: model.root, files: [...model.files], size: model.size },
      { maxModelBytes: model.size },
    )
    return { pinned, problems: check.problems.map((p) => p.code) }
  } finally {
    await store.close()
  }
}

describe('revoked weights with unpinRevokedAfterMs > 0', () => {
  it('stay pinned and whole until the delay after the revocation has run out, then are unpinned and deleted', async () => {
    const dirA = join(root(), 'model-a')
    const dirB = join(root(), 'model-b')
    await generateModel(dirA, { seed: 41, layers: 1, vocab: 256 })
    await generateModel(dirB, { seed: 42, layers: 1, vocab: 256 })
    const a = await importDirectory(dirA)
    const b = await importDirectory(dirB)
    expect(a.root.equals(b.root)).toBe(false)

    const { sim, net, at } = await startOnFakeClock(
      { name: 'retention', keyPrefix: KEY_PREFIX },
      { root: root(), tag: 'retention', helia: true, unpinRevokedAfterMs: DELAY_MS, retentionTickMs: 100 },
    )
    try {
      for (const n of net.nodes) {
        expect(await importWeights(n, dirA)).toMatchObject({ root: a.root.toString(), pinned: true })
        expect(await importWeights(n, dirB)).toMatchObject({ root: b.root.toString(), pinned: true })
      }
      at(100)
      const mA = sim.manifest('s1', 100, { id: 'a', name: 'a', version: '1.0.0', weights: a })
      const mB = sim.manifest('s1', 100, { id: 'b', name: 'b', version: '1.0.0', weights: b })
      // Revocations closing at 2700 (A) and 7700 (B): A's weights may go at 22700, B's at 27700.
      const closesA = 2_700
      const closesB = 7_700
      const revoke = (m: typeof mA, closesAt: number) =>
        sim.proposal('s2', 101, {
          closesAt,
          action: { type: 'revoke-model', manifest: m.cid, reason: 'withdrawn' },
          basis: sim.federation,
        })
      const rA = revoke(mA, closesA)
      const rB = revoke(mB, closesB)
      await net.submitAll([
        mA,
        mB,
        rA,
        rB,
        ...[rA, rB].flatMap((p) => votesBy(sim, ['s1', 's2', 's3'], 110, p.cid, 'yes')),
      ])
      const status = (n: AllmendeNode, model: string) => n.store.fold.state().models.get(model)?.status

      at(closesA + sealGraceMs)
      await until(() => net.nodes.every((n) => status(n, 'a@1.0.0') === 'revoked'), 'a revoked everywhere')
      at(closesB + sealGraceMs)
      await until(() => net.nodes.every((n) => status(n, 'b@1.0.0') === 'revoked'), 'b revoked everywhere')
      // Both revoked, neither delay run out: everything is still held.
      for (const n of net.nodes) {
        expect(await held(n, a)).toEqual({ pinned: true, problems: [] })
        expect(await held(n, b)).toEqual({ pinned: true, problems: [] })
      }

      // Exactly A's delay after its close: A is due, B (closing 5 s later) is not.
      at(closesA + DELAY_MS)
      const unpinned = (node: string, model: DirectoryImport) =>
        net.events('weights-unpinned', { node, root: model.root.toString() })
      await until(
        () => net.names.every((node) => unpinned(node, a).length === 1),
        "A's weights unpinned everywhere",
      )
      for (const [i, n] of net.nodes.entries()) {
        const line = unpinned(net.names[i]!, a)[0]!
        expect(line.reason).toBe('revoked')
        expect(line.blocks).toBeGreaterThan(1)
        // Nothing of A is shared with B, so every block A's pin held is deleted.
        expect(line.deleted).toBe(line.blocks)
        expect(await held(n, a)).toMatchObject({
          pinned: false,
          problems: expect.arrayContaining(['block-missing']),
        })
        // The run that let A go looked at B with the same clock and kept it.
        expect(unpinned(net.names[i]!, b)).toEqual([])
        expect(await held(n, b)).toEqual({ pinned: true, problems: [] })
      }

      // B's delay runs out too.
      at(closesB + DELAY_MS)
      await until(
        () => net.names.every((node) => unpinned(node, b).length === 1),
        "B's weights unpinned everywhere",
      )
      for (const [i, n] of net.nodes.entries()) {
        expect(unpinned(net.names[i]!, b)[0]!.reason).toBe('revoked')
        expect(await held(n, b)).toMatchObject({
          pinned: false,
          problems: expect.arrayContaining(['block-missing']),
        })
        // A, once let go, is not unpinned again.
        expect(unpinned(net.names[i]!, a)).toHaveLength(1)
      }
      expect(net.events('weights-unpin-failed')).toEqual([])
    } finally {
      await net.stop()
    }
  }, 60_000)
})
