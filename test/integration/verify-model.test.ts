/**
 * Verifying a model directory against a certificate (DESIGN.md §5): four steward nodes at seal
 * threshold 3 ratify a generated model and sign a checkpoint; the certificate is exported from a
 * node's API, checked with `verifyModel` (files, freshness, rollback) and with the real binary
 * (`certificate export`, `verify --certificate`, which keeps the trust mark). `npm run build` first.
 */
import { createHash } from 'node:crypto'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FsBlockstore } from 'blockstore-fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { verifyModel } from '../../index.js'
import { initHome } from '../../node/config.js'
import { createLogger, silentLogger } from '../../node/log.js'
import { type AllmendeNode, startNode } from '../../node/node.js'
import { importDirectory } from '../../node/weights/directory.js'
import { buildCertificate, type Rules } from '../../protocol/index.js'
import { bin, type Exited, runProcess } from '../support/cli.js'
import { submit } from '../support/cluster.js'
import { rulesWith, Simulator } from '../support/simulator.js'
import { until } from '../support/until.js'

function run(args: string[], env: Record<string, string>): Promise<Exited> {
  return runProcess(process.execPath, [bin, ...args], { env: { ...process.env, ...env } })
}

const KEY_PREFIX = 'allmende-verify-model-test:'
const stewards = ['s1', 's2', 's3', 's4']
const rules = rulesWith({
  sealThreshold: 3,
  votingPeriodMs: 2_500,
  sealGraceMs: 1_000,
  weightsDeadlineMs: 1_500,
  sealDeadlineMs: 5_000,
})
/** A fresh federation per test: each starts "now", so its proposals are open while it runs. */
function federation(name: string, changes: Partial<Rules> = {}): Simulator {
  return new Simulator({
    members: [
      ...stewards.map((n) => ({ name: n, roles: ['publisher', 'steward', 'voter'] as const, weight: 1 })),
      { name: 'v1', roles: ['voter'] as const, weight: 1 },
    ].map((m) => ({ ...m, roles: [...m.roles] })),
    rules: { ...rules, ...changes },
    keyPrefix: KEY_PREFIX,
    base: Date.now(),
    name,
  })
}

let root: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'allmende-verify-model-'))
})
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

/** Four steward nodes, each with its steward key file, in a star around the first. */
async function startStewards(sim: Simulator, tag: string, helia = false): Promise<AllmendeNode[]> {
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
        helia,
        stewardTickMs: 100,
        sync: { intervalMs: 1_000 },
      }),
    )
  }
  await until(() => nodes.every((n) => n.p2p.subscribers().length >= 1), 'subscriptions')
  return nodes
}

describe('verify against a certificate', () => {
  it('passes an intact copy of a ratified model, names a changed file, refuses stale and rolled-back certificates', async () => {
    const sim = federation('verify', { checkpointIntervalMs: 2_000 })
    const modelDir = join(root, 'model')
    await generateModel(modelDir, { seed: 11, layers: 2, hidden: 64, vocab: 256 })
    const nodes = await startStewards(sim, 'vm', true)
    try {
      let weights: Awaited<ReturnType<typeof importDirectory>> | undefined
      for (const n of nodes) {
        const blockstore = new FsBlockstore(join(n.home, 'blocks'))
        await blockstore.open()
        weights = await importDirectory(modelDir, { blockstore })
        await blockstore.close()
      }
      const t = Date.now() - sim.base
      const m = sim.manifest('s1', t, {
        id: 'vm',
        name: 'tiny',
        version: '1.0.0',
        weights: { root: weights!.root, files: weights!.files, size: weights!.size },
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
        () => nodes.every((n) => (n.store.fold.state().checkpoint?.epoch ?? 0) >= p.record.body.closesAt),
        'a counted checkpoint after the close',
        30_000,
        100,
      )
      const federationId = sim.federation.toString()

      // The API serves the same certificate the fold builds.
      const res = await fetch(`${nodes[1]!.apiUrl}/certificates/${encodeURIComponent('tiny@1.0.0')}`)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toMatch(/application\/vnd\.ipld\.car/)
      const car = new Uint8Array(await res.arrayBuffer())
      expect(Buffer.from(car).equals(Buffer.from(buildCertificate(nodes[1]!.store.fold, 'tiny@1.0.0')))).toBe(
        true,
      )

      const intact = await verifyModel(modelDir, {
        model: 'tiny@1.0.0',
        certificate: car,
        federation: federationId,
        maxAgeMs: 60_000,
      })
      expect(intact).toMatchObject({ ok: true, status: 'ratified', problems: [], manifest: m.cid.toString() })
      expect(intact.trusted).toBeDefined()

      const bad = join(root, 'bad')
      await cp(modelDir, bad, { recursive: true })
      const bytes = await readFile(join(bad, 'config.json'))
      bytes[0] = bytes[0]! ^ 0xff
      await writeFile(join(bad, 'config.json'), bytes)
      const changed = await verifyModel(bad, {
        model: 'tiny@1.0.0',
        certificate: car,
        federation: federationId,
        maxAgeMs: 60_000,
      })
      expect(changed.ok).toBe(false)
      expect(changed.status).toBe('ratified')
      expect(changed.problems).toEqual([
        expect.objectContaining({ code: 'sha256-mismatch', path: 'config.json' }),
      ])

      const stale = await verifyModel(modelDir, {
        model: 'tiny@1.0.0',
        certificate: car,
        federation: federationId,
        maxAgeMs: 60_000,
        now: Date.now() + 120_000,
      })
      expect(stale.ok).toBe(false)
      expect(stale.problems.map((x) => x.code)).toContain('cert-stale')

      const rolledBack = await verifyModel(modelDir, {
        model: 'tiny@1.0.0',
        certificate: car,
        federation: federationId,
        trusted: { height: intact.trusted!.height + 1, epoch: 0 },
      })
      expect(rolledBack.ok).toBe(false)
      expect(rolledBack.problems.map((x) => x.code)).toContain('cert-rollback')

      const wrong = await verifyModel(modelDir, {
        model: 'other@1.0.0',
        certificate: car,
        federation: federationId,
      })
      expect(wrong.ok).toBe(false)

      // The binary: export from the node, verify offline, keep the trust mark.
      const env = { ALLMENDE_HOME: join(root, 'verifier'), ALLMENDE_NODE: nodes[2]!.apiUrl }
      const file = join(root, 'tiny.car')
      const exported = await run(['--json', 'certificate', 'export', 'tiny@1.0.0', '-o', file], env)
      expect(exported.code, exported.stderr).toBe(0)
      const offline = [
        '--json',
        'verify',
        '--model',
        'tiny@1.0.0',
        '--certificate',
        file,
        '--federation',
        federationId,
        '--max-age',
        '60s',
      ]
      const ok = await run([...offline, modelDir, '--cid'], env)
      expect(ok.code, ok.stderr).toBe(0)
      expect(JSON.parse(ok.stdout)).toEqual({ ok: true, status: 'ratified', problems: [] })
      const mark = JSON.parse(await readFile(join(root, 'verifier', 'trust', `${federationId}.json`), 'utf8'))
      // The mark of the certificate the binary verified: the exported one, which may hold a newer
      // checkpoint than `car` (the nodes sign one every few seconds).
      const exportedCheck = await verifyModel(modelDir, {
        model: 'tiny@1.0.0',
        certificate: await readFile(file),
        federation: federationId,
        maxAgeMs: 60_000,
      })
      expect(exportedCheck.trusted!.height).toBeGreaterThanOrEqual(intact.trusted!.height)
      expect(mark).toEqual(exportedCheck.trusted)
      const failed = await run([...offline, bad], env)
      expect(failed.code).toBe(1)
      expect(JSON.parse(failed.stdout).problems).toEqual([
        expect.objectContaining({ code: 'sha256-mismatch', path: 'config.json' }),
      ])
      // A higher mark kept from before: this certificate is now a rollback.
      await writeFile(
        join(root, 'verifier', 'trust', `${federationId}.json`),
        JSON.stringify({ height: mark.height + 1, epoch: 0 }),
      )
      const old = await run([...offline, modelDir], env)
      expect(old.code).toBe(1)
      expect(JSON.parse(old.stdout).problems.map((x: { code: string }) => x.code)).toContain('cert-rollback')
    } finally {
      await Promise.allSettled(nodes.map((n) => n.stop()))
    }
  }, 120_000)
})
