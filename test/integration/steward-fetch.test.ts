/**
 * Stewards fetch the weights they do not hold (protocol/SPEC.md §10, steward duties): four steward
 * nodes at seal threshold 3 (test/support/stewards.ts), only the first holding the model; the
 * others find blocks missing, fetch them in the background (from the first steward's trustless
 * gateway when configured, else bitswap), check them on a later tick and seal
 * `weightsVerified: true`. Weights that never appear, or do not match their manifest, are sealed
 * `false` and the ratification is final-rejected. Once a ratified version is revoked, its weights
 * are unpinned after the configured delay.
 */
import { appendFile, cp, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { FsBlockstore } from 'blockstore-fs'
import { describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { importDirectory } from '../../node/weights/directory.js'
import { verifyDag } from '../../node/weights/verify.js'
import type { CID, Rules } from '../../protocol/index.js'
import { submit } from '../support/cluster.js'
import {
  holdWeights,
  ratification,
  startOnRealClock,
  submitRatificationNow,
  untilFinalPassed,
  viewOf,
  votesBy,
} from '../support/stewards.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { until } from '../support/until.js'

const KEY_PREFIX = 'allmende-steward-fetch-test:'

const root = tempDirForFile('allmende-steward-fetch-')

/**
 * A fresh federation (it starts "now") and four Helia steward nodes, each with its steward key
 * file, in a star around the first; the other three fetch from the first one's trustless gateway
 * before bitswap.
 */
const federation = (name: string, tag: string, rules: Partial<Rules>, unpinRevokedAfterMs?: number) =>
  startOnRealClock(
    { name, keyPrefix: KEY_PREFIX, rules },
    {
      root: root(),
      tag,
      helia: true,
      gateways: true,
      retentionTickMs: 200,
      ...(unpinRevokedAfterMs !== undefined ? { unpinRevokedAfterMs } : {}),
    },
  )

describe('stewards without the weights', () => {
  it('fetch them from the gateway of the steward that holds them, seal weightsVerified: true, and unpin them once revoked', async () => {
    const modelDir = join(root(), 'model')
    await generateModel(modelDir, { seed: 5 })
    const { sim, net } = await federation(
      'steward-fetch',
      'fetch',
      { weightsDeadlineMs: 8_000, sealDeadlineMs: 12_000 },
      0,
    )
    const nodes = net.nodes
    try {
      // Only s1 holds the weights.
      const weights = await holdWeights([nodes[0]!], modelDir)
      // Pinned as an import pins it: the gateway serves only weights under a pinned root.
      await nodes[0]!.weights!.pin(weights.root)
      const manifest = { weights: weights.root, files: [...weights.files], size: weights.size }

      const { manifest: m, proposal: p } = await submitRatificationNow(sim, nodes[0]!, 'fetch', weights)
      await untilFinalPassed(nodes, p.cid)
      expect(viewOf(nodes[0]!, p.cid)?.weightsVerified).toBe(true)
      // Seals from stewards other than s1 say true: they fetched and checked the weights.
      const seals = [...nodes[0]!.store.fold.records()].filter(
        (r) => r.record.kind === 'seal' && r.record.body.proposal.equals(p.cid),
      )
      const trueBy = new Set(
        seals
          .filter((r) => r.record.kind === 'seal' && r.record.body.weightsVerified === true)
          .map((r) => r.record.author),
      )
      expect([...trueBy].filter((a) => a !== sim.did('s1')).length).toBeGreaterThanOrEqual(2)
      // The stewards that sealed hold the weights, verified and pinned.
      for (const [i, n] of nodes.entries()) {
        if (!trueBy.has(sim.did(net.names[i]!))) continue
        const store = new FsBlockstore(join(n.home, 'blocks'))
        await store.open()
        try {
          expect((await verifyDag(store, manifest, { maxModelBytes: weights.size })).ok).toBe(true)
        } finally {
          await store.close()
        }
        if (i > 0) expect(await n.p2p.helia!.pins.isPinned(weights.root)).toBe(true)
      }
      // The path they took: the first steward's gateway, every block of the DAG.
      const fetchedLines = net.events('weights-fetched', { root: weights.root.toString() })
      expect(fetchedLines.length).toBeGreaterThanOrEqual(2)
      for (const l of fetchedLines) expect(l.viaGateway).toBe(l.blocks)

      // Revoked: with a delay of 0 the pins go at the next retention tick, and the blocks with them.
      const t2 = Date.now() - sim.base
      const revoke = sim.proposal('s2', t2, {
        closesAt: t2 + 2_600,
        action: { type: 'revoke-model', manifest: m.cid, reason: 'withdrawn by its publisher' },
        basis: sim.federation,
      })
      expect((await submit(nodes[1]!, revoke)).status).toBe(201)
      for (const v of ['s1', 's2', 's3'])
        expect(
          (await submit(nodes[1]!, sim.vote(v, t2 + 10, { proposal: revoke.cid, choice: 'yes' }))).status,
        ).toBe(201)
      await until(
        () => nodes.every((n) => n.store.fold.state().models.get('tiny@1.0.0')?.status === 'revoked'),
        'revoked everywhere',
        25_000,
      )
      const pinned = nodes.slice(1).filter((_, i) => trueBy.has(sim.did(net.names[i + 1]!)))
      for (const n of pinned) {
        const name = net.names[nodes.indexOf(n)]!
        // The log line comes once the pin is gone and the blocks are deleted.
        await until(
          () => net.events('weights-unpinned', { node: name, root: weights.root.toString() }).length > 0,
          `${name} unpinned`,
          10_000,
        )
        expect(await n.p2p.helia!.pins.isPinned(weights.root)).toBe(false)
        const store = new FsBlockstore(join(n.home, 'blocks'))
        await store.open()
        try {
          expect(await store.has(weights.root)).toBe(false)
          const check = await verifyDag(store, manifest, { maxModelBytes: weights.size })
          expect(check.problems[0]?.code).toBe('block-missing')
        } finally {
          await store.close()
        }
      }
      expect(net.events('weights-unpinned', { root: weights.root.toString() }).length > 0).toBe(true)
    } finally {
      await net.stop()
    }
  }, 90_000)
})

describe('weights that never appear or do not match their manifest', () => {
  it('are sealed weightsVerified: false and the ratification is final-rejected', async () => {
    // The honest model, then a copy with one byte flipped and a copy with an extra file.
    const good = join(root(), 'mismatch-good')
    await generateModel(good, { seed: 9 })
    const flippedDir = join(root(), 'mismatch-flipped')
    await cp(good, flippedDir, { recursive: true })
    const target = (await readdir(flippedDir)).find((f) => f.endsWith('.safetensors'))!
    const original = await readFile(join(flippedDir, target))
    original[original.length - 7] = original[original.length - 7]! ^ 0x01
    await writeFile(join(flippedDir, target), original)
    const extraDir = join(root(), 'mismatch-extra')
    await cp(good, extraDir, { recursive: true })
    await appendFile(join(extraDir, 'notes.txt'), 'not in the manifest\n')

    const { sim, net } = await federation('steward-mismatch', 'mismatch', {
      weightsDeadlineMs: 4_000,
      sealDeadlineMs: 12_000,
    })
    const nodes = net.nodes
    try {
      const honest = await holdWeights([nodes[0]!], good)
      const flipped = await holdWeights([nodes[0]!], flippedDir)
      const extra = await holdWeights([nodes[0]!], extraDir)
      for (const w of [honest, flipped, extra]) await nodes[0]!.weights!.pin(w.root)
      // Weights nobody holds: imported into a store no node reads.
      const nowhere = new FsBlockstore(join(root(), 'mismatch-nowhere'))
      await nowhere.open()
      const absentDir = join(root(), 'mismatch-absent')
      await generateModel(absentDir, { seed: 10 })
      const absent = await importDirectory(absentDir, { blockstore: nowhere })
      await nowhere.close()

      const t = Date.now() - sim.base
      // Each manifest states the honest files (names, sizes, sha256) but names other weights.
      const cases = [
        { id: 'absent', weights: absent, files: absent.files, size: absent.size },
        { id: 'flipped', weights: flipped, files: honest.files, size: honest.size },
        { id: 'extra', weights: extra, files: honest.files, size: honest.size },
      ]
      const proposals: CID[] = []
      for (const [i, c] of cases.entries()) {
        const m = sim.manifest('s1', t + i, {
          id: c.id,
          name: `bad-${c.id}`,
          version: '1.0.0',
          weights: { root: c.weights.root, files: c.files, size: c.size },
        })
        const p = ratification(sim, 's1', t + 10 + i, m.cid, t + 2_600)
        proposals.push(p.cid)
        for (const r of [m, p, ...votesBy(sim, ['s1', 's2', 's3', 'v1'], t + 20, p.cid, 'yes')])
          expect((await submit(nodes[0]!, r)).status).toBe(201)
      }
      await until(
        () => nodes.every((n) => proposals.every((p) => viewOf(n, p)?.phase === 'final-rejected')),
        'final-rejected everywhere',
        30_000,
      )
      for (const p of proposals) {
        const v = viewOf(nodes[3]!, p)!
        expect(v.outcome).toBe('passed') // the members said yes; the weights said no
        expect(v.weightsVerified).toBe(false)
      }
      // Weights that never appear are sealed false only once the weights deadline has passed.
      const absentSeals = [...nodes[0]!.store.fold.records()].filter(
        (r) => r.record.kind === 'seal' && r.record.body.proposal.equals(proposals[0]!),
      )
      expect(absentSeals.length).toBeGreaterThanOrEqual(3)
      const absentCloses = viewOf(nodes[0]!, proposals[0]!)!.closesAt
      for (const r of absentSeals) expect(r.record.at).toBeGreaterThanOrEqual(absentCloses + 4_000)
      // No steward sealed any of them true.
      const sealsTrue = [...nodes[0]!.store.fold.records()].filter(
        (r) =>
          r.record.kind === 'seal' &&
          proposals.some((p) => r.record.kind === 'seal' && r.record.body.proposal.equals(p)) &&
          r.record.body.weightsVerified === true,
      )
      expect(sealsTrue).toEqual([])
      // The mismatches were found in the weights themselves, each named. A steward seals false at
      // the weights deadline whether or not its check has finished, so under load the finding can
      // be logged after the seal: wait for it.
      const logText = () => net.lines.map((l) => JSON.stringify(l)).join('\n')
      await until(
        () => logText().includes('sha256-mismatch') && logText().includes('file-extra'),
        'the mismatches logged',
        30_000,
      ).catch(() => {})
      const text = logText()
      expect(text).toContain('sha256-mismatch')
      expect(text).toContain('file-extra')
    } finally {
      await net.stop()
    }
  }, 90_000)
})
