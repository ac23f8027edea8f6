/**
 * Verifying a model directory against a certificate (protocol/SPEC.md §12): four steward nodes at
 * seal threshold 3 (test/support/stewards.ts) ratify a generated model and sign a checkpoint; the
 * certificate is exported from a node's API, checked with `verifyModel` (files, freshness,
 * rollback) and with the real binary (`certificate export`, `verify --certificate`, which keeps
 * the trust mark). `npm run build` first.
 */
import { cp, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { type VerifyModelOptions, verifyModel } from '../../index.js'
import { buildCertificate } from '../../protocol/index.js'
import { bin, type Exited, runProcess } from '../support/cli.js'
import { holdWeights, startOnRealClock, submitRatificationNow } from '../support/stewards.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { until } from '../support/until.js'

function run(args: string[], env: Record<string, string>): Promise<Exited> {
  return runProcess(process.execPath, [bin, ...args], { env: { ...process.env, ...env } })
}

const KEY_PREFIX = 'allmende-verify-model-test:'
const root = tempDirForFile('allmende-verify-model-')

describe('verify against a certificate', () => {
  it('passes an intact copy of a ratified model, names a changed file, refuses stale and rolled-back certificates', async () => {
    const modelDir = join(root(), 'model')
    await generateModel(modelDir, { seed: 11, layers: 2, hidden: 64, vocab: 256 })
    // A fresh federation (it starts "now", so its proposals are open while the test runs).
    const { sim, net } = await startOnRealClock(
      { name: 'verify', keyPrefix: KEY_PREFIX, rules: { checkpointIntervalMs: 2_000 } },
      { root: root(), tag: 'vm', helia: true },
    )
    const nodes = net.nodes
    try {
      const weights = await holdWeights(nodes, modelDir)
      const { manifest: m, proposal: p } = await submitRatificationNow(sim, nodes[0]!, 'vm', weights)
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

      /** `verifyModel` of tiny@1.0.0 with the certificate `car`, as `options` change it. */
      const verifyTiny = (dir: string, options: Partial<VerifyModelOptions>) =>
        verifyModel(dir, { model: 'tiny@1.0.0', certificate: car, federation: federationId, ...options })
      const intact = await verifyTiny(modelDir, { maxAgeMs: 60_000 })
      expect(intact).toMatchObject({ ok: true, status: 'ratified', problems: [], manifest: m.cid.toString() })
      expect(intact.trusted).toBeDefined()

      const bad = join(root(), 'bad')
      await cp(modelDir, bad, { recursive: true })
      const bytes = await readFile(join(bad, 'config.json'))
      bytes[0] = bytes[0]! ^ 0xff
      await writeFile(join(bad, 'config.json'), bytes)
      const changed = await verifyTiny(bad, { maxAgeMs: 60_000 })
      expect(changed.ok).toBe(false)
      expect(changed.status).toBe('ratified')
      expect(changed.problems).toEqual([
        expect.objectContaining({ code: 'sha256-mismatch', path: 'config.json' }),
      ])

      const stale = await verifyTiny(modelDir, { maxAgeMs: 60_000, now: Date.now() + 120_000 })
      expect(stale.ok).toBe(false)
      expect(stale.problems.map((x) => x.code)).toContain('cert-stale')

      const rolledBack = await verifyTiny(modelDir, {
        trusted: { height: intact.trusted!.height + 1, epoch: 0 },
      })
      expect(rolledBack.ok).toBe(false)
      expect(rolledBack.problems.map((x) => x.code)).toContain('cert-rollback')

      const wrong = await verifyTiny(modelDir, { model: 'other@1.0.0' })
      expect(wrong.ok).toBe(false)

      // The binary: export from the node, verify offline, keep the trust mark.
      const env = { ALLMENDE_HOME: join(root(), 'verifier'), ALLMENDE_NODE: nodes[2]!.apiUrl }
      const file = join(root(), 'tiny.car')
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
      const mark = JSON.parse(
        await readFile(join(root(), 'verifier', 'trust', `${federationId}.json`), 'utf8'),
      )
      // The mark of the certificate the binary verified: the exported one, which may hold a newer
      // checkpoint than `car` (the nodes sign one every few seconds).
      const exportedCheck = await verifyTiny(modelDir, {
        certificate: await readFile(file),
        maxAgeMs: 60_000,
      })
      expect(exportedCheck.trusted!.height).toBeGreaterThanOrEqual(intact.trusted!.height)
      // The file keeps the verdict's mark, with its head beside it (docs/adr/0026).
      const { height, epoch } = exportedCheck.trusted!
      expect({ height: mark.height, epoch: mark.epoch }).toEqual({ height, epoch })
      expect(typeof mark.trustedHead).toBe('string')
      const failed = await run([...offline, bad], env)
      expect(failed.code).toBe(1)
      expect(JSON.parse(failed.stdout).problems).toEqual([
        expect.objectContaining({ code: 'sha256-mismatch', path: 'config.json' }),
      ])
      // A higher mark kept from before: this certificate is now a rollback.
      await writeFile(
        join(root(), 'verifier', 'trust', `${federationId}.json`),
        JSON.stringify({ height: mark.height + 1, epoch: 0 }),
      )
      const old = await run([...offline, modelDir], env)
      expect(old.code).toBe(1)
      expect(JSON.parse(old.stdout).problems.map((x: { code: string }) => x.code)).toContain('cert-rollback')
    } finally {
      await net.stop()
    }
  }, 120_000)
})
