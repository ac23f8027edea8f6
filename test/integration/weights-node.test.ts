/**
 * Weights on a real node: uploads (POST /weights) with the admin token and with publisher upload
 * statements (version 2, one use each), refusals with their codes (an old CLI's version 1 told
 * to upgrade), a tampered CAR that leaves nothing reachable, the
 * gateway serving what was uploaded (verified block by block and reassembled by
 * ipfs-unixfs-exporter), the DAG check against a manifest, and weights that stay served and
 * pinned across a restart.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CarBlockIterator } from '@ipld/car/iterator'
import { FsBlockstore } from 'blockstore-fs'
import { exporter, recursive as exportRecursive } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { adminToken } from '../../node/config.js'
import { type AllmendeNode, startNode } from '../../node/index.js'
import { silentLogger } from '../../node/log.js'
import { createP2P, topicFor } from '../../node/p2p.js'
import { BlockFiles } from '../../node/weights/block-files.js'
import { importDirectory } from '../../node/weights/directory.js'
import { peerIdBytes, signRecord, uploadStatementBytes } from '../../protocol/index.js'
import { type Cluster, startCluster, submit } from '../support/cluster.js'
import { Simulator } from '../support/simulator.js'
import { until } from '../support/until.js'
import { carOf } from '../support/uploads.js'

const CAR = 'application/vnd.ipld.car'

interface Block {
  cid: CID
  bytes: Uint8Array
}

interface Model {
  dir: string
  root: CID
  size: number
  files: { path: string; size: number; sha256: Uint8Array }[]
  /** Root first, then the rest in import order. */
  blocks: Block[]
}

async function makeModel(base: string, seed: number): Promise<Model> {
  const dir = join(base, `model-${seed}`)
  await generateModel(dir, { seed, layers: 1 })
  const held = new Map<string, Block>()
  const imp = await importDirectory(dir, {
    blockstore: {
      put: async (cid: CID, bytes: Uint8Array) => {
        held.set(cid.toString(), { cid, bytes })
        return cid
      },
    },
  })
  const root = held.get(imp.root.toString())!
  const rest = [...held.values()].filter((b) => !b.cid.equals(imp.root))
  return { dir, root: imp.root, size: imp.size, files: [...imp.files], blocks: [root, ...rest] }
}

/**
 * Waits for `p`, failing instead of hanging when it has not settled after `ms`. A bound against
 * a hang, not a measurement: nothing asserts how long it took.
 */
async function settles<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([p, bound])
  } finally {
    clearTimeout(timer)
  }
}

/** The error code of a TCP connection attempt to the host and port of `url` ('' if it connected). */
function connectError(url: string): Promise<string> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) })
    socket.once('connect', () => {
      socket.destroy()
      resolve('')
    })
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
  })
}

/** Files under the node's upload staging directory (blocks of uploads under way). */
async function stagedFiles(home: string): Promise<number> {
  const entries = await readdir(join(home, 'upload-staging'), { recursive: true, withFileTypes: true })
  return entries.filter((e) => e.isFile()).length
}

/** `store`, with every CID it is asked to read (has, get) appended to `reads`. */
function readsOf(store: FsBlockstore, reads: string[]): FsBlockstore {
  return new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown
      if (typeof value !== 'function') return value
      return (...args: unknown[]) => {
        const cid = CID.asCID(args[0])
        if (cid && (prop === 'has' || prop === 'get')) reads.push(cid.toString())
        if (prop === 'getMany' || prop === 'getAll') reads.push(String(prop))
        return (value as (...a: unknown[]) => unknown).apply(target, args)
      }
    },
  })
}

describe('weights on a node', () => {
  const sim = new Simulator({
    members: [
      { name: 'p', roles: ['publisher', 'voter'], weight: 1 },
      { name: 's', roles: ['steward', 'voter'], weight: 1 },
      { name: 'v', roles: ['voter'], weight: 1 },
    ],
    base: Date.now(),
    name: 'weights',
  })
  let cluster: Cluster
  let node: AllmendeNode
  let token: string
  let scratch: string
  let a!: Model
  let b!: Model
  let c!: Model
  let d!: Model

  const upload = (body: Uint8Array, headers: Record<string, string>) =>
    fetch(`${node.apiUrl}/weights`, {
      method: 'POST',
      headers: { 'content-type': CAR, ...headers },
      body: Buffer.from(body),
    })
  const admin = () => ({ authorization: `Bearer ${token}` })
  /** Version-2 statement headers (SPEC.md §7) for this node, with a fresh nonce; `signs` overrides what is signed. */
  const statement = (
    signer: string,
    root: CID,
    size: number,
    at = Date.now(),
    signs: { size?: number } = {},
  ) => {
    const nonce = randomBytes(16)
    const signed = uploadStatementBytes({
      federation: sim.federation,
      node: peerIdBytes(node.p2p.peerId)!,
      root,
      at,
      size: signs.size ?? size,
      nonce,
    })
    return {
      'allmende-upload-version': '2',
      'allmende-upload-author': sim.did(signer),
      'allmende-upload-federation': sim.federation.toString(),
      'allmende-upload-node': node.p2p.peerId,
      'allmende-upload-root': root.toString(),
      'allmende-upload-at': String(at),
      'allmende-upload-size': String(size),
      'allmende-upload-nonce': nonce.toString('hex'),
      'allmende-upload-signature': Buffer.from(sim.signer(signer).sign(signed)).toString('base64'),
    }
  }
  const rawStatus = async (cid: CID) =>
    (await fetch(`${node.apiUrl}/ipfs/${cid}?format=raw`, { method: 'HEAD' })).status

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'allmende-weights-'))
    ;[a, b, c, d] = (await Promise.all([1, 2, 3, 4].map((seed) => makeModel(scratch, seed)))) as [
      Model,
      Model,
      Model,
      Model,
    ]
    cluster = await startCluster(sim.genesis, 1, { helia: true })
    node = cluster.nodes[0]!
    token = await adminToken(node.home)
  }, 60_000)
  afterAll(async () => {
    await cluster?.stop()
    if (scratch) await rm(scratch, { recursive: true, force: true })
  })

  it('takes a CAR with the admin token, stores it and pins its root', async () => {
    expect(a.blocks.length).toBeGreaterThan(4)
    const res = await upload(await carOf(a.root, a.blocks), admin())
    expect(res.status).toBe(201)
    const body = (await res.json()) as Record<string, unknown>
    expect(body).toMatchObject({
      root: a.root.toString(),
      blocks: a.blocks.length,
      bytes: a.size,
      pinned: true,
    })
    expect(await node.p2p.helia!.pins.isPinned(a.root)).toBe(true)
  })

  it('takes a CAR signed by a publisher; a statement is good for one upload, a new one for another', async () => {
    const signed = statement('p', b.root, b.size)
    const res = await upload(await carOf(b.root, b.blocks), signed)
    expect(res.status, await res.clone().text()).toBe(201)
    expect(await res.json()).toMatchObject({ root: b.root.toString(), bytes: b.size, dropped: 0 })
    expect(await rawStatus(b.root)).toBe(200)
    const replayed = await upload(await carOf(b.root, b.blocks), signed)
    expect(replayed.status).toBe(401)
    expect(((await replayed.json()) as { error: { code: string } }).error.code).toBe('upload-replayed')
    // A duplicate upload under a statement of its own is fine.
    const again = await upload(await carOf(b.root, b.blocks), statement('p', b.root, b.size))
    expect(again.status).toBe(201)
  })

  it('refuses bad signatures, non-publishers, stale statements and missing credentials', async () => {
    const car = await carOf(c.root, c.blocks)
    const { 'allmende-upload-version': _, ...v1 } = statement('p', c.root, c.size)
    const { 'allmende-upload-size': __, ...sizeless } = statement('p', c.root, c.size)
    const cases: [Record<string, string>, number, string][] = [
      [statement('p', c.root, c.size, Date.now(), { size: c.size + 1 }), 401, 'upload-signature-invalid'],
      [statement('p', c.root, c.size + 1, Date.now(), { size: c.size }), 401, 'upload-signature-invalid'],
      [statement('v', c.root, c.size), 403, 'not-a-publisher'],
      // What an older CLI sends: no version header. It is told to upgrade.
      [v1, 400, 'upload-statement-outdated'],
      [
        { ...statement('p', c.root, c.size), 'allmende-upload-version': '3' },
        400,
        'upload-statement-version',
      ],
      [sizeless, 401, 'upload-statement-invalid'],
      [statement('p', c.root, c.size, Date.now() - 11 * 60_000), 401, 'upload-stale'],
      [
        { ...statement('p', c.root, c.size), 'allmende-upload-signature': 'abc' },
        401,
        'upload-statement-invalid',
      ],
      [{ authorization: 'Bearer wrong' }, 401, 'unauthorized'],
      [{}, 401, 'unauthorized'],
    ]
    for (const [headers, status, code] of cases) {
      const res = await upload(car, headers)
      expect(res.status, JSON.stringify(headers)).toBe(status)
      const error = ((await res.json()) as { error: { code: string; message: string } }).error
      expect(error.code).toBe(code)
      if (code === 'upload-statement-outdated') expect(error.message).toMatch(/upgrade the allmende CLI/)
    }
    // Nothing of it is reachable: every one was refused before its body was read.
    expect(await rawStatus(c.root)).toBe(404)
    for (const blk of c.blocks.slice(1, 4)) expect(await rawStatus(blk.cid)).toBe(404)
  })

  it('refuses a CAR whose block does not match its CID, leaving no root and deleting nothing held before', async () => {
    const heldBefore = a.blocks[1]!
    const fresh = d.blocks.filter((x) => !a.blocks.some((y) => y.cid.equals(x.cid)))
    const early = fresh[1]!
    const victim = fresh[fresh.length - 1]!
    const tampered = {
      cid: victim.cid,
      bytes: Uint8Array.from(victim.bytes, (x, i) => (i === 0 ? x ^ 1 : x)),
    }
    const blocks = [
      d.blocks[0]!,
      heldBefore,
      ...d.blocks.slice(1).filter((x) => !x.cid.equals(victim.cid)),
      tampered,
    ]
    const res = await upload(await carOf(d.root, blocks), admin())
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('block-hash-mismatch')
    expect(await rawStatus(d.root)).toBe(404)
    expect(await rawStatus(early.cid)).toBe(404)
    expect(await rawStatus(heldBefore.cid)).toBe(200)
    expect(await node.p2p.helia!.pins.isPinned(d.root)).toBe(false)
  })

  it('refuses a CAR without the blocks under its root, and one that is not a CAR', async () => {
    const partial = await upload(await carOf(d.root, d.blocks.slice(0, 2)), admin())
    expect(partial.status).toBe(400)
    expect(((await partial.json()) as { error: { code: string } }).error.code).toBe('dag-incomplete')
    expect(await rawStatus(d.root)).toBe(404)
    const junk = await upload(new TextEncoder().encode('not a car at all'), admin())
    expect(junk.status).toBe(400)
    const empty = await upload(new Uint8Array(), admin())
    expect(empty.status).toBe(400)
    expect(((await empty.json()) as { error: { code: string } }).error.code).toBe('bad-car')
    const wrongType = await fetch(`${node.apiUrl}/weights`, {
      method: 'POST',
      headers: { 'content-type': 'application/cbor', ...admin() },
      body: Buffer.from([1, 2, 3]),
    })
    expect(wrongType.status).toBe(415)
  })

  async function fetchAndCheck(model: Model): Promise<void> {
    const res = await fetch(`${node.apiUrl}/ipfs/${model.root}?format=car`)
    expect(res.status).toBe(200)
    const bytes = new Uint8Array(await res.arrayBuffer())
    const got = new Map<string, Uint8Array>()
    const car = await CarBlockIterator.fromBytes(bytes)
    expect((await car.getRoots()).map(String)).toEqual([model.root.toString()])
    for await (const blk of car) {
      const digest = createHash('sha256').update(blk.bytes).digest()
      expect(Buffer.from(blk.cid.multihash.digest).equals(digest)).toBe(true)
      got.set(blk.cid.toString(), blk.bytes)
    }
    const store = {
      async *get(cid: CID) {
        const x = got.get(cid.toString())
        if (!x) throw new Error(`block ${cid} is not in the CAR`)
        yield x
      },
    }
    const seen: string[] = []
    for await (const listed of exportRecursive(model.root, store)) {
      const entry = await exporter(listed.cid, store)
      if (entry.type !== 'file' && entry.type !== 'raw') continue
      const path = listed.path.split('/').slice(1).join('/')
      const chunks: Uint8Array[] = []
      for await (const part of entry.content()) chunks.push(part)
      expect(Buffer.concat(chunks).equals(await readFile(join(model.dir, path))), path).toBe(true)
      seen.push(path)
    }
    expect(seen.sort()).toEqual(model.files.map((f) => f.path).sort())
  }

  it('serves the uploaded weights through the gateway, verifiable block by block', async () => {
    await fetchAndCheck(a)
    await fetchAndCheck(b)
  })

  it('answers 404 for a block it does not hold from its own store, never asking a peer that holds it', async () => {
    // A peer connected over bitswap holds the whole DAG of a model this node does not have. Had
    // the gateway read through Helia's networked blockstore, it would have got the root from it.
    const f = await makeModel(scratch, 5)
    const peerStore = new FsBlockstore(join(scratch, 'peer-blocks'))
    await peerStore.open()
    for (const blk of f.blocks) await peerStore.put(blk.cid, blk.bytes)
    const peerReads: string[] = []
    const peer = await createP2P({
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [node.p2p.addresses()[0]!],
      topic: topicFor(node.config.federation),
      validate: () => 'ignore',
      onMessage: () => {},
      blockstore: readsOf(peerStore, peerReads),
    })
    const networked = vi.spyOn(node.p2p.helia!.blockstore, 'get')
    const ownGet = vi.spyOn(BlockFiles.prototype, 'get')
    const ownReadInto = vi.spyOn(BlockFiles.prototype, 'readInto')
    try {
      await until(() => node.p2p.peers().some((x) => x.id === peer.peerId), 'the peer connected', 15_000)
      networked.mockClear()
      ownGet.mockClear()
      ownReadInto.mockClear()
      peerReads.length = 0

      for (const format of ['car', 'raw']) {
        // The timeout only bounds a hang; nothing here measures how long the answer took.
        const res = await fetch(`${node.apiUrl}/ipfs/${f.root}?format=${format}`, {
          signal: AbortSignal.timeout(30_000),
        })
        expect(res.status, format).toBe(404)
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('block-not-found')
      }
      // A root under no pin is answered from the node's pin records: no store is read, not its
      // own, not through Helia, not at the peer.
      const ownReads = [...ownGet.mock.calls, ...ownReadInto.mock.calls].map(([cid]) => String(cid))
      expect(ownReads).toEqual([])
      expect(networked).not.toHaveBeenCalled()
      expect(peerReads).toEqual([])
      ownGet.mockRestore()
      ownReadInto.mockRestore()

      // The control: the same root asked of Helia's networked blockstore comes from the peer.
      const parts: Uint8Array[] = []
      for await (const part of node.p2p.helia!.blockstore.get(f.root, {
        signal: AbortSignal.timeout(30_000),
      }))
        parts.push(part)
      expect(Buffer.concat(parts).equals(f.blocks[0]!.bytes)).toBe(true)
      expect(networked).toHaveBeenCalled()
      expect(peerReads).toContain(f.root.toString())
    } finally {
      networked.mockRestore()
      ownGet.mockRestore()
      ownReadInto.mockRestore()
      await peer.stop()
      await peerStore.close()
    }
  })

  it('imports a directory on its own machine with the admin token, pinned; refuses anything else', async () => {
    const e = await makeModel(scratch, 41)
    const post = (body: unknown, headers: Record<string, string> = admin()) =>
      fetch(`${node.apiUrl}/weights/import`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
      })
    const res = await post({ path: e.dir })
    expect(res.status).toBe(201)
    expect(await res.json()).toEqual({
      root: e.root.toString(),
      files: e.files.length,
      size: e.size,
      pinned: true,
    })
    expect(await node.p2p.helia!.pins.isPinned(e.root)).toBe(true)
    await fetchAndCheck(e)

    const anonymous = await post({ path: e.dir }, {})
    expect(anonymous.status).toBe(401)
    const relative = await post({ path: 'model-41' })
    expect(relative.status).toBe(400)
    expect(((await relative.json()) as { error: { code: string } }).error.code).toBe('bad-request')
    const missing = await post({ path: join(scratch, 'nowhere') })
    expect(missing.status).toBe(400)
    expect(((await missing.json()) as { error: { message: string } }).error.message).toContain('nowhere')
    // Let go of it again: the restart test below counts the pins.
    for await (const _ of node.p2p.helia!.pins.rm(e.root)) {
      // each block's pin count goes down
    }
  })

  it('checks held weights against a manifest', async () => {
    const manifest = signRecord(
      {
        kind: 'manifest',
        federation: sim.federation,
        at: Date.now(),
        body: {
          name: 'fixture',
          version: '1.0.0',
          weights: a.root,
          cidProfile: 'unixfs-v1-2025',
          files: a.files,
          size: a.size,
          format: 'safetensors',
          license: 'Apache-2.0',
          languages: ['de'],
        },
      },
      sim.signer('p'),
    )
    expect((await submit(node, manifest)).status).toBe(201)
    const check = (root: CID) =>
      fetch(`${node.apiUrl}/weights/${root}/check?manifest=${manifest.cid}`, { headers: admin() })
    const ok = await check(a.root)
    expect(ok.status).toBe(200)
    expect(await ok.json()).toEqual({ ok: true, problems: [] })
    const other = (await (await check(b.root)).json()) as { ok: boolean; problems: { code: string }[] }
    expect(other.ok).toBe(false)
    expect(other.problems[0]?.code).toBe('root-mismatch')
    expect((await fetch(`${node.apiUrl}/weights/${a.root}/check?manifest=${manifest.cid}`)).status).toBe(401)
  })

  it('still serves and pins the weights after a restart, and a stalled upload does not hold up stop', async () => {
    const home = node.home
    // An upload that sends part of a CAR and then stalls: its blocks are staged, never stored.
    const car = await carOf(c.root, c.blocks)
    const written = c.blocks[1]!
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(car.subarray(0, Math.floor(car.byteLength / 2)))
      },
    })
    const stalled = fetch(`${node.apiUrl}/weights`, {
      method: 'POST',
      headers: { 'content-type': CAR, ...admin() },
      body,
      duplex: 'half',
    } as RequestInit).catch((e: Error) => e)
    await until(async () => (await stagedFiles(home)) > 0, 'the stalled upload staging blocks')
    expect(await rawStatus(written.cid)).toBe(404)
    // Bounded only so that a stop held up by the upload fails here instead of hanging the run.
    await settles(node.stop(), 30_000, 'node.stop() with an upload stalled mid-CAR')
    expect(await settles(stalled, 30_000, 'the stalled upload')).toBeInstanceOf(Error)
    // What stop must have done by the time it resolves: the API no longer takes connections,
    // libp2p is stopped, the record store refuses writes, and the cut-off upload has removed the
    // blocks it staged; none reached the blockstore.
    expect(await connectError(node.apiUrl)).toBe('ECONNREFUSED')
    expect(node.p2p.libp2p.status).toBe('stopped')
    await expect(node.store.ingestBlocks([])).rejects.toMatchObject({ code: 'store-closed' })
    const onDisk = new FsBlockstore(join(home, 'blocks'))
    await onDisk.open()
    expect(await onDisk.has(written.cid)).toBe(false)
    await onDisk.close()
    expect(await stagedFiles(home)).toBe(0)
    node = await startNode({ home, genesis: sim.genesis, log: silentLogger, helia: true })
    cluster.nodes[0] = node
    expect(await node.p2p.helia!.pins.isPinned(a.root)).toBe(true)
    expect(await node.p2p.helia!.pins.isPinned(b.root)).toBe(true)
    const pinned = []
    for await (const pin of node.p2p.helia!.pins.ls()) pinned.push(pin.cid.toString())
    expect(pinned.sort()).toEqual([a.root.toString(), b.root.toString()].sort())
    await fetchAndCheck(a)
    // The stalled upload left nothing behind.
    expect(await rawStatus(written.cid)).toBe(404)
    expect(await rawStatus(c.root)).toBe(404)

    // An operator running Helia's garbage collection: pinned weights stay, a stray block goes.
    const stray = new Uint8Array([7, 7, 7, 7])
    const strayCid = CID.createV1(raw.code, await sha256.digest(stray))
    const store = new FsBlockstore(join(home, 'blocks'))
    await store.open()
    await store.put(strayCid, stray)
    await store.close()
    // Held but under no pin: never served (the gateway serves pinned blocks only), and gone after GC.
    expect(await rawStatus(strayCid)).toBe(404)
    expect(await node.p2p.helia!.blockstore.has(strayCid)).toBe(true)
    await node.p2p.helia!.gc()
    expect(await node.p2p.helia!.blockstore.has(strayCid)).toBe(false)
    await fetchAndCheck(a)
    await fetchAndCheck(b)
  }, 90_000)
})
