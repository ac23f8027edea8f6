/**
 * Uploads under attack (SPEC.md §7; issue "Hostile network", V2, V7's logical size, V8): real
 * nodes on 127.0.0.1, real HTTP clients (node:http) that hold bodies open, real files on disk.
 * Each attack is refused with its stable code, nothing it sent reaches the blockstore (or, when
 * refused before the body, even the staging directory), and the node keeps taking honest uploads.
 * The node killed mid-upload is a real daemon process killed with SIGKILL.
 */

import { readdir, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { join } from 'node:path'
import { FsBlockstore } from 'blockstore-fs'
import type { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { adminToken, initHome, type NodeConfig } from '../../node/config.js'
import { type AllmendeNode, startNode } from '../../node/index.js'
import { silentLogger } from '../../node/log.js'
import { carBudget } from '../../node/weights/uploads.js'
import { type Daemon, startDaemon } from '../support/daemon.js'
import { rulesWith, Simulator } from '../support/simulator.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { until } from '../support/until.js'
import {
  type Block,
  carOf,
  type Dag,
  directoryOf,
  randomFile,
  rawBlock,
  repeatedLeaf,
  statementHeaders,
} from '../support/uploads.js'

const MiB = 1024 * 1024
/** The federation's maxModelBytes: 1 GiB, so one 1 MiB leaf linked 2,000 times is far above it. */
const MAX_MODEL_BYTES = 1024 * MiB
const IDLE_MS = 1_500

const sim = new Simulator({
  members: [
    { name: 'p', roles: ['publisher', 'voter'], weight: 1 },
    { name: 'q', roles: ['publisher', 'voter'], weight: 1 },
    { name: 'r', roles: ['publisher', 'voter'], weight: 1 },
    { name: 's', roles: ['steward', 'voter'], weight: 1 },
    { name: 't', roles: ['steward', 'voter'], weight: 1 },
    { name: 'v', roles: ['voter'], weight: 1 },
  ],
  rules: rulesWith({ maxModelBytes: MAX_MODEL_BYTES }),
  base: Date.now(),
  name: 'upload-abuse',
})
const other = new Simulator({
  members: [{ name: 'p', roles: ['publisher', 'steward', 'voter'], weight: 1 }],
  base: Date.now(),
  name: 'another federation',
})

const scratch = tempDirForFile('allmende-upload-abuse-')

/** The upload limits the nodes here run with: 2 per author, 3 in all, 1.5 s idle. */
const LIMITS = { maxUploadsPerAuthor: 2, maxUploads: 3, uploadIdleTimeoutMs: IDLE_MS }

async function newHome(
  name: string,
  limits: Partial<typeof LIMITS> = {},
): Promise<{ home: string; config: NodeConfig }> {
  const home = join(scratch(), name)
  const config = await initHome(home, {
    genesis: sim.genesis,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    api: '127.0.0.1:0',
    logLevel: 'warn',
  })
  // Written to config.json too, so a daemon started on this home reads the same limits.
  const withLimits: NodeConfig = { ...config, ...LIMITS, ...limits }
  await writeFile(join(home, 'config.json'), `${JSON.stringify(withLimits, null, 2)}\n`)
  return { home, config: withLimits }
}

function start(home: string, config: NodeConfig): Promise<AllmendeNode> {
  return startNode({ home, config, genesis: sim.genesis, log: silentLogger, helia: true })
}

/** Files under `dir`, recursively (none when it does not exist). */
async function filesUnder(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true })
    return entries
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name))
      .sort()
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw e
  }
}

const blockFiles = (home: string) => filesUnder(join(home, 'blocks'))
const stagedFiles = (home: string) => filesUnder(join(home, 'upload-staging'))

interface Answer {
  status: number
  code?: string
  message?: string
  body: Record<string, unknown>
}

/**
 * An upload through node:http, its body written by the test as it likes (held open, stalled,
 * cut): `answer` settles with the node's reply, whenever it comes.
 */
function openUpload(api: string, headers: Record<string, string>) {
  const req = request(new URL('/weights', api), {
    method: 'POST',
    headers: { 'content-type': 'application/vnd.ipld.car', ...headers },
  })
  const errors: Error[] = []
  // Writes after the node has answered and closed the connection fail (EPIPE, reset): expected.
  req.on('error', (e) => errors.push(e))
  const answer = new Promise<Answer>((resolve, reject) => {
    req.once('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.once('error', reject)
      res.once('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, unknown>
        const error = body.error as { code?: string; message?: string } | undefined
        resolve({
          status: res.statusCode ?? 0,
          ...(error?.code ? { code: error.code } : {}),
          ...(error?.message ? { message: error.message } : {}),
          body,
        })
      })
    })
    req.once('close', () =>
      reject(new Error(`the connection closed without an answer: ${errors[0]?.message}`)),
    )
  })
  answer.catch(() => {})
  return {
    answer,
    /** Resolves once `bytes` were handed to the socket (or the request is gone). */
    write: (bytes: Uint8Array) =>
      new Promise<void>((resolve) => {
        if (req.destroyed) return resolve()
        req.write(bytes, () => resolve())
      }),
    end: () => req.end(),
    destroy: () => req.destroy(),
  }
}

/** A whole upload in one go (chunked, no content-length): the node's answer. */
async function upload(api: string, body: Uint8Array, headers: Record<string, string>): Promise<Answer> {
  const u = openUpload(api, headers)
  await u.write(body)
  u.end()
  return u.answer
}

const rawStatus = async (api: string, cid: CID) =>
  (await fetch(`${api}/ipfs/${cid}?format=raw`, { method: 'HEAD' })).status

describe('uploads under attack', () => {
  let home: string
  let config: NodeConfig
  let node: AllmendeNode
  let token: string
  let model: Dag

  const target = () => ({ federation: sim.federation, peerId: node.p2p.peerId })
  const signedBy = (who: string, dag: Dag, extra: { at?: number; size?: number } = {}) =>
    statementHeaders(sim.signer(who), { ...target(), root: dag.root, size: extra.size ?? dag.size, ...extra })

  beforeAll(async () => {
    ;({ home, config } = await newHome('node'))
    node = await start(home, config)
    token = await adminToken(home)
    model = await randomFile(6, 256 * 1024)
  }, 60_000)
  afterAll(async () => {
    await node?.stop()
  })

  /** The blockstore and staging as they are now; `unchanged` checks both are as they were. */
  async function snapshot() {
    const blocks = await blockFiles(home)
    return {
      async unchanged() {
        expect(await blockFiles(home)).toEqual(blocks)
        await until(async () => (await stagedFiles(home)).length === 0, 'the staging directory emptied')
      },
    }
  }

  it('a garbage signature with no size header is refused before a byte is staged or stored', async () => {
    const before = await snapshot()
    const car = await carOf(model.root, model.blocks)
    const { 'allmende-upload-size': _, ...sizeless } = signedBy('p', model)
    const attacks: Record<string, string>[] = [
      { ...sizeless, 'allmende-upload-signature': Buffer.alloc(64, 7).toString('base64') },
      { ...signedBy('p', model), 'allmende-upload-signature': Buffer.alloc(64, 7).toString('base64') },
    ]
    for (const headers of attacks) {
      // The attacker starts streaming and never finishes: the answer comes anyway, at once.
      const u = openUpload(node.apiUrl, headers)
      await u.write(car.subarray(0, car.length >> 1))
      const answer = await u.answer
      expect(answer.status).toBe(401)
      expect(['upload-statement-invalid', 'upload-signature-invalid']).toContain(answer.code)
      expect(await stagedFiles(home)).toEqual([])
      u.destroy()
    }
    await before.unchanged()
  })

  it('a publish by a non-publisher is refused before any weights move', async () => {
    const before = await snapshot()
    const u = openUpload(node.apiUrl, signedBy('v', model))
    await u.write((await carOf(model.root, model.blocks)).subarray(0, 64 * 1024))
    const answer = await u.answer
    expect(answer).toMatchObject({ status: 403, code: 'not-a-publisher' })
    expect(await stagedFiles(home)).toEqual([])
    u.destroy()
    await before.unchanged()
  })

  it('refuses a statement for another federation, an expired or future one, and one sent again', async () => {
    const car = await carOf(model.root, model.blocks)
    const before = await snapshot()
    const elsewhere = statementHeaders(sim.signer('p'), {
      federation: other.federation,
      peerId: node.p2p.peerId,
      root: model.root,
      size: model.size,
    })
    expect(await upload(node.apiUrl, car, elsewhere)).toMatchObject({
      status: 401,
      code: 'upload-federation-mismatch',
    })
    for (const at of [Date.now() - 11 * 60_000, Date.now() + 11 * 60_000])
      expect(await upload(node.apiUrl, car, signedBy('p', model, { at }))).toMatchObject({
        status: 401,
        code: 'upload-stale',
      })
    await before.unchanged()

    const once = signedBy('p', model)
    expect(await upload(node.apiUrl, car, once)).toMatchObject({
      status: 201,
      body: { root: `${model.root}` },
    })
    const after = await snapshot()
    expect(await upload(node.apiUrl, car, once)).toMatchObject({ status: 401, code: 'upload-replayed' })
    await after.unchanged()
  })

  it('a replayed nonce is refused across a restart too', async () => {
    const dag = await randomFile(2, 1024)
    const car = await carOf(dag.root, dag.blocks)
    const once = signedBy('p', dag)
    expect((await upload(node.apiUrl, car, once)).status).toBe(201)
    await node.stop()
    node = await start(home, config)
    const before = await snapshot()
    // The same statement, still fresh, to the node restarted: its nonce was kept on disk.
    expect(await upload(node.apiUrl, car, once)).toMatchObject({ status: 401, code: 'upload-replayed' })
    await before.unchanged()
    // A new statement (the CLI draws a nonce for each) is taken.
    expect(
      (
        await upload(
          node.apiUrl,
          car,
          statementHeaders(sim.signer('p'), { ...target(), root: dag.root, size: dag.size }),
        )
      ).status,
    ).toBe(201)
  }, 60_000)

  it('a DAG one byte over the signed size is refused and nothing is stored', async () => {
    const dag = await randomFile(3, 1000)
    const car = await carOf(dag.root, dag.blocks)
    const before = await snapshot()
    expect(await upload(node.apiUrl, car, signedBy('p', dag, { size: dag.size - 1 }))).toMatchObject({
      status: 400,
      code: 'upload-size-mismatch',
    })
    await before.unchanged()
    expect(await rawStatus(node.apiUrl, dag.root)).toBe(404)
  })

  it('a CAR one byte over the budget of its signed size is refused; one at the budget is taken', async () => {
    const dag = await randomFile(1, 1000)
    const { maxBytes } = carBudget(dag.size)
    // Strays after the DAG pad the CAR to exactly `maxBytes + extra` bytes.
    const padded = async (extra: number): Promise<Uint8Array> => {
      const strays: Block[] = []
      let car = await carOf(dag.root, dag.blocks)
      while (car.length < maxBytes + extra) {
        const missing = maxBytes + extra - car.length
        // A raw section costs a 36-byte CID and a 3-byte length on top of its bytes.
        const bytes = Math.min(2 * MiB, missing - 39)
        strays.push(await rawBlock(new Uint8Array(bytes).fill(strays.length + 1)))
        car = await carOf(dag.root, [...dag.blocks, ...strays])
        if (car.length > maxBytes + extra) {
          // The last length varint was shorter than guessed: give the difference back.
          const last = strays.pop()!
          const over = car.length - (maxBytes + extra)
          strays.push(await rawBlock(last.bytes.subarray(0, last.bytes.length - over)))
          car = await carOf(dag.root, [...dag.blocks, ...strays])
        }
      }
      expect(car.length).toBe(maxBytes + extra)
      return car
    }
    const before = await snapshot()
    const over = await upload(node.apiUrl, await padded(1), signedBy('p', dag))
    expect(over).toMatchObject({ status: 413, code: 'upload-too-large' })
    await before.unchanged()
    const at = await upload(node.apiUrl, await padded(0), signedBy('p', dag))
    expect(at.status, at.message).toBe(201)
    expect(at.body.dropped).toBeGreaterThan(0)
  }, 60_000)

  it('an upload idle past the timeout ends with upload-idle and its staging is cleared', async () => {
    const dag = await randomFile(4, 64 * 1024)
    const car = await carOf(dag.root, dag.blocks)
    const before = await snapshot()
    const u = openUpload(node.apiUrl, signedBy('p', dag))
    await u.write(car.subarray(0, car.length - 1000))
    await until(async () => (await stagedFiles(home)).length > 0, 'blocks of the held upload staged')
    // Nothing more is sent: the node ends it.
    const answer = await u.answer
    expect(answer).toMatchObject({ status: 408, code: 'upload-idle' })
    u.destroy()
    await before.unchanged()
    expect(await rawStatus(node.apiUrl, dag.root)).toBe(404)
  }, 30_000)

  it('blocks of the CAR not under its root are dropped: not stored, not served', async () => {
    const dag = await directoryOf([
      { name: 'a.bin', dag: await randomFile(2, 5000) },
      { name: 'b.bin', dag: await randomFile(1, 7000) },
    ])
    const strays = await Promise.all([1, 2, 3].map((i) => rawBlock(new Uint8Array(3000).fill(i))))
    const car = await carOf(dag.root, [...dag.blocks.slice(0, 2), ...strays, ...dag.blocks.slice(2)])
    const answer = await upload(node.apiUrl, car, signedBy('p', dag))
    expect(answer.status, answer.message).toBe(201)
    expect(answer.body).toMatchObject({ blocks: dag.blocks.length, bytes: dag.size, dropped: 3 })
    for (const b of dag.blocks) expect(await rawStatus(node.apiUrl, b.cid)).toBe(200)
    const store = new FsBlockstore(join(home, 'blocks'))
    await store.open()
    for (const s of strays) {
      expect(await rawStatus(node.apiUrl, s.cid)).toBe(404)
      expect(await store.has(s.cid)).toBe(false)
    }
    await store.close()
    expect(await stagedFiles(home)).toEqual([])
  })

  it('one 1 MiB leaf linked 2,000 times (logical size over maxModelBytes) is refused, nothing stored', async () => {
    const dag = await repeatedLeaf(MiB, 2_000)
    expect(dag.blocks).toHaveLength(2)
    expect(dag.size).toBeGreaterThan(MAX_MODEL_BYTES)
    const car = await carOf(dag.root, dag.blocks)
    expect(car.length).toBeLessThan(1.2 * MiB)
    const before = await snapshot()
    // Signed as what it is: refused from the headers alone.
    const honest = openUpload(node.apiUrl, signedBy('p', dag))
    await honest.write(car.subarray(0, 4096))
    expect(await honest.answer).toMatchObject({ status: 413, code: 'upload-too-large' })
    honest.destroy()
    // Signed as the CAR's size, and by the admin (bounded by maxModelBytes too): the walk of the
    // DAG finds the logical size.
    for (const headers of [signedBy('p', dag, { size: car.length }), { authorization: `Bearer ${token}` }]) {
      const answer = await upload(node.apiUrl, car, headers)
      expect(answer, answer.message).toMatchObject({ status: 413, code: 'upload-too-large' })
      expect(answer.message).toContain('linked N times')
    }
    await before.unchanged()
    expect(await rawStatus(node.apiUrl, dag.root)).toBe(404)
  }, 60_000)

  it('the node keeps taking honest uploads after all of it', async () => {
    const dag = await randomFile(3, 100_000)
    const answer = await upload(node.apiUrl, await carOf(dag.root, dag.blocks), signedBy('q', dag))
    expect(answer).toMatchObject({
      status: 201,
      body: { root: `${dag.root}`, bytes: dag.size, pinned: true },
    })
  })
})

describe('forged signatures from one address', () => {
  let node: AllmendeNode
  beforeAll(async () => {
    const { home, config } = await newHome('forgery')
    // The node's clock stands still, so no failure is earned back while the test sends them.
    const now = Date.now()
    node = await startNode({
      home,
      config,
      genesis: sim.genesis,
      log: silentLogger,
      helia: true,
      clock: () => now,
    })
  }, 60_000)
  afterAll(async () => {
    await node?.stop()
  })

  /** POST with a body, from a given loopback address; the status and error code. */
  function post(path: string, from: string, headers: Record<string, string>, body: Uint8Array) {
    return new Promise<{ status: number; code?: string }>((resolve, reject) => {
      const req = request(new URL(path, node.apiUrl), { method: 'POST', headers, localAddress: from })
      req.on('error', reject)
      req.on('response', (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const error = (
            JSON.parse(Buffer.concat(chunks).toString() || '{}') as { error?: { code?: string } }
          ).error
          resolve({ status: res.statusCode ?? 0, ...(error?.code ? { code: error.code } : {}) })
        })
      })
      req.end(body)
    })
  }

  it('past 20 forged statements an address is told to wait before any more are checked; others are not', async () => {
    const dag = await randomFile(2, 50_000)
    const car = await carOf(dag.root, dag.blocks)
    const forged = () => ({
      ...statementHeaders(sim.signer('p'), {
        federation: sim.federation,
        peerId: node.p2p.peerId,
        root: dag.root,
        size: dag.size,
      }),
      'allmende-upload-signature': Buffer.alloc(64, 7).toString('base64'),
    })
    for (let i = 0; i < 20; i++)
      expect(await post('/weights', '127.0.0.2', forged(), car)).toEqual({
        status: 401,
        code: 'upload-signature-invalid',
      })
    expect(await post('/weights', '127.0.0.2', forged(), car)).toEqual({
      status: 429,
      code: 'too-many-bad-signatures',
    })
    // Records from that address wait too; nothing of theirs is checked.
    const vote = sim.vote('v', 1, { proposal: sim.federation, choice: 'yes' })
    expect(await post('/records', '127.0.0.2', { 'content-type': 'application/cbor' }, vote.bytes)).toEqual({
      status: 429,
      code: 'too-many-bad-signatures',
    })
    // Another address is not held up: an honest upload is taken.
    const honest = statementHeaders(sim.signer('q'), {
      federation: sim.federation,
      peerId: node.p2p.peerId,
      root: dag.root,
      size: dag.size,
    })
    expect(await post('/weights', '127.0.0.1', honest, car)).toMatchObject({ status: 201 })
  })

  it('forged records count too: the 21st from one address is refused unchecked', async () => {
    const address = '127.0.0.3'
    const forgedVote = () => {
      const v = sim.vote('v', Math.floor(Math.random() * 1e9), { proposal: sim.federation, choice: 'yes' })
      const bytes = Uint8Array.from(v.bytes)
      const sig = Buffer.from(bytes).indexOf(Buffer.from(v.record.sig))
      bytes[sig + 10]! ^= 1 // a byte inside the signature: well-formed, and it does not verify
      return bytes
    }
    for (let i = 0; i < 20; i++)
      expect(await post('/records', address, { 'content-type': 'application/cbor' }, forgedVote())).toEqual({
        status: 400,
        code: 'sig-invalid',
      })
    expect(await post('/records', address, { 'content-type': 'application/cbor' }, forgedVote())).toEqual({
      status: 429,
      code: 'too-many-bad-signatures',
    })
  })
})

describe('uploads at once', () => {
  let busyNode: AllmendeNode
  const signedFor = (who: string, dag: Dag) =>
    statementHeaders(sim.signer(who), {
      federation: sim.federation,
      peerId: busyNode.p2p.peerId,
      root: dag.root,
      size: dag.size,
    })
  beforeAll(async () => {
    // Uploads held open here must outlast the test's own steps: a long idle timeout.
    const { home, config } = await newHome('busy', { uploadIdleTimeoutMs: 120_000 })
    busyNode = await start(home, config)
  }, 60_000)
  afterAll(async () => {
    await busyNode?.stop()
  })

  it('one upload more than the caps (per author, then in all) is refused with upload-busy', async () => {
    const dags = await Promise.all([1, 2, 3, 4, 5].map(() => randomFile(2, 4096)))
    const cars = await Promise.all(dags.map((d) => carOf(d.root, d.blocks)))
    const held = [] as ReturnType<typeof openUpload>[]
    const hold = async (who: string, i: number) => {
      const u = openUpload(busyNode.apiUrl, signedFor(who, dags[i]!))
      await u.write(cars[i]!.subarray(0, 100))
      held.push(u)
      return u
    }
    const staging = join(busyNode.home, 'upload-staging')
    const underWay = async () => (await readdir(staging)).length
    await hold('p', 0)
    await hold('p', 1)
    await until(async () => (await underWay()) === 2, 'two uploads of p under way')
    // A third of p's: over the per-author cap of 2.
    const third = await upload(busyNode.apiUrl, cars[2]!, signedFor('p', dags[2]!))
    expect(third).toMatchObject({ status: 429, code: 'upload-busy' })
    await hold('q', 3)
    await until(async () => (await underWay()) === 3, 'three uploads under way')
    // r has none under way, but the node has 3, its cap in all.
    const fourth = await upload(busyNode.apiUrl, cars[4]!, signedFor('r', dags[4]!))
    expect(fourth).toMatchObject({ status: 429, code: 'upload-busy' })
    // Finishing one frees its slot: r's upload is taken.
    await held[0]!.write(cars[0]!.subarray(100))
    held[0]!.end()
    expect((await held[0]!.answer).status).toBe(201)
    expect((await upload(busyNode.apiUrl, cars[4]!, signedFor('r', dags[4]!))).status).toBe(201)
    for (const u of held.slice(1)) u.destroy()
    await until(async () => (await underWay()) === 0, 'the cut uploads cleaned up')
  }, 30_000)
})

describe('a statement names one node', () => {
  let a: AllmendeNode
  let b: AllmendeNode
  beforeAll(async () => {
    const homeA = await newHome('node-a')
    const homeB = await newHome('node-b')
    a = await start(homeA.home, homeA.config)
    b = await start(homeB.home, homeB.config)
  }, 60_000)
  afterAll(async () => {
    await Promise.allSettled([a?.stop(), b?.stop()])
  })

  it('a statement signed for node B is refused by node A, and taken by B', async () => {
    const dag = await randomFile(2, 2048)
    const car = await carOf(dag.root, dag.blocks)
    const forB = statementHeaders(sim.signer('p'), {
      federation: sim.federation,
      peerId: b.p2p.peerId,
      root: dag.root,
      size: dag.size,
    })
    const before = await blockFiles(a.home)
    expect(await upload(a.apiUrl, car, forB)).toMatchObject({ status: 401, code: 'upload-node-mismatch' })
    expect(await blockFiles(a.home)).toEqual(before)
    expect((await upload(b.apiUrl, car, forB)).status).toBe(201)
  })
})

describe('a node killed mid-upload', () => {
  let daemon: Daemon | undefined
  afterAll(async () => {
    await daemon?.kill('SIGKILL')
  })

  it('SIGKILL with an upload half staged: staging is cleared on the next start, no block is left', async () => {
    const { home } = await newHome('killed')
    daemon = await startDaemon(home)
    const dag = await randomFile(8, 256 * 1024)
    const car = await carOf(dag.root, dag.blocks)
    const statement = statementHeaders(sim.signer('p'), {
      federation: sim.federation,
      peerId: daemon.peerId,
      root: dag.root,
      size: dag.size,
    })
    const u = openUpload(daemon.api, statement)
    await u.write(car.subarray(0, car.length >> 1))
    await until(async () => (await stagedFiles(home)).length > 0, 'blocks staged by the daemon', 30_000)
    await daemon.kill('SIGKILL')
    u.destroy()
    // What the crash left: staged blocks, none in the blockstore.
    expect((await stagedFiles(home)).length).toBeGreaterThan(0)
    expect(await blockFiles(home)).toEqual([])

    daemon = await startDaemon(home)
    expect(await stagedFiles(home)).toEqual([])
    expect(await blockFiles(home)).toEqual([])
    expect(daemon.stderr()).toContain('upload-staging-cleared')
    // The statement's nonce was taken before the first byte was stored: it stays used.
    expect(await upload(daemon.api, car, statement)).toMatchObject({ status: 401, code: 'upload-replayed' })
    // The node takes the same weights under a new statement.
    const again = await upload(
      daemon.api,
      car,
      statementHeaders(sim.signer('p'), {
        federation: sim.federation,
        peerId: daemon.peerId,
        root: dag.root,
        size: dag.size,
      }),
    )
    expect(again.status, again.message).toBe(201)
    expect(await daemon.kill('SIGTERM')).toBe(0)
    daemon = undefined
    expect(await stagedFiles(home)).toEqual([])
  }, 120_000)
})
