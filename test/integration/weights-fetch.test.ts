/**
 * Fetching weights over bitswap: two Helia nodes in one process; a model imported into node A's
 * blockstore is fetched by node B block by block, held, pinned, and verifies against its
 * manifest fields; a root nobody holds ends with a code when the signal times out.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FsBlockstore } from 'blockstore-fs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { type DirectoryImport, importDirectory } from '../../node/weights/directory.js'
import { fetchWeights } from '../../node/weights/fetch.js'
import { verifyDag } from '../../node/weights/verify.js'
import { type Cluster, startCluster } from '../support/cluster.js'
import { Simulator } from '../support/simulator.js'
import { until } from '../support/until.js'

const manifestOf = (m: DirectoryImport) => ({ weights: m.root, files: [...m.files], size: m.size })

describe('fetchWeights', () => {
  const sim = new Simulator({
    members: [
      { name: 'p', roles: ['publisher', 'voter'], weight: 1 },
      { name: 's', roles: ['steward', 'voter'], weight: 1 },
    ],
    base: Date.now(),
    name: 'weights-fetch',
  })
  let cluster: Cluster
  let scratch: string
  let model: DirectoryImport
  let storeB: FsBlockstore

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'allmende-fetch-'))
    const dir = join(scratch, 'model')
    await generateModel(dir, { seed: 11, maxShardBytes: 1024 * 1024 })
    cluster = await startCluster(sim.genesis, 2, { helia: true, sync: false })
    const [a] = cluster.nodes
    const storeA = new FsBlockstore(join(a!.home, 'blocks'))
    await storeA.open()
    model = await importDirectory(dir, { blockstore: storeA })
    await storeA.close()
    storeB = new FsBlockstore(join(cluster.nodes[1]!.home, 'blocks'))
    await storeB.open()
    await until(() => cluster.nodes[1]!.p2p.peers().length > 0, 'B connected to A', 10_000)
  }, 60_000)
  afterAll(async () => {
    await storeB?.close()
    await cluster?.stop()
    if (scratch) await rm(scratch, { recursive: true, force: true })
  })

  it('brings every block of a DAG held by a peer into the blockstore and pins it', async () => {
    const b = cluster.nodes[1]!
    const before = await verifyDag(storeB, manifestOf(model), { maxModelBytes: model.size })
    expect(before.ok).toBe(false)
    expect(new Set(before.problems.map((p) => p.code))).toEqual(new Set(['block-missing']))

    const result = await fetchWeights({
      root: model.root,
      blockstore: storeB,
      helia: b.p2p.helia,
      signal: AbortSignal.timeout(30_000),
      maxBytes: model.size + 1024 * 1024,
      ...(b.weights ? { pin: b.weights.pin } : {}),
    })
    expect(result.blocks).toBeGreaterThan(3)
    expect(result.fetched).toBe(result.blocks)
    expect(result.bytes).toBeGreaterThanOrEqual(model.size)
    expect(result.pinned).toBe(true)
    expect(await b.p2p.helia!.pins.isPinned(model.root)).toBe(true)

    const after = await verifyDag(storeB, manifestOf(model), { maxModelBytes: model.size })
    expect(after).toEqual({ ok: true, problems: [] })

    // Again: everything is held, nothing comes from the network.
    const again = await fetchWeights({
      root: model.root,
      blockstore: storeB,
      signal: AbortSignal.timeout(5_000),
      maxBytes: model.size + 1024 * 1024,
    })
    expect(again.fetched).toBe(0)
    expect(again.blocks).toBe(result.blocks)
  }, 60_000)

  it('refuses a DAG over the byte budget', async () => {
    await expect(
      fetchWeights({
        root: model.root,
        blockstore: storeB,
        signal: AbortSignal.timeout(5_000),
        maxBytes: 1000,
      }),
    ).rejects.toMatchObject({ name: 'NodeError', code: 'oversize' })
  })

  it('ends with fetch-timeout, on time, for a root nobody holds', async () => {
    const b = cluster.nodes[1]!
    const nobody = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('held by nobody')))
    const started = Date.now()
    await expect(
      fetchWeights({
        root: nobody,
        blockstore: storeB,
        helia: b.p2p.helia,
        signal: AbortSignal.timeout(1_500),
        maxBytes: 1024 * 1024,
      }),
    ).rejects.toMatchObject({ name: 'NodeError', code: 'fetch-timeout' })
    expect(Date.now() - started).toBeLessThan(5_000)
    expect(await storeB.has(nobody)).toBe(false)
  }, 20_000)

  it('refuses a held block whose bytes do not hash to its CID', async () => {
    const cid = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('the real bytes')))
    const store = new FsBlockstore(join(scratch, 'corrupt'))
    await store.open()
    try {
      await store.put(cid, new TextEncoder().encode('other bytes'))
      await expect(
        fetchWeights({ root: cid, blockstore: store, signal: AbortSignal.timeout(1_000), maxBytes: 1024 }),
      ).rejects.toMatchObject({ name: 'NodeError', code: 'block-corrupt' })
    } finally {
      await store.close()
    }
  })

  it('without a network, a missing block is block-missing', async () => {
    const nobody = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('also nobody')))
    await expect(
      fetchWeights({ root: nobody, blockstore: storeB, signal: AbortSignal.timeout(1_000), maxBytes: 10 }),
    ).rejects.toMatchObject({ name: 'NodeError', code: 'block-missing' })
  })
})
