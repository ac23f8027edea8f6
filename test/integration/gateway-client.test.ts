/**
 * An independent IPFS client against a running node's trustless gateway (docs/adr/0001): a
 * one-steward federation (seal threshold 1) on 127.0.0.1 whose node imported a model through
 * its HTTP API; once the model is ratified, the `ipfs-car` command (which checks every block
 * against its CID) unpacks the CAR streamed from the node's real API address, and the files must
 * be the original bytes, with the sha256 the manifest names. A block the node does not hold is a
 * 404, as raw block and as CAR.
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { get as httpGet } from 'node:http'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { importDirectory } from '../../node/weights/directory.js'
import {
  importWeights,
  ratification,
  SHORT_RULES,
  startOnFakeClock,
  viewOf,
  votesBy,
} from '../support/stewards.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { until } from '../support/until.js'

const KEY_PREFIX = 'allmende-gateway-client-test:'
const CAR = 'application/vnd.ipld.car'
const RAW = 'application/vnd.ipld.raw'
const MiB = 1024 * 1024

const root = tempDirForFile('allmende-gateway-client-')

/**
 * GET `url` (Accept: CAR) and pipe the body straight into `ipfs-car unpack --output out`, as a
 * user would with `curl … | ipfs-car unpack`. Resolves with the HTTP status, the command's exit
 * code and its stderr.
 */
function unpackFrom(
  url: string,
  out: string,
): Promise<{ status: number; code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [
      join(process.cwd(), 'node_modules/ipfs-car/bin.js'),
      'unpack',
      '--output',
      out,
    ])
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    let status = 0
    const req = httpGet(url, { headers: { accept: CAR } }, (res) => {
      status = res.statusCode ?? 0
      res.pipe(child.stdin)
    })
    req.on('error', (e) => {
      child.kill()
      reject(e)
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ status, code, stderr }))
  })
}

describe("a running node's trustless gateway", () => {
  it('serves ratified weights that ipfs-car unpacks byte for byte, and answers 404 for a block it lacks', async () => {
    const modelDir = join(root(), 'model')
    await generateModel(modelDir, { seed: 51 })
    const weights = await importDirectory(modelDir)
    // Weights the node never holds.
    const otherDir = join(root(), 'other')
    await generateModel(otherDir, { seed: 52, layers: 1, vocab: 256 })
    const other = await importDirectory(otherDir)

    const { sim, net, at } = await startOnFakeClock(
      { name: 'gateway-client', keyPrefix: KEY_PREFIX, stewards: ['s1'], rules: { sealThreshold: 1 } },
      { root: root(), tag: 'gw', names: ['s1'], helia: true },
    )
    const node = net.nodes[0]!
    try {
      // Imported into the node's blockstore on its own machine, through its API.
      expect(await importWeights(node, modelDir)).toMatchObject({
        root: weights.root.toString(),
        pinned: true,
      })

      // Ratified: proposed, voted, and sealed by the node's steward once the grace has passed.
      at(100)
      const m = sim.manifest('s1', 100, { id: 'gw', name: 'tiny', version: '1.0.0', weights })
      const p = ratification(sim, 's1', 101, m.cid, 2_700)
      await net.submitAll([m, p, ...votesBy(sim, ['s1', 'v1'], 110, p.cid, 'yes')])
      at(2_700 + SHORT_RULES.sealGraceMs)
      await until(() => viewOf(node, p.cid)?.phase === 'final-passed', 'the ratification final')
      expect(viewOf(node, p.cid)?.weightsVerified).toBe(true)
      const model = node.store.fold.state().models.get('tiny@1.0.0')
      expect(model?.status === 'ratified' && model.manifest?.equals(m.cid)).toBe(true)

      // The independent client: the CAR streamed from the node's API address into ipfs-car.
      const manifest = m.record.body
      expect(manifest.files.some((f) => f.size > MiB)).toBe(true) // files of several blocks
      const out = join(root(), 'unpacked')
      const unpacked = await unpackFrom(`${node.apiUrl}/ipfs/${manifest.weights}`, out)
      expect(unpacked).toEqual({ status: 200, code: 0, stderr: '' })
      expect((await readdir(out)).sort()).toEqual(manifest.files.map((f) => f.path).sort())
      for (const f of manifest.files) {
        const got = await readFile(join(out, f.path))
        expect(got.equals(await readFile(join(modelDir, f.path))), f.path).toBe(true)
        expect(got.length).toBe(f.size)
        expect(createHash('sha256').update(got).digest().equals(Buffer.from(f.sha256)), f.path).toBe(true)
      }

      // Blocks it does not hold: the root of weights never imported here, as raw and as CAR.
      for (const accept of [RAW, CAR]) {
        const missing = await fetch(`${node.apiUrl}/ipfs/${other.root}`, { headers: { accept } })
        expect(missing.status, accept).toBe(404)
        expect(await missing.json()).toEqual({
          error: { code: 'block-not-found', message: expect.stringContaining(other.root.toString()) },
        })
      }
      // And the client given that address fails rather than unpacking anything.
      const refused = await unpackFrom(`${node.apiUrl}/ipfs/${other.root}`, join(root(), 'unpacked-missing'))
      expect(refused.status).toBe(404)
      expect(refused.code).not.toBe(0)
    } finally {
      await net.stop()
    }
  }, 60_000)
})
