/**
 * `model publish`, `verify` (online) and `certificate export` through the real binary
 * (`npm run build` first): a publisher uploads a generated model to a node and publishes its
 * manifest; the node holds the manifest and serves the weights; verify reports what it finds.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { foundOneMemberFederation, publishArgs, type Run, runCli } from '../support/cli.js'
import { type Daemon, startDaemon } from '../support/daemon.js'

let dir: string
let daemon: Daemon | undefined

function run(args: string[]): Promise<Run> {
  return runCli(args, { cwd: dir, home: join(dir, 'alice'), node: daemon?.api })
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'allmende-cli-publish-'))
})
afterAll(async () => {
  await daemon?.kill()
  await rm(dir, { recursive: true, force: true })
})

describe('allmende model publish and verify', () => {
  let manifest: string
  let weights: string

  it('publish: uploads the weights and submits the manifest', async () => {
    await foundOneMemberFederation(run, 'publish test', join(dir, 'node'))
    daemon = await startDaemon(join(dir, 'node'))

    const model = await generateModel(join(dir, 'model'), { seed: 7, layers: 2, hidden: 64, vocab: 256 })
    await writeFile(join(dir, 'MODEL_CARD.md'), '# test-model\n\nA generated model for the publish test.\n')
    const published = await run([
      '--json',
      ...publishArgs('model', {
        name: 'test-model',
        version: '1.0.0',
        license: 'Apache-2.0',
        languages: 'de,en',
      }),
      '--description',
      'a generated model',
      '--card',
      'MODEL_CARD.md',
    ])
    expect(published.code, published.stderr).toBe(0)
    const out = published.json()
    expect(out).toMatchObject({ files: model.files.length, size: model.bytes })
    // The card: uploaded as one raw block, named in the manifest, served by the gateway.
    const cardBytes = await readFile(join(dir, 'MODEL_CARD.md'))
    const cardCid = CID.createV1(raw.code, await sha256.digest(cardBytes)).toString()
    expect(out.card).toBe(cardCid)
    const cardServed = await fetch(`${daemon.api}/ipfs/${cardCid}`, {
      headers: { accept: 'application/vnd.ipld.raw' },
    })
    expect(cardServed.status).toBe(200)
    expect(Buffer.from(await cardServed.arrayBuffer()).equals(cardBytes)).toBe(true)
    manifest = out.manifest as string
    weights = out.weights as string

    const held = await fetch(`${daemon.api}/manifests/${manifest}`)
    expect(held.status).toBe(200)
    const body = (await held.json()) as Record<string, unknown>
    expect(body).toMatchObject({
      name: 'test-model',
      version: '1.0.0',
      weights,
      format: 'safetensors',
      parameters: model.parameters,
      license: 'Apache-2.0',
      languages: ['de', 'en'],
      size: model.bytes,
      card: cardCid,
    })
    const served = await fetch(`${daemon.api}/ipfs/${weights}`, {
      headers: { accept: 'application/vnd.ipld.raw' },
    })
    expect(served.status).toBe(200)
    await served.arrayBuffer()

    // model show: the manifest's facts, the card, and the lineage of a version built on it.
    const next = await run([
      '--json',
      ...publishArgs('model', {
        name: 'test-model',
        version: '1.1.0',
        license: 'Apache-2.0',
        languages: 'de',
      }),
      '--base',
      'test-model@1.0.0',
    ])
    expect(next.code, next.stderr).toBe(0)
    const shown = await run(['--json', 'model', 'show', 'test-model@1.1.0', '--node', daemon.api])
    expect(shown.code, shown.stderr).toBe(0)
    expect(shown.json()).toMatchObject({
      status: 'proposed',
      details: { weights, license: 'Apache-2.0', languages: ['de'], format: 'safetensors' },
      lineage: ['test-model@1.0.0'],
    })
    const first = await run(['model', 'show', 'test-model@1.0.0', '--node', daemon.api])
    expect(first.stdout).toContain(`card      ${cardCid}`)
    expect(first.stdout).toContain('license   Apache-2.0; languages de, en')
  })

  it('verify online: a proposed model exits 1 with status proposed; bad files are named', async () => {
    const intact = await run(['--json', 'verify', 'model', '--model', 'test-model@1.0.0'])
    expect(intact.code, intact.stderr).toBe(1)
    expect(intact.json()).toEqual({
      ok: false,
      status: 'proposed',
      problems: [{ code: 'not-ratified', message: 'test-model@1.0.0 is proposed, not ratified' }],
    })

    await cp(join(dir, 'model'), join(dir, 'bad'), { recursive: true })
    const victim = 'config.json'
    const bytes = await readFile(join(dir, 'bad', victim))
    bytes[0] = bytes[0]! ^ 0xff
    await writeFile(join(dir, 'bad', victim), bytes)
    await writeFile(join(dir, 'bad', 'extra.bin'), 'not in the manifest')
    const bad = await run(['--json', 'verify', 'bad', '--model', 'test-model@1.0.0', '--cid'])
    expect(bad.code).toBe(1)
    const report = bad.json() as { ok: boolean; status: string; problems: { code: string; path?: string }[] }
    expect(report.ok).toBe(false)
    expect(report.status).toBe('proposed')
    expect(report.problems).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: 'sha256-mismatch', path: victim }),
        expect.objectContaining({ code: 'file-extra', path: 'extra.bin' }),
      ]),
    )
    const text = await run(['verify', 'bad', '--model', 'test-model@1.0.0'])
    expect(text.code).toBe(1)
    expect(text.stdout).toMatch(/sha256-mismatch config\.json/)
  })

  it('certificate export: no checkpoint yet is exit 1 no-certificate; an unknown model too', async () => {
    const none = await run(['--json', 'certificate', 'export', 'test-model@1.0.0', '-o', 'c.car'])
    expect(none.code).toBe(1)
    expect(JSON.parse(none.stderr.trim()).error.code).toBe('no-certificate')
    const unknown = await run(['--json', 'certificate', 'export', 'nope@1.0.0', '-o', 'c.car'])
    expect(unknown.code).toBe(1)
    expect(JSON.parse(unknown.stderr.trim()).error.code).toBe('no-certificate')
  })
})
