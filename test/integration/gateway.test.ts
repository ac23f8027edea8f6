/**
 * The trustless gateway against independent clients: a real FsBlockstore
 * filled by @helia/unixfs (unixfs-v1-2025), its DAGs pinned with Helia's pins
 * (a LevelDatastore on disk, the node's pin walker), a real Fastify on
 * 127.0.0.1:0, and CARs read back with @ipld/car, re-hashed block by block,
 * reassembled by ipfs-unixfs-exporter, and unpacked by the ipfs-car command
 * itself. What the gateway refuses to serve is in gateway-abuse.test.ts.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { get as httpGet, type IncomingMessage } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { unixfs } from '@helia/unixfs'
import { CarBlockIterator } from '@ipld/car/iterator'
import * as dagCbor from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import { FsBlockstore } from 'blockstore-fs'
import { LevelDatastore } from 'datastore-level'
import Fastify, { type FastifyInstance } from 'fastify'
import { createHeliaLight } from 'helia'
import { exporter, recursive as exportRecursive } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLogger } from '../../node/log.js'
import { type GatewayPins, registerGateway } from '../../node/weights/gateway.js'
import { type PinWalker, unixfsPinWalker } from '../../node/weights/pin-walker.js'
import { until } from '../support/until.js'

const run = promisify(execFile)
const MiB = 1024 * 1024
const CAR = 'application/vnd.ipld.car'
const RAW = 'application/vnd.ipld.raw'

interface Fetched {
  status: number
  headers: Headers
  bytes: Uint8Array
  /** Set when the body ended abruptly. */
  error?: Error
}

interface CarBlock {
  cid: CID
  bytes: Uint8Array
}

describe('trustless gateway', () => {
  let dir: string
  let store: FsBlockstore
  let datastore: LevelDatastore
  let app: FastifyInstance
  let base: string
  const gets: string[] = []
  const logLines: string[] = []

  const files = {
    'model/weights.bin': randomBytes(3 * MiB + 12345),
    'model/config.json': new TextEncoder().encode('{"layers": 2}\n'),
    'model/docs/read me.md': new TextEncoder().encode('# a model\n'),
  }
  let dirCid: CID
  let weightsCid: CID
  let readmeCid: CID
  let docsCid: CID
  let zerosCid: CID
  let largeCid: CID
  let brokenCid: CID
  /** Pinned (a record from the walk of brokenCid) but deleted from the store. */
  let brokenLeaf: CID
  let cborCid: CID
  let leafCid: CID
  let notHeld: CID

  async function get(path: string, init: RequestInit = {}): Promise<Fetched> {
    const res = await fetch(`${base}${path}`, init)
    const chunks: Uint8Array[] = []
    let error: Error | undefined
    try {
      if (res.body) for await (const c of res.body) chunks.push(c)
    } catch (e) {
      error = e as Error
    }
    return {
      status: res.status,
      headers: res.headers,
      bytes: Buffer.concat(chunks),
      ...(error ? { error } : {}),
    }
  }

  /**
   * Waits until `read()` has not changed for five polls 20 ms apart, and returns it: the walk has
   * stopped (a stop has no event to wait for; 100 ms of no change is what the test calls stopped).
   */
  async function settled(read: () => number): Promise<number> {
    let last: number | undefined
    let still = 0
    await until(
      () => {
        const now = read()
        still = now === last ? still + 1 : 0
        last = now
        return still >= 5
      },
      'the count to stop changing',
      15_000,
      20,
    )
    return last!
  }

  /** Every block of a CAR, each re-hashed against its CID (throws on a mismatch). */
  async function verifiedBlocks(car: Uint8Array): Promise<{ roots: CID[]; blocks: CarBlock[] }> {
    const it = await CarBlockIterator.fromBytes(car)
    const roots = await it.getRoots()
    const blocks: CarBlock[] = []
    for await (const { cid, bytes } of it) {
      expect(cid.multihash.code).toBe(sha256.code)
      const digest = await sha256.digest(bytes)
      expect(Buffer.from(digest.digest).equals(Buffer.from(cid.multihash.digest))).toBe(true)
      blocks.push({ cid, bytes })
    }
    return { roots, blocks }
  }

  async function exportAll(root: CID, blocks: CarBlock[]): Promise<Map<string, Uint8Array>> {
    const byCid = new Map(blocks.map((b) => [b.cid.toString(), b.bytes]))
    const local = {
      async *get(cid: CID) {
        const b = byCid.get(cid.toString())
        if (!b) throw new Error(`the CAR lacks ${cid}`)
        yield b
      },
    }
    const out = new Map<string, Uint8Array>()
    for await (const listed of exportRecursive(root, local)) {
      const entry = await exporter(listed.cid, local)
      if (entry.type !== 'file' && entry.type !== 'raw') continue
      const parts: Uint8Array[] = []
      for await (const c of entry.content()) parts.push(c)
      out.set(listed.path, Buffer.concat(parts))
    }
    return out
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'allmende-gateway-'))
    notHeld = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('never stored')))
    store = new FsBlockstore(join(dir, 'blocks'))
    await store.open()
    datastore = new LevelDatastore(join(dir, 'datastore'))
    await datastore.open()
    // Helia's pins as the node uses them: with its own walker (pin-walker.ts).
    const pins: GatewayPins & {
      add(cid: CID, options?: { offline?: boolean; walker?: PinWalker }): AsyncIterable<CID>
    } = createHeliaLight({ blockstore: store, datastore }).pins
    const fs = unixfs({ blockstore: store })
    const entries = []
    for await (const e of fs.addAll(
      Object.entries(files).map(([path, content]) => ({ path, content })),
      { profile: 'unixfs-v1-2025' },
    )) {
      entries.push(e)
    }
    const byPath = new Map(entries.map((e) => [e.path, e.cid]))
    dirCid = byPath.get('model')!
    weightsCid = byPath.get('model/weights.bin')!
    readmeCid = byPath.get('model/docs/read me.md')!
    docsCid = byPath.get('model/docs')!
    // Three identical 1 MiB leaves: a DAG with duplicate blocks.
    zerosCid = await fs.addBytes(new Uint8Array(3 * MiB), { profile: 'unixfs-v1-2025' })
    // 64 different 1 MiB leaves: a CAR far larger than socket buffers hold.
    largeCid = await fs.addBytes(randomBytes(64 * MiB), { profile: 'unixfs-v1-2025' })
    // A file whose second leaf is then deleted: the CAR must be cut there.
    brokenCid = await fs.addBytes(randomBytes(2 * MiB + 1), { profile: 'unixfs-v1-2025' })
    const leaves: CID[] = []
    const chunks: Uint8Array[] = []
    for await (const c of store.get(brokenCid)) chunks.push(c)
    for (const l of dagPb.decode(Buffer.concat(chunks)).Links) leaves.push(l.Hash)
    await store.delete(leaves[1]!)
    // A dag-cbor block linking to a raw block and to the directory.
    leafCid = await fs.addBytes(new TextEncoder().encode('hello world'), { profile: 'unixfs-v1-2025' })
    const cborBytes = dagCbor.encode({ name: 'x', parts: [leafCid, { dir: dirCid }] })
    cborCid = CID.createV1(dagCbor.code, await sha256.digest(cborBytes))
    await store.put(cborCid, cborBytes)
    // Everything above is served: pinned as the node pins (dag-pb nodes read, leaves not; the pin
    // of brokenCid records its deleted leaf too, which the walker never reads).
    for (const root of [dirCid, zerosCid, largeCid, brokenCid, leafCid, cborCid])
      for await (const _ of pins.add(root, { walker: unixfsPinWalker, offline: true })) {
        // each block walked gets its record
      }
    brokenLeaf = leaves[1]!

    app = Fastify({ logger: false })
    registerGateway(app, {
      blockstore: {
        get: (cid, options) => {
          gets.push(cid.toString())
          return store.get(cid, options)
        },
      },
      pins,
      log: createLogger({ level: 'debug', write: (line) => logLines.push(line) }),
    })
    base = await app.listen({ host: '127.0.0.1', port: 0 })
  }, 60_000)

  afterAll(async () => {
    await app?.close()
    await store?.close()
    await datastore?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('imports with the unixfs-v1-2025 profile (the reference CID for "hello world")', () => {
    expect(leafCid.toString()).toBe('bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e')
  })

  it('serves one raw block that re-hashes to its CID, with the spec headers', async () => {
    const r = await get(`/ipfs/${leafCid}`, { headers: { accept: RAW } })
    expect(r.status).toBe(200)
    expect(r.headers.get('content-type')).toBe(RAW)
    expect(Buffer.from(r.bytes).toString()).toBe('hello world')
    expect((await sha256.digest(r.bytes)).bytes).toEqual(leafCid.multihash.bytes)
    expect(r.headers.get('cache-control')).toBe('public, max-age=29030400, immutable')
    expect(r.headers.get('x-content-type-options')).toBe('nosniff')
    expect(r.headers.get('etag')).toBe(`"${leafCid}.raw"`)
    expect(r.headers.get('content-disposition')).toBe(`attachment; filename="${leafCid}.bin"`)
    expect(r.headers.get('content-length')).toBe('11')
    expect(r.headers.get('x-ipfs-roots')).toBe(leafCid.toString())
    // Negotiated by Accept alone: the URL with ?format= is named for caches.
    expect(r.headers.get('content-location')).toBe(`/ipfs/${leafCid}?format=raw`)

    const viaQuery = await get(`/ipfs/${dirCid}?format=raw`)
    expect(viaQuery.status).toBe(200)
    expect(viaQuery.headers.get('content-location')).toBeNull()
    expect((await sha256.digest(viaQuery.bytes)).bytes).toEqual(dirCid.multihash.bytes)
  })

  it('streams a whole directory as a CAR an independent client verifies and unpacks byte for byte', async () => {
    const r = await get(`/ipfs/${dirCid}`, { headers: { accept: CAR } })
    expect(r.status).toBe(200)
    expect(r.error).toBeUndefined()
    expect(r.headers.get('content-type')).toBe('application/vnd.ipld.car; version=1; order=dfs; dups=n')
    expect(r.headers.get('x-content-type-options')).toBe('nosniff')
    expect(r.headers.get('cache-control')).toBe('public, max-age=29030400, immutable')
    expect(r.headers.get('etag')).toBe(`"${dirCid}.car.all.dfs.n"`)
    expect(r.headers.get('x-ipfs-roots')).toBe(dirCid.toString())
    expect(r.headers.get('content-disposition')).toBe(`attachment; filename="${dirCid}.car"`)

    const { roots, blocks } = await verifiedBlocks(r.bytes)
    expect(roots.map(String)).toEqual([dirCid.toString()])
    expect(blocks[0]!.cid.equals(dirCid)).toBe(true)
    expect(new Set(blocks.map((b) => b.cid.toString())).size).toBe(blocks.length)
    // Root, config, docs, readme, weights root and its 4 leaves (3 MiB + change in 1 MiB chunks).
    expect(blocks.length).toBe(9)

    const exported = await exportAll(dirCid, blocks)
    expect(exported.size).toBe(3)
    for (const [path, content] of Object.entries(files)) {
      const got = exported.get(path.replace(/^model/, dirCid.toString()))
      expect(got && Buffer.from(got).equals(Buffer.from(content))).toBe(true)
    }

    // The ipfs-car command, verifying each block itself, unpacks the same files.
    const car = join(dir, 'dir.car')
    const out = join(dir, 'unpacked')
    await writeFile(car, r.bytes)
    await run(process.execPath, [
      join(process.cwd(), 'node_modules/ipfs-car/bin.js'),
      'unpack',
      car,
      '--output',
      out,
    ])
    for (const [path, content] of Object.entries(files)) {
      const got = await readFile(join(out, path.replace(/^model\//, '')))
      expect(got.equals(Buffer.from(content))).toBe(true)
    }
  })

  it('sends blocks depth-first in link order', async () => {
    const r = await get(`/ipfs/${dirCid}?format=car`)
    const { blocks } = await verifiedBlocks(r.bytes)
    // An independent DFS over the same blocks gives the same order.
    const byCid = new Map(blocks.map((b) => [b.cid.toString(), b]))
    const order: string[] = []
    const visit = (cid: CID) => {
      order.push(cid.toString())
      if (cid.code === 0x70)
        for (const l of dagPb.decode(byCid.get(cid.toString())!.bytes).Links) visit(l.Hash)
    }
    visit(dirCid)
    expect(blocks.map((b) => b.cid.toString())).toEqual(order)
  })

  it('honours dag-scope=block, entity and all', async () => {
    const block = await verifiedBlocks((await get(`/ipfs/${weightsCid}?format=car&dag-scope=block`)).bytes)
    expect(block.blocks.map((b) => b.cid.toString())).toEqual([weightsCid.toString()])

    const fileEntity = await get(`/ipfs/${weightsCid}?format=car&dag-scope=entity`)
    expect(fileEntity.headers.get('etag')).toBe(`"${weightsCid}.car.entity.dfs.n"`)
    const file = await verifiedBlocks(fileEntity.bytes)
    expect(file.blocks.length).toBe(5)
    const weights = await exportAll(weightsCid, file.blocks)
    expect(Buffer.from(weights.get(weightsCid.toString())!).equals(files['model/weights.bin'])).toBe(true)

    // A directory's entity is the directory block alone, not its entries.
    const dirEntity = await verifiedBlocks((await get(`/ipfs/${dirCid}?format=car&dag-scope=entity`)).bytes)
    expect(dirEntity.blocks.map((b) => b.cid.toString())).toEqual([dirCid.toString()])

    const bad = await get(`/ipfs/${dirCid}?format=car&dag-scope=everything`)
    expect(bad.status).toBe(400)
    expect(JSON.parse(Buffer.from(bad.bytes).toString()).error.code).toBe('bad-dag-scope')
  })

  it('resolves a path through directories: the path blocks first, then the file', async () => {
    const r = await get(`/ipfs/${dirCid}/docs/read%20me.md`, { headers: { accept: CAR } })
    expect(r.status).toBe(200)
    expect(r.headers.get('x-ipfs-roots')).toBe([dirCid, docsCid, readmeCid].join(','))
    const { roots, blocks } = await verifiedBlocks(r.bytes)
    expect(roots.map(String)).toEqual([dirCid.toString()])
    expect(blocks.map((b) => b.cid.toString())).toEqual([dirCid, docsCid, readmeCid].map(String))
    expect(Buffer.from(blocks[2]!.bytes).equals(Buffer.from(files['model/docs/read me.md']))).toBe(true)

    const missing = await get(`/ipfs/${dirCid}/docs/nope.md?format=car`)
    expect(missing.status).toBe(404)
    expect(JSON.parse(Buffer.from(missing.bytes).toString()).error.code).toBe('path-not-found')
    const throughFile = await get(`/ipfs/${dirCid}/config.json/x?format=car`)
    expect(throughFile.status).toBe(404)
    const rawWithPath = await get(`/ipfs/${dirCid}/config.json?format=raw`)
    expect(rawWithPath.status).toBe(400)
    expect(JSON.parse(Buffer.from(rawWithPath.bytes).toString()).error.code).toBe('path-not-allowed')
  })

  it('sends a repeated block once, and answers dups=y with dups=n where a block repeats', async () => {
    const once = await get(`/ipfs/${zerosCid}?format=car`)
    const n = await verifiedBlocks(once.bytes)
    expect(n.blocks.length).toBe(2)
    const asked = await get(`/ipfs/${zerosCid}`, {
      headers: { accept: `${CAR}; version=1; order=dfs; dups=y` },
    })
    expect(asked.status).toBe(200)
    expect(asked.headers.get('content-type')).toBe('application/vnd.ipld.car; version=1; order=dfs; dups=n')
    expect(asked.headers.get('etag')).toBe(`"${zerosCid}.car.all.dfs.n"`)
    expect(Buffer.from(asked.bytes).equals(Buffer.from(once.bytes))).toBe(true)
    const zeros = await exportAll(zerosCid, n.blocks)
    expect(zeros.get(zerosCid.toString())!.length).toBe(3 * MiB)

    // Where no block repeats, dups=y is the same stream, and says dups=y.
    const distinct = await get(`/ipfs/${dirCid}?format=car&car-dups=y`)
    expect(distinct.headers.get('content-type')).toBe(
      'application/vnd.ipld.car; version=1; order=dfs; dups=y',
    )
    expect(distinct.headers.get('etag')).toBe(`"${dirCid}.car.all.dfs.y"`)
    const plain = await get(`/ipfs/${dirCid}?format=car`)
    expect(Buffer.from(distinct.bytes).equals(Buffer.from(plain.bytes))).toBe(true)
  })

  it('streams: a client that stops reading stops the walk, and one that leaves ends it', async () => {
    // 64 stored 1 MiB leaves: the CAR is 64 MiB, far more than socket buffers hold, so a walk
    // that ran ahead of the client would read ~64 leaves.
    const before = gets.length
    const req = httpGet(`${base}/ipfs/${largeCid}?format=car`, { agent: false })
    const res = await new Promise<IncomingMessage>((resolve) => req.once('response', resolve))
    expect(res.statusCode).toBe(200)
    res.pause()
    const stalled = (await settled(() => gets.length)) - before
    expect(stalled).toBeGreaterThan(1)
    expect(stalled).toBeLessThan(40)
    req.destroy()
    const after = (await settled(() => gets.length)) - before
    expect(after).toBeLessThan(41)
  })

  it('walks dag-cbor links', async () => {
    const { blocks } = await verifiedBlocks((await get(`/ipfs/${cborCid}?format=car`)).bytes)
    const order = blocks.map((b) => b.cid.toString())
    expect(order[0]).toBe(cborCid.toString())
    expect(order[1]).toBe(leafCid.toString())
    expect(order[2]).toBe(dirCid.toString())
    expect(order.length).toBe(1 + 1 + 9)
  })

  it('answers 404 at once for a block it does not hold, reading the store once at most', async () => {
    // Not pinned either: the store is not read at all.
    const before = gets.length
    const r = await get(`/ipfs/${notHeld}`, { headers: { accept: RAW } })
    expect(r.status).toBe(404)
    expect(JSON.parse(Buffer.from(r.bytes).toString())).toEqual({
      error: { code: 'block-not-found', message: expect.stringContaining(notHeld.toString()) },
    })
    expect(r.headers.get('cache-control')).toBe('no-store')
    expect(gets.slice(before)).toEqual([])
    // Pinned but gone from the store: read once.
    const gone = await get(`/ipfs/${brokenLeaf}`, { headers: { accept: RAW } })
    expect(gone.status).toBe(404)
    expect(JSON.parse(Buffer.from(gone.bytes).toString()).error.code).toBe('block-not-found')
    expect(gets.slice(before)).toEqual([brokenLeaf.toString()])

    const car = await get(`/ipfs/${notHeld}?format=car`)
    expect(car.status).toBe(404)
    const head = await fetch(`${base}/ipfs/${notHeld}?format=raw`, { method: 'HEAD' })
    expect(head.status).toBe(404)
    const cached = await get(`/ipfs/${notHeld}?format=raw`, {
      headers: { 'cache-control': 'only-if-cached' },
    })
    expect(cached.status).toBe(412)
  }, 5_000)

  it('cuts the CAR when a child block is missing, and logs it', async () => {
    const r = await get(`/ipfs/${brokenCid}?format=car`)
    expect(r.status).toBe(200)
    expect(r.error).toBeDefined()
    // What arrived is a valid prefix: the root and the first leaf, then nothing.
    const it = await CarBlockIterator.fromBytes(r.bytes)
    const seen: string[] = []
    await expect(
      (async () => {
        for await (const b of it) seen.push(b.cid.toString())
      })(),
    ).resolves.toBeUndefined()
    expect(seen[0]).toBe(brokenCid.toString())
    expect(seen.length).toBe(2)
    expect(
      logLines.some((l) => l.includes('"gateway-car-truncated"') && l.includes(brokenCid.toString())),
    ).toBe(true)
  })

  it('rejects malformed CIDs (400), unsupported formats (406), and a missing Accept (400)', async () => {
    const bad = await get('/ipfs/not-a-cid?format=raw')
    expect(bad.status).toBe(400)
    expect(JSON.parse(Buffer.from(bad.bytes).toString()).error.code).toBe('bad-cid')

    // */* is served (the next test); a wildcard of other types is not.
    for (const accept of ['text/html', 'image/*', `${CAR}; version=2`, `${CAR}; order=bfs`]) {
      const r = await get(`/ipfs/${leafCid}`, { headers: { accept } })
      expect(r.status, accept).toBe(406)
      expect(JSON.parse(Buffer.from(r.bytes).toString()).error.code).toBe('not-acceptable')
    }
    expect((await get(`/ipfs/${leafCid}?format=tar`)).status).toBe(406)
    const none = await get(`/ipfs/${leafCid}`, { headers: { accept: '' } })
    expect(none.status).toBe(400)
    expect(JSON.parse(Buffer.from(none.bytes).toString()).error.code).toBe('format-required')
    // entity-bytes is served (gateway-ranges.test.ts); a range that is no range is a 400.
    const ranged = await get(`/ipfs/${leafCid}?format=car&entity-bytes=0:10`)
    expect(ranged.status).toBe(200)
    expect(ranged.headers.get('content-type')).toBe('application/vnd.ipld.car; version=1; order=dfs; dups=n')
    const badRange = await get(`/ipfs/${leafCid}?format=car&entity-bytes=10`)
    expect(badRange.status).toBe(400)
    expect(JSON.parse(Buffer.from(badRange.bytes).toString()).error.code).toBe('bad-entity-bytes')
  })

  it('serves Accept: */* (curl, wget and fetch send it) as its documented default', async () => {
    // fetch's own default Accept is */*; curl's and wget's too.
    const plain = await fetch(`${base}/ipfs/${leafCid}`)
    expect(plain.status).toBe(200)
    expect(plain.headers.get('content-type')).toBe(RAW)
    expect(plain.headers.get('content-location')).toBe(`/ipfs/${leafCid}?format=raw`)
    expect(plain.headers.get('vary')).toBe('Accept')
    expect(Buffer.from(await plain.arrayBuffer()).toString()).toBe('hello world')
    // A browser's navigation Accept: the HTML it prefers is not served, */* is.
    const browser = await get(`/ipfs/${leafCid}`, {
      headers: { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' },
    })
    expect(browser.headers.get('content-type')).toBe(RAW)
    // A type of ours at the wildcard's q wins over it; one the client likes less does not.
    const car = await get(`/ipfs/${leafCid}`, { headers: { accept: `*/*, ${CAR}` } })
    expect(car.headers.get('content-type')).toMatch(/^application\/vnd\.ipld\.car; version=1/)
    const lowCar = await get(`/ipfs/${leafCid}`, { headers: { accept: `${CAR};q=0.5, */*` } })
    expect(lowCar.headers.get('content-type')).toBe(RAW)
    // Where only a CAR can answer (a path, or a CAR parameter), */* gets a CAR.
    for (const url of [
      `/ipfs/${dirCid}/docs`,
      `/ipfs/${dirCid}?dag-scope=entity`,
      `/ipfs/${weightsCid}?entity-bytes=0:99`,
    ]) {
      const r = await get(url, { headers: { accept: '*/*' } })
      expect(r.status, url).toBe(200)
      expect(r.headers.get('content-type'), url).toBe(
        'application/vnd.ipld.car; version=1; order=dfs; dups=n',
      )
      expect(r.headers.get('content-location'), url).toBe(`${url}${url.includes('?') ? '&' : '?'}format=car`)
      expect((await verifiedBlocks(r.bytes)).blocks.length, url).toBeGreaterThan(0)
    }
  })

  it('picks the best acceptable type by q, and ?format= wins over Accept', async () => {
    const r = await get(`/ipfs/${leafCid}`, { headers: { accept: `${CAR};q=0.5, ${RAW}` } })
    expect(r.headers.get('content-type')).toBe(RAW)
    const c = await get(`/ipfs/${leafCid}?format=car`, { headers: { accept: RAW } })
    expect(c.headers.get('content-type')).toMatch(/^application\/vnd\.ipld\.car; version=1/)
  })

  it('answers HEAD with the headers of GET and no body', async () => {
    const h = await fetch(`${base}/ipfs/${weightsCid}?format=raw`, { method: 'HEAD' })
    expect(h.status).toBe(200)
    expect(h.headers.get('content-type')).toBe(RAW)
    const block = await get(`/ipfs/${weightsCid}?format=raw`)
    expect(h.headers.get('content-length')).toBe(String(block.bytes.length))
    expect((await h.arrayBuffer()).byteLength).toBe(0)

    const before = gets.length
    const c = await fetch(`${base}/ipfs/${dirCid}/docs?format=car`, { method: 'HEAD' })
    expect(c.status).toBe(200)
    expect(c.headers.get('content-type')).toBe('application/vnd.ipld.car; version=1; order=dfs; dups=n')
    expect(c.headers.get('etag')).toMatch(new RegExp(`^"${dirCid}\\.car\\.all\\.dfs\\.n\\.[0-9a-f]{16}"$`))
    expect((await c.arrayBuffer()).byteLength).toBe(0)
    // HEAD reads the blocks on the path, not the DAG below it.
    expect(gets.length - before).toBe(2)
  })

  it('answers the identity probe CID and a matching If-None-Match', async () => {
    const p = await get('/ipfs/bafkqaaa?format=raw')
    expect(p.status).toBe(200)
    expect(p.bytes.length).toBe(0)
    // An identity block is never sent: the CAR is a header naming bafkqaaa.
    const car = await verifiedBlocks((await get('/ipfs/bafkqaaa?format=car')).bytes)
    expect(car.roots.map(String)).toEqual(['bafkqaaa'])
    expect(car.blocks.length).toBe(0)

    const r = await get(`/ipfs/${leafCid}?format=raw`, { headers: { 'if-none-match': `"${leafCid}.raw"` } })
    expect(r.status).toBe(304)
    expect(r.bytes.length).toBe(0)
  })
})
