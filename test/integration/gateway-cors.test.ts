/**
 * Cross-origin reads of a running node (docs/adr/0027): a one-node federation on 127.0.0.1 with
 * Helia, a model imported through its admin route, asked over real HTTP with fetch() as a page on
 * another origin would ask. The gateway's /ipfs/ routes are readable from any origin (what a
 * browser would let a script read is checked as the Fetch standard's CORS filter does); every
 * other route says nothing to other origins, and OPTIONS there stays a 404.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { adminToken } from '../../node/config.js'
import type { AllmendeNode } from '../../node/node.js'
import { type Cluster, startCluster } from '../support/cluster.js'
import { Simulator } from '../support/simulator.js'

const ORIGIN = 'https://models.example'
const CAR = 'application/vnd.ipld.car'
const RAW = 'application/vnd.ipld.raw'
const MiB = 1024 * 1024

/** Response headers a cross-origin script may read without their being exposed (Fetch standard). */
const SAFELISTED = [
  'cache-control',
  'content-language',
  'content-length',
  'content-type',
  'expires',
  'last-modified',
  'pragma',
]

/**
 * What a browser does with a cross-origin answer to a request without credentials: refuses it
 * unless Access-Control-Allow-Origin is `*` or the origin; then lets the script read only the
 * safelisted headers and those listed in Access-Control-Expose-Headers.
 */
function readableByScript(res: Response): Set<string> | 'blocked' {
  const allowed = res.headers.get('access-control-allow-origin')
  if (allowed !== '*' && allowed !== ORIGIN) return 'blocked'
  const exposed = (res.headers.get('access-control-expose-headers') ?? '')
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h.length > 0)
  return new Set([...SAFELISTED, ...exposed])
}

function corsHeadersOf(res: Response): string[] {
  return [...res.headers.keys()].filter((h) => h.startsWith('access-control-'))
}

describe('cross-origin reads of a running node', () => {
  const sim = new Simulator({
    members: [{ name: 's', roles: ['steward', 'publisher', 'voter'], weight: 1 }],
    base: Date.now(),
    name: 'gateway-cors',
  })
  let cluster: Cluster
  let node: AllmendeNode
  let modelDir: string
  const weights = randomBytes(2 * MiB + 3)
  let root: CID
  let imported: Response

  const api = (path: string) => `${node.apiUrl}${path}`
  const fromPage = (path: string, init: RequestInit = {}) =>
    fetch(api(path), { ...init, headers: { origin: ORIGIN, ...(init.headers as Record<string, string>) } })

  beforeAll(async () => {
    cluster = await startCluster(sim.genesis, 1, { helia: true, sync: false })
    node = cluster.nodes[0]!
    modelDir = await mkdtemp(join(tmpdir(), 'allmende-gateway-cors-'))
    await writeFile(join(modelDir, 'weights.bin'), weights)
    await writeFile(join(modelDir, 'config.json'), '{"layers": 1}\n')
    // The operator's import, sent as a page on another origin would send it, with the token.
    imported = await fromPage('/weights/import', {
      method: 'POST',
      headers: {
        authorization: `Bearer ${(await adminToken(node.home)).trim()}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ path: modelDir }),
    })
    root = CID.parse(((await imported.clone().json()) as { root: string }).root)
  }, 60_000)

  afterAll(async () => {
    await cluster?.stop()
    if (modelDir) await rm(modelDir, { recursive: true, force: true })
  })

  it('a cross-origin GET of a block carries Access-Control-Allow-Origin, and a script reads its headers', async () => {
    expect(imported.status).toBe(201)
    // fetch's default Accept is */*: the raw block, the gateway's default for a bare CID.
    const block = await fromPage(`/ipfs/${root}`)
    expect(block.status).toBe(200)
    expect(block.headers.get('access-control-allow-origin')).toBe('*')
    expect(block.headers.get('content-type')).toBe(RAW)
    const bytes = new Uint8Array(await block.arrayBuffer())
    expect(createHash('sha256').update(bytes).digest()).toEqual(Buffer.from(root.multihash.digest))
    const readable = readableByScript(block)
    expect(readable).not.toBe('blocked')
    for (const h of [
      'content-length',
      'content-type',
      'content-disposition',
      'content-location',
      'etag',
      'x-ipfs-path',
      'x-ipfs-roots',
      'x-content-type-options',
      'content-range',
    ])
      expect((readable as Set<string>).has(h), h).toBe(true)

    // A CAR of the file by path, and HEAD of it: the same.
    const car = await fromPage(`/ipfs/${root}/weights.bin?entity-bytes=-10:*`, { headers: { accept: CAR } })
    expect(car.status).toBe(200)
    expect(car.headers.get('access-control-allow-origin')).toBe('*')
    expect((await car.arrayBuffer()).byteLength).toBeGreaterThan(0)
    const head = await fromPage(`/ipfs/${root}?format=car`, { method: 'HEAD' })
    expect(head.headers.get('access-control-allow-origin')).toBe('*')

    // An error is readable too: a page can tell a block not held (404) from a network failure.
    const missing = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('never stored')))
    const notHeld = await fromPage(`/ipfs/${missing}?format=raw`)
    expect(notHeld.status).toBe(404)
    expect(notHeld.headers.get('access-control-allow-origin')).toBe('*')
    expect(((await notHeld.json()) as { error: { code: string } }).error.code).toBe('block-not-found')
    // The block is the model's directory: the page can list it.
    expect(dagPb.decode(bytes).Links.map((l) => l.Name)).toEqual(['config.json', 'weights.bin'])
  })

  it('answers a preflight on the gateway routes with 204 and what may be asked', async () => {
    for (const path of [`/ipfs/${root}`, `/ipfs/${root}/weights.bin`]) {
      const pre = await fromPage(path, {
        method: 'OPTIONS',
        headers: {
          'access-control-request-method': 'GET',
          'access-control-request-headers': 'accept, range, if-none-match, cache-control',
        },
      })
      expect(pre.status, path).toBe(204)
      expect((await pre.arrayBuffer()).byteLength).toBe(0)
      expect(pre.headers.get('access-control-allow-origin')).toBe('*')
      const methods = pre.headers
        .get('access-control-allow-methods')!
        .split(',')
        .map((m) => m.trim())
      expect(methods).toEqual(expect.arrayContaining(['GET', 'HEAD', 'OPTIONS']))
      const headers = pre.headers
        .get('access-control-allow-headers')!
        .split(',')
        .map((h) => h.trim().toLowerCase())
      expect(headers).toEqual(expect.arrayContaining(['accept', 'range', 'if-none-match', 'cache-control']))
      expect(Number(pre.headers.get('access-control-max-age'))).toBeGreaterThan(0)
    }
    // Then the request the preflight was for: a conditional GET a script may send.
    const first = await fromPage(`/ipfs/${root}`, { headers: { accept: RAW } })
    const again = await fromPage(`/ipfs/${root}`, {
      headers: { accept: RAW, 'if-none-match': first.headers.get('etag')! },
    })
    expect(again.status).toBe(304)
    expect(again.headers.get('access-control-allow-origin')).toBe('*')
  })

  it('keeps admin, upload, record and view routes closed to other origins, OPTIONS there a 404', async () => {
    // The admin import above succeeded, and said nothing to the page's origin.
    expect(imported.status).toBe(201)
    expect(corsHeadersOf(imported)).toEqual([])
    const asked: [string, RequestInit][] = [
      ['/health', {}],
      ['/status', {}],
      ['/state', {}],
      ['/metrics', {}],
      [`/weights/${root}/check`, {}],
      [
        '/records',
        { method: 'POST', headers: { 'content-type': 'application/cbor' }, body: Buffer.from([0xa0]) },
      ],
      [
        '/weights',
        { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: Buffer.from([0]) },
      ],
      ['/weights/import', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }],
      ['/admin/dial', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }],
    ]
    for (const [path, init] of asked) {
      const res = await fromPage(path, init)
      await res.arrayBuffer()
      expect(corsHeadersOf(res), `${init.method ?? 'GET'} ${path}`).toEqual([])
      expect(readableByScript(res), path).toBe('blocked')
      const pre = await fromPage(path, {
        method: 'OPTIONS',
        headers: { 'access-control-request-method': init.method ?? 'GET' },
      })
      expect(pre.status, `OPTIONS ${path}`).toBe(404)
      expect(corsHeadersOf(pre), `OPTIONS ${path}`).toEqual([])
      await pre.arrayBuffer()
    }
  })
})
