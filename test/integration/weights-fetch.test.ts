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

/** Every CID held in `store`, sorted. */
async function heldKeys(store: FsBlockstore): Promise<string[]> {
  const keys: string[] = []
  for await (const { cid } of store.getAll()) keys.push(cid.toString())
  return keys.sort()
}

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

  it('ends with fetch-timeout for a root nobody holds, asking for nothing more once the signal fired', async () => {
    const b = cluster.nodes[1]!
    const nobody = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('held by nobody')))
    const heldBefore = await heldKeys(storeB)
    // Helia as fetchWeights sees it, with every block it asks the network for recorded: the CID,
    // the signal it was given, and whether the read is still running.
    const asked: { cid: string; signal: AbortSignal | undefined; settled: boolean }[] = []
    const helia = {
      pins: b.p2p.helia!.pins,
      blockstore: {
        get(cid: CID, options?: { signal?: AbortSignal }) {
          const read = { cid: cid.toString(), signal: options?.signal, settled: false }
          asked.push(read)
          const source = b.p2p.helia!.blockstore.get(cid, options)
          return (async function* () {
            try {
              yield* source
            } finally {
              read.settled = true
            }
          })()
        },
      },
    }
    const signal = AbortSignal.timeout(1_500)
    let askedWhenFired = -1
    signal.addEventListener('abort', () => {
      askedWhenFired = asked.length
    })
    await expect(
      fetchWeights({ root: nobody, blockstore: storeB, helia, signal, maxBytes: 1024 * 1024 }),
    ).rejects.toMatchObject({ name: 'NodeError', code: 'fetch-timeout' })
    // It asked the network for the root (there is nothing else to ask for), and no more after the
    // signal fired; every read it started was given that signal and had ended when it rejected.
    expect(askedWhenFired).toBeGreaterThan(0)
    expect(asked.length).toBe(askedWhenFired)
    expect(new Set(asked.map((r) => r.cid))).toEqual(new Set([nobody.toString()]))
    for (const r of asked) {
      expect(r.signal?.aborted).toBe(true)
      expect(r.settled).toBe(true)
    }
    // Nothing was stored.
    expect(await storeB.has(nobody)).toBe(false)
    expect(await heldKeys(storeB)).toEqual(heldBefore)
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
