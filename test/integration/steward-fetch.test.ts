/**
 * Stewards fetch the weights they do not hold (DESIGN.md §4): four steward nodes at seal
 * threshold 3, only the first holding the model; the others find blocks missing, fetch them over
 * bitswap in the background, check them on a later tick and seal `weightsVerified: true`.
 */
import { createHash } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FsBlockstore } from 'blockstore-fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { initHome } from '../../node/config.js'
import { createLogger, silentLogger } from '../../node/log.js'
import { type AllmendeNode, startNode } from '../../node/node.js'
import { importDirectory } from '../../node/weights/directory.js'
import { verifyDag } from '../../node/weights/verify.js'
import { type CID, cidKey, type ProposalView } from '../../protocol/index.js'
import { submit } from '../support/cluster.js'
import { rulesWith, Simulator } from '../support/simulator.js'
import { until } from '../support/until.js'

const KEY_PREFIX = 'allmende-steward-fetch-test:'
const stewards = ['s1', 's2', 's3', 's4']

let root: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'allmende-steward-fetch-'))
})
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

/** Four Helia steward nodes, each with its steward key file, in a star around the first. */
async function startStewards(sim: Simulator, tag: string): Promise<AllmendeNode[]> {
  const nodes: AllmendeNode[] = []
  for (const [i, name] of stewards.entries()) {
    const home = join(root, `${tag}-${name}`)
    const keyFile = join(root, `${tag}-${name}.key`)
    const secretKey = createHash('sha256')
      .update(KEY_PREFIX + name)
      .digest()
    await writeFile(
      keyFile,
      JSON.stringify({ version: 1, did: sim.did(name), secretKey: secretKey.toString('base64') }),
      { mode: 0o600 },
    )
    const config = await initHome(home, {
      genesis: sim.genesis,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: i === 0 ? [] : [nodes[0]!.p2p.addresses()[0]!],
      api: '127.0.0.1:0',
      stewardKeyFile: keyFile,
      logLevel: 'warn',
    })
    nodes.push(
      await startNode({
        home,
        config,
        genesis: sim.genesis,
        log: process.env.STEWARD_LOG ? createLogger({ level: 'info' }) : silentLogger,
        helia: true,
        stewardTickMs: 100,
        sync: { intervalMs: 1_000 },
      }),
    )
  }
  await until(() => nodes.every((n) => n.p2p.subscribers().length >= 1), 'subscriptions')
  return nodes
}

const view = (n: AllmendeNode, p: CID): ProposalView | undefined =>
  n.store.fold.state().proposals.get(cidKey(p))

describe('stewards without the weights', () => {
  it('fetch them from the steward that holds them and seal weightsVerified: true', async () => {
    const sim = new Simulator({
      members: [
        ...stewards.map((n) => ({ name: n, roles: ['publisher', 'steward', 'voter'] as const, weight: 1 })),
        { name: 'v1', roles: ['voter'] as const, weight: 1 },
      ],
      rules: rulesWith({
        sealThreshold: 3,
        votingPeriodMs: 2_500,
        sealGraceMs: 1_000,
        weightsDeadlineMs: 8_000,
        sealDeadlineMs: 12_000,
      }),
      keyPrefix: KEY_PREFIX,
      base: Date.now(),
      name: 'steward-fetch',
    })
    const modelDir = join(root, 'model')
    await generateModel(modelDir, { seed: 5 })
    const nodes = await startStewards(sim, 'fetch')
    try {
      // Only s1 holds the weights.
      const held = new FsBlockstore(join(nodes[0]!.home, 'blocks'))
      await held.open()
      const weights = await importDirectory(modelDir, { blockstore: held })
      await held.close()
      const manifest = { weights: weights.root, files: [...weights.files], size: weights.size }

      const t = Date.now() - sim.base
      const m = sim.manifest('s1', t, {
        id: 'fetch',
        name: 'tiny',
        version: '1.0.0',
        weights: { root: weights.root, files: weights.files, size: weights.size },
      })
      const p = sim.proposal('s1', t + 1, {
        closesAt: t + 2_600,
        action: { type: 'ratify-model', manifest: m.cid },
        basis: sim.federation,
      })
      for (const r of [
        m,
        p,
        ...['s1', 's2', 's3'].map((v) => sim.vote(v, t + 10, { proposal: p.cid, choice: 'yes' })),
      ])
        expect((await submit(nodes[0]!, r)).status).toBe(201)
      await until(
        () => nodes.every((n) => view(n, p.cid)?.phase === 'final-passed'),
        'ratified everywhere',
        25_000,
      )
      expect(view(nodes[0]!, p.cid)?.weightsVerified).toBe(true)
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
        if (!trueBy.has(sim.did(stewards[i]!))) continue
        const store = new FsBlockstore(join(n.home, 'blocks'))
        await store.open()
        try {
          expect((await verifyDag(store, manifest, { maxModelBytes: weights.size })).ok).toBe(true)
        } finally {
          await store.close()
        }
        if (i > 0) expect(await n.p2p.helia!.pins.isPinned(weights.root)).toBe(true)
      }
    } finally {
      await Promise.allSettled(nodes.map((n) => n.stop()))
    }
  }, 90_000)
})
