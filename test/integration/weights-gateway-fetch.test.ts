/**
 * Fetching weights from other stewards' trustless gateways (node/weights/gateway-fetch.ts): a
 * real node serves a model from its gateway; `fetchWeights` streams it into a fresh blockstore
 * with no bitswap at all. Lying gateways (a plain HTTP server sending crafted CARs) are caught
 * block by block, reported, and the next gateway is tried; what they sent that checks out is kept.
 */

import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CarBufferReader } from '@ipld/car/buffer-reader'
import * as CarBufferWriter from '@ipld/car/buffer-writer'
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
    await expect(
      fetchFromGateway({
        gateway: liarUrl,
        root: model.root,
        blockstore: store,
        signal: signal(),
        ...budget,
      }),
    ).rejects.toMatchObject({ code: 'block-unwanted' })
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
    await expect(
      fetchFromGateway({
        gateway: liarUrl,
        root: model.root,
        blockstore: store,
        signal: signal(),
        ...budget,
      }),
    ).rejects.toMatchObject({ code: 'block-corrupt' })
    expect(await store.has(leaf.cid)).toBe(false)
  })

  it('keeps what a stream cut short delivered and says how much is missing', async () => {
    lie = car(model.root, blocks.slice(0, 2))
    const r = await fetchFromGateway({
      gateway: liarUrl,
      root: model.root,
      blockstore: store,
      signal: signal(),
      ...budget,
    })
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
})
