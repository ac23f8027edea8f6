/**
 * Fetching weights from other stewards' trustless gateways (node/weights/gateway-fetch.ts): a
 * real node serves a model from its gateway; `fetchWeights` streams it into a fresh blockstore
 * with no bitswap at all. Lying gateways (a plain HTTP server sending crafted CARs) are caught
 * block by block, reported, and the next gateway is tried; what they sent that checks out is kept.
 */

import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CarBufferReader } from '@ipld/car/buffer-reader'
import * as CarBufferWriter from '@ipld/car/buffer-writer'
import * as dagPb from '@ipld/dag-pb'
import { FsBlockstore } from 'blockstore-fs'
import type { CID } from 'multiformats/cid'
import { CID as CIDClass } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import type { NodeError } from '../../node/errors.js'
import { type DirectoryImport, importDirectory } from '../../node/weights/directory.js'
import { fetchWeights } from '../../node/weights/fetch.js'
import { fetchAndVerify } from '../../node/weights/fetch-verify.js'
import { fetchFromGateway } from '../../node/weights/gateway-fetch.js'
import { verifyDag } from '../../node/weights/verify.js'
import { type Cluster, startCluster } from '../support/cluster.js'
import { Simulator } from '../support/simulator.js'

const manifestOf = (m: DirectoryImport) => ({ weights: m.root, files: [...m.files], size: m.size })
interface Block {
  cid: CID
  bytes: Uint8Array
}

/** A CARv1 of `blocks` under `root`, as a gateway would send it. */
function car(root: CID, blocks: Block[]): Uint8Array {
  const size = blocks.reduce((n, b) => n + b.bytes.length + 100, 1024)
  const w = CarBufferWriter.createWriter(new ArrayBuffer(size), { roots: [root] })
  for (const b of blocks) w.write(b)
  return w.close({ resize: true })
}

describe('fetching weights from a trustless gateway', () => {
  const sim = new Simulator({
    members: [{ name: 's', roles: ['steward', 'publisher', 'voter'], weight: 1 }],
    base: Date.now(),
    name: 'gateway-fetch',
  })
  let cluster: Cluster
  let scratch: string
  let model: DirectoryImport
  let blocks: Block[]
  let gateway: string
  // A lying gateway: answers every request with `lie` (or cuts the connection when it is null).
  let liar: Server
  let liarUrl: string
  let lie: Uint8Array | null = null
  let store: FsBlockstore
  let n = 0

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'allmende-gateway-fetch-'))
    const dir = join(scratch, 'model')
    await generateModel(dir, { seed: 21, maxShardBytes: 1024 * 1024 })
    cluster = await startCluster(sim.genesis, 1, { helia: true, sync: false })
    const a = cluster.nodes[0]!
    const held = new FsBlockstore(join(a.home, 'blocks'))
    await held.open()
    model = await importDirectory(dir, { blockstore: held })
    await held.close()
    // Pinned as an import pins it: the gateway serves only weights under a pinned root.
    await a.weights!.pin(model.root)
    gateway = a.apiUrl
    const res = await fetch(`${gateway}/ipfs/${model.root}?format=car&dag-scope=all&dups=n`, {
      headers: { accept: 'application/vnd.ipld.car' },
    })
    const reader = CarBufferReader.fromBytes(new Uint8Array(await res.arrayBuffer()))
    blocks = [...reader.blocks()].map((b) => ({ cid: b.cid, bytes: b.bytes }))
    liar = createServer((_req, res) => {
      if (lie === null) {
        res.socket?.destroy()
        return
      }
      res.writeHead(200, { 'content-type': 'application/vnd.ipld.car; version=1' })
      res.end(Buffer.from(lie))
    })
    await new Promise<void>((r) => liar.listen(0, '127.0.0.1', r))
    liarUrl = `http://127.0.0.1:${(liar.address() as AddressInfo).port}`
  }, 60_000)
  afterAll(async () => {
    await new Promise((r) => liar?.close(r))
    await cluster?.stop()
    if (scratch) await rm(scratch, { recursive: true, force: true })
  })
  beforeEach(async () => {
    store = new FsBlockstore(join(scratch, `store-${n++}`))
    await store.open()
  })
  afterEach(async () => {
    await store.close()
  })

  const budget = { maxBytes: 64 * 1024 * 1024, maxBlocks: 10_000 }
  const signal = () => AbortSignal.timeout(20_000)
  /** The model's DAG from `from` (a gateway's URL) into this test's store. */
  const fetchModelFrom = (from: string) =>
    fetchFromGateway({ gateway: from, root: model.root, blockstore: store, signal: signal(), ...budget })

  it('streams the whole DAG from one gateway, every block hashed once, no bitswap', async () => {
    expect(blocks.length).toBeGreaterThan(3)
    const failures: string[] = []
    const r = await fetchWeights({
      root: model.root,
      blockstore: store,
      gateways: [gateway],
      gatewayBlockstore: store,
      onGatewayError: (g, e) => failures.push(`${g} ${e.code}`),
      signal: signal(),
      ...budget,
      pin: async () => true,
    })
    expect(failures).toEqual([])
    expect(r.viaGateway).toBe(blocks.length)
    expect(r.blocks).toBe(blocks.length)
    expect(r.bytes).toBe(blocks.reduce((s, b) => s + b.bytes.length, 0))
    expect((await verifyDag(store, manifestOf(model), { maxModelBytes: model.size })).ok).toBe(true)
  })

  it('refuses a block that is not in the DAG, and tries the next gateway', async () => {
    const stranger = new Uint8Array([1, 2, 3, 4])
    const strangerCid = CIDClass.createV1(raw.code, await sha256.digest(stranger))
    lie = car(model.root, [blocks[0]!, { cid: strangerCid, bytes: stranger }])
    await expect(fetchModelFrom(liarUrl)).rejects.toMatchObject({ code: 'block-unwanted' })
    expect(await store.has(strangerCid)).toBe(false)

    const failures: string[] = []
    const r = await fetchWeights({
      root: model.root,
      blockstore: store,
      gateways: [liarUrl, gateway],
      gatewayBlockstore: store,
      onGatewayError: (_g, e) => failures.push(e.code),
      signal: signal(),
      ...budget,
      pin: async () => true,
    })
    expect(failures).toEqual(['block-unwanted'])
    expect(r.blocks).toBe(blocks.length)
    expect((await verifyDag(store, manifestOf(model), { maxModelBytes: model.size })).ok).toBe(true)
  })

  it('refuses a block whose bytes do not hash to its CID, storing nothing of it', async () => {
    const leaf = blocks.find((b) => b.cid.code === raw.code)!
    const flipped = leaf.bytes.slice()
    flipped[0] = flipped[0]! ^ 1
    const rest = blocks.filter((b) => b !== leaf)
    lie = car(model.root, [...rest.slice(0, blocks.indexOf(leaf)), { cid: leaf.cid, bytes: flipped }])
    await expect(fetchModelFrom(liarUrl)).rejects.toMatchObject({ code: 'block-corrupt' })
    expect(await store.has(leaf.cid)).toBe(false)
  })

  it('keeps what a stream cut short delivered and says how much is missing', async () => {
    lie = car(model.root, blocks.slice(0, 2))
    const r = await fetchModelFrom(liarUrl)
    expect(r.blocks).toBe(2)
    expect(r.missing).toBeGreaterThan(0)
    for (const b of blocks.slice(0, 2)) expect(await store.has(b.cid)).toBe(true)
    // Without bitswap the rest is not found anywhere: block-missing, not a hang.
    await expect(
      fetchWeights({
        root: model.root,
        blockstore: store,
        gateways: [liarUrl],
        gatewayBlockstore: store,
        signal: signal(),
        ...budget,
      }),
    ).rejects.toMatchObject({ code: 'block-missing' })
  })

  it('a gateway that hangs up or is not there is reported; the next one is used', async () => {
    lie = null
    const failures: NodeError[] = []
    const r = await fetchWeights({
      root: model.root,
      blockstore: store,
      gateways: [liarUrl, 'http://127.0.0.1:9', gateway],
      gatewayBlockstore: store,
      onGatewayError: (_g, e) => failures.push(e),
      signal: signal(),
      ...budget,
      pin: async () => true,
    })
    expect(failures.map((e) => e.code)).toEqual(['gateway-unreachable', 'gateway-unreachable'])
    expect(r.viaGateway).toBe(blocks.length)
  })

  it('a gateway answering 404 is refused with its status', async () => {
    const missing = CIDClass.createV1(raw.code, await sha256.digest(new Uint8Array([9, 9, 9])))
    await expect(
      fetchFromGateway({ gateway, root: missing, blockstore: store, signal: signal(), ...budget }),
    ).rejects.toMatchObject({ code: 'gateway-refused', message: expect.stringContaining('404') })
  })

  // ---- Files' sha256 taken as the CAR streams (DfsFileDigests), and the check that uses them.

  /** Each file of the model by path: its file node CID (from the root's dag-pb links) and raw leaves. */
  const modelFiles = () => {
    const byCid = new Map(blocks.map((b) => [b.cid.toString(), b.bytes]))
    const out = new Map<string, { cid: CID; leaves: CID[] }>()
    for (const link of dagPb.decode(byCid.get(model.root.toString())!).Links) {
      const leaves: CID[] = []
      const stack: CID[] = [link.Hash]
      while (stack.length > 0) {
        const cid = stack.pop()!
        if (cid.code === raw.code) leaves.push(cid)
        else {
          const links = dagPb.decode(byCid.get(cid.toString())!).Links
          for (let i = links.length - 1; i >= 0; i--) stack.push(links[i]!.Hash)
        }
      }
      out.set(link.Name!, { cid: link.Hash, leaves })
    }
    expect([...out.keys()].sort()).toEqual(model.files.map((f) => f.path).sort())
    // Both shapes are there: files of several leaves under a file node, and files of one raw block.
    expect([...out.values()].some((f) => f.leaves.length > 1)).toBe(true)
    expect([...out.values()].some((f) => f.cid.code === raw.code)).toBe(true)
    return out
  }
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')

  it('gives every file’s sha256 from a whole fetch, by file node CID, equal to the manifest’s', async () => {
    const r = await fetchModelFrom(gateway)
    expect(r.missing).toBe(0)
    const files = modelFiles()
    expect(r.files.size).toBe(model.files.length)
    const got: Record<string, { size: number; sha256: string } | undefined> = {}
    const want: Record<string, { size: number; sha256: string }> = {}
    for (const f of model.files) {
      const d = r.files.get(files.get(f.path)!.cid.toString())
      got[f.path] = d && { size: d.size, sha256: hex(d.sha256) }
      want[f.path] = { size: f.size, sha256: hex(f.sha256) }
    }
    expect(got).toEqual(want)
  })

  it('fetchAndVerify through the gateway gives an ok verdict, the digests standing in for reading the leaves', async () => {
    const files = modelFiles()
    // Reads of the leaves of files of several leaves, by the fetch's walk or by the check.
    const leafOf = new Set<string>()
    for (const f of files.values())
      if (f.leaves.length > 1) for (const l of f.leaves) leafOf.add(l.toString())
    const leafReads: string[] = []
    const local = {
      get: (cid: CID, options?: { signal?: AbortSignal }) => {
        if (leafOf.has(cid.toString())) leafReads.push(cid.toString())
        return store.get(cid, options)
      },
      has: (cid: CID, options?: { signal?: AbortSignal }) => store.has(cid, options),
      put: (cid: CID, bytes: Uint8Array) => store.put(cid, bytes),
    }
    const failures: string[] = []
    const r = await fetchAndVerify({
      root: model.root,
      blockstore: local,
      manifest: manifestOf(model),
      maxModelBytes: model.size,
      gateways: [gateway],
      onGatewayError: (g, e) => failures.push(`${g} ${e.code}`),
      signal: signal(),
      ...budget,
      pin: async () => true,
    })
    expect(failures).toEqual([])
    expect(r.fetchError).toBeUndefined()
    expect(r.verdict).toEqual({ ok: true, problems: [] })
    expect(r.fetch!.viaGateway).toBe(blocks.length)
    expect(r.fetch!.files.size).toBe(model.files.length)
    expect(leafReads).toEqual([])
    // The blocks are in the store all the same: a check without the digests reads and passes them.
    expect((await verifyDag(store, manifestOf(model), { maxModelBytes: model.size })).ok).toBe(true)
  })

  /**
   * A store that already holds a corrupt copy of a leaf of a file of several leaves (a disk fault,
   * an earlier copy), then fetchAndVerify through the gateway. Whether the stored leaf is still the
   * corrupt one afterwards, and the file's path.
   */
  const fetchOverACorruptLeaf = async () => {
    const [path, file] = [...modelFiles()].find(([, f]) => f.leaves.length > 1)!
    const leaf = blocks.find((b) => b.cid.equals(file.leaves[0]!))!
    const rotten = leaf.bytes.slice()
    rotten[0] = rotten[0]! ^ 1
    await store.put(leaf.cid, rotten)
    const r = await fetchAndVerify({
      root: model.root,
      blockstore: store,
      manifest: manifestOf(model),
      maxModelBytes: model.size,
      gateways: [gateway],
      signal: signal(),
      ...budget,
      pin: async () => true,
    })
    expect(r.fetchError).toBeUndefined()
    const stored = Buffer.concat(await all(store.get(leaf.cid)))
    return { r, path, leaf: leaf.cid, corrupt: !stored.equals(Buffer.from(leaf.bytes)) }
  }

  // A damaged copy held before the fetch is replaced by the streamed bytes, which were hashed
  // against the CID; so the digests taken from the stream describe what is stored. (The fetch once
  // kept the held copy while the check trusted the stream: the damaged leaf then passed.)
  it('a corrupt leaf held before the fetch is replaced by the checked bytes, and the check passes', async () => {
    const { r, corrupt } = await fetchOverACorruptLeaf()
    expect(corrupt).toBe(false)
    expect(r.verdict).toEqual({ ok: true, problems: [] })
    const reread = await verifyDag(store, manifestOf(model), { maxModelBytes: model.size })
    expect(reread).toEqual({ ok: true, problems: [] })
  })

  // The trustless gateway spec's terms (`car-order`/`car-dups`, or `order`/`dups` on the Accept
  // media type): a gateway defaulting to another order would leave DfsFileDigests nothing to follow.
  it('asks the gateway for a depth-first CAR without duplicates in the spec’s terms', async () => {
    let seen: { url: string; accept: string } | undefined
    const spy = createServer((req, res) => {
      seen = { url: req.url ?? '', accept: String(req.headers.accept ?? '') }
      res.writeHead(404).end()
    })
    await new Promise<void>((r) => spy.listen(0, '127.0.0.1', r))
    try {
      const url = `http://127.0.0.1:${(spy.address() as AddressInfo).port}`
      await expect(fetchModelFrom(url)).rejects.toMatchObject({ code: 'gateway-refused' })
    } finally {
      await new Promise((r) => spy.close(r))
    }
    const query = new URL(seen!.url, 'http://127.0.0.1').searchParams
    const car = seen!.accept
      .split(',')
      .map((range) => range.split(';').map((x) => x.trim().toLowerCase()))
      .find(([type]) => type === 'application/vnd.ipld.car')
    const param = (key: string) =>
      query.get(`car-${key}`) ?? car?.find((p) => p.startsWith(`${key}=`))?.slice(key.length + 1)
    expect(query.get('format')).toBe('car')
    expect(query.get('dag-scope')).toBe('all')
    expect({ order: param('order'), dups: param('dups') }).toEqual({ order: 'dfs', dups: 'n' })
  })

  // Helia's networked blockstore, as bitswap would serve it: every block of the model, from
  // memory, stored in the local store as it arrives (as Helia does).
  const network = () => ({
    blockstore: {
      async *get(cid: CID) {
        const b = blocks.find((x) => x.cid.equals(cid))
        if (!b) throw Object.assign(new Error(`no ${cid}`), { name: 'NotFoundError' })
        await store.put(cid, b.bytes)
        yield b.bytes
      },
    },
  })

  it('leaves a gateway that answers nothing for the next source, and bitswap gets the DAG', async () => {
    const sockets: Socket[] = []
    const silent = createNetServer((socket) => void sockets.push(socket)) // accepts, never answers
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
    const failures: string[] = []
    try {
      const r = await fetchWeights({
        root: model.root,
        blockstore: store,
        helia: network(),
        gateways: [`http://127.0.0.1:${(silent.address() as AddressInfo).port}`],
        gatewayBlockstore: store,
        gatewayStallMs: 300,
        onGatewayError: (_g, e) => failures.push(e.code),
        signal: signal(),
        ...budget,
        pin: async () => true,
      })
      expect(failures).toEqual(['gateway-stalled'])
      expect(r.viaGateway).toBe(0)
      expect(r.fetched).toBe(blocks.length)
      expect((await verifyDag(store, manifestOf(model), { maxModelBytes: model.size })).ok).toBe(true)
    } finally {
      for (const socket of sockets) socket.destroy()
      await new Promise((r) => silent.close(r))
    }
  })

  it('replaces a damaged block it holds with a good one from the network', async () => {
    const leaf = blocks.find((b) => b.cid.code === raw.code && b.bytes.length > 1)!
    const rotten = leaf.bytes.slice()
    rotten[0] = rotten[0]! ^ 1
    await store.put(leaf.cid, rotten)
    const r = await fetchWeights({
      root: model.root,
      blockstore: store,
      helia: network(),
      signal: signal(),
      ...budget,
      pin: async () => true,
    })
    expect(r.blocks).toBe(blocks.length)
    expect(Buffer.concat(await all(store.get(leaf.cid))).equals(Buffer.from(leaf.bytes))).toBe(true)
    expect((await verifyDag(store, manifestOf(model), { maxModelBytes: model.size })).ok).toBe(true)
  })

  // The node's gateway reads blocks into buffers it reuses once the socket has taken them: several
  // responses at once, each over more blocks than there are buffers, must still carry the right
  // bytes (the fetch hashes every block, and every file's sha256 is compared).
  it('serves several large CARs at once from reused buffers, every byte right', async () => {
    const dir = join(scratch, 'large')
    await mkdir(dir)
    await writeFile(join(dir, 'a.bin'), randomBytes(40 * 1024 * 1024 + 123))
    await writeFile(join(dir, 'b.bin'), randomBytes(24 * 1024 * 1024))
    const held = new FsBlockstore(join(cluster.nodes[0]!.home, 'blocks'))
    await held.open()
    const large = await importDirectory(dir, { blockstore: held })
    await held.close()
    await cluster.nodes[0]!.weights!.pin(large.root)
    const stores = await Promise.all(
      [0, 1, 2, 3].map(async (i) => {
        const s = new FsBlockstore(join(scratch, `large-${i}`))
        await s.open()
        return s
      }),
    )
    try {
      const results = await Promise.all(
        stores.map((s) =>
          fetchFromGateway({
            gateway,
            root: large.root,
            blockstore: s,
            signal: AbortSignal.timeout(120_000),
            maxBytes: 128 * 1024 * 1024,
            maxBlocks: 10_000,
          }),
        ),
      )
      for (const r of results) {
        expect(r.missing).toBe(0)
        expect(r.blocks).toBeGreaterThan(64)
        expect([...r.files.values()].map((d) => Buffer.from(d.sha256).toString('hex')).sort()).toEqual(
          large.files.map((f) => Buffer.from(f.sha256).toString('hex')).sort(),
        )
      }
      const check = await verifyDag(stores[3]!, manifestOf(large), { maxModelBytes: large.size })
      expect(check).toEqual({ ok: true, problems: [] })
    } finally {
      for (const s of stores) await s.close()
    }
  }, 120_000)
})

async function all(source: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for await (const p of source) out.push(p)
  return out
}
