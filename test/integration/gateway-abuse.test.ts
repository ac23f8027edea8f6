/**
 * The gateway as an attacker meets it (V7 amplification, V8 stray blocks): a real node on
 * 127.0.0.1 with its blockstore and pin records on disk, asked over real HTTP (node:http, bytes
 * counted as they arrive, the connection cut should a response run past a ceiling).
 *
 * The DAGs are put straight into the node's blockstore and pinned as the node pins (Helia's pins,
 * the node's pin walker): the upload path refuses a DAG whose logical size is over the
 * federation's limit, so the attack's DAG could not be uploaded any more, but a gateway must
 * stay bounded whatever DAG it holds.
 */
import { randomBytes } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { CarBufferReader } from '@ipld/car/buffer-reader'
import * as dagCbor from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AllmendeNode } from '../../node/node.js'
import { type PinWalker, unixfsPinWalker } from '../../node/weights/pin-walker.js'
import { type Cluster, startCluster } from '../support/cluster.js'
import { Simulator } from '../support/simulator.js'

const MiB = 1024 * 1024
const CAR = 'application/vnd.ipld.car'
/** A response is cut here: far above any bound asserted below, far below what the attack sent. */
const CEILING = 64 * MiB
/** The leaf of the attack, and how often its file links it. */
const LINKS = 2_000

interface Block {
  cid: CID
  bytes: Uint8Array
}

/** Helia's pins as the node uses them: with its own walker (pin-walker.ts). */
interface NodePins {
  add(cid: CID, options?: { offline?: boolean; walker?: PinWalker }): AsyncIterable<CID>
  rm(cid: CID, options?: { offline?: boolean; walker?: PinWalker }): AsyncIterable<CID>
  isPinned(cid: CID): Promise<boolean>
}

interface Received {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  /** Bytes of the body received (counted as they came, also past a cut). */
  bytes: number
  /** The connection was cut at CEILING. */
  cut: boolean
  /** The body ended as HTTP says it should (false: the server cut it short). */
  complete: boolean
}

/** One request over node:http; the body is counted chunk by chunk and cut at CEILING. */
function send(
  url: string,
  init: { method?: 'GET' | 'HEAD'; headers?: Record<string, string> } = {},
): Promise<Received> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: init.method ?? 'GET', headers: init.headers ?? {}, agent: false })
    req.once('error', reject)
    req.once('response', (res) => {
      const chunks: Buffer[] = []
      let bytes = 0
      let cut = false
      const done = () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks),
          bytes,
          cut,
          complete: res.complete,
        })
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length
        if (bytes > CEILING) {
          cut = true
          req.destroy()
          return
        }
        chunks.push(chunk)
      })
      res.once('end', done)
      // A response the server cut (a truncated CAR) ends with 'aborted'/'close', not 'end'.
      res.once('close', done)
    })
    req.end()
  })
}

async function rawBlock(bytes: Uint8Array): Promise<Block> {
  return { cid: CID.createV1(raw.code, await sha256.digest(bytes)), bytes }
}

async function pbBlock(node: dagPb.PBNode): Promise<Block> {
  const bytes = dagPb.encode(dagPb.prepare(node))
  return { cid: CID.createV1(dagPb.code, await sha256.digest(bytes)), bytes }
}

/** A UnixFS file node linking `leaves` in order. */
function fileNode(leaves: Block[]): Promise<Block> {
  const data = new UnixFS({ type: 'file', blockSizes: leaves.map((l) => BigInt(l.bytes.length)) })
  return pbBlock({
    Data: data.marshal(),
    Links: leaves.map((l) => ({ Hash: l.cid, Tsize: l.bytes.length })),
  })
}

/** A UnixFS directory of `entries` (name → block), names sorted. */
function directoryNode(entries: [string, Block][]): Promise<Block> {
  return pbBlock({
    Data: new UnixFS({ type: 'directory' }).marshal(),
    Links: entries
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([name, b]) => ({ Name: name, Hash: b.cid, Tsize: b.bytes.length })),
  })
}

/** The CIDs of a CAR's blocks, in order (the CAR parsed whole: a cut one throws). */
function carCids(body: Buffer): string[] {
  const reader = CarBufferReader.fromBytes(new Uint8Array(body))
  return [...reader.blocks()].map((b) => b.cid.toString())
}

const stored = (blocks: Block[]) => blocks.reduce((n, b) => n + b.bytes.length, 0)

/** What a CAR adds to its blocks: the header (one root) and a section prefix per block. */
const framing = (blocks: number) => 128 + 48 * blocks

describe('the gateway under attack', () => {
  const sim = new Simulator({
    members: [{ name: 's', roles: ['steward', 'publisher', 'voter'], weight: 1 }],
    base: Date.now(),
    name: 'gateway-abuse',
  })
  let cluster: Cluster
  let node: AllmendeNode
  /** The attack: one 1 MiB leaf, a file linking it 2,000 times, a directory of that file 500 times. */
  let leaf: Block
  let amplifier: Block
  let fanout: Block

  const url = (path: string) => `${node.apiUrl}${path}`
  const helia = () => node.p2p.helia!
  const pins = (): NodePins => helia().pins
  const put = async (...blocks: Block[]) => {
    for (const b of blocks) await helia().blockstore.put(b.cid, b.bytes)
  }
  const pin = async (root: CID) => {
    for await (const _ of pins().add(root, { walker: unixfsPinWalker, offline: true })) {
      // each block walked gets its pin record
    }
  }
  const unpin = async (root: CID) => {
    for await (const _ of pins().rm(root, { walker: unixfsPinWalker, offline: true })) {
      // each block walked loses this pin's record
    }
  }
  const errorOf = (r: Received) =>
    JSON.parse(r.body.toString()) as { error: { code: string; message: string } }

  beforeAll(async () => {
    cluster = await startCluster(sim.genesis, 1, { helia: true, sync: false })
    node = cluster.nodes[0]!
    leaf = await rawBlock(randomBytes(MiB))
    amplifier = await fileNode(new Array(LINKS).fill(leaf))
    fanout = await directoryNode(Array.from({ length: 500 }, (_, i) => [`copy-${i}.bin`, amplifier]))
    await put(leaf, amplifier, fanout)
    await pin(fanout.cid)
  }, 60_000)

  afterAll(async () => {
    await cluster?.stop()
  })

  it('V7: dups=y for one leaf linked 2,000 times sends each stored block once, as dups=n, and says so', async () => {
    const distinct = [amplifier, leaf]
    const bound = stored(distinct) + framing(distinct.length)
    for (const [how, path, headers] of [
      ['car-dups=y', `/ipfs/${amplifier.cid}?format=car&car-dups=y`, {}],
      ['Accept dups=y', `/ipfs/${amplifier.cid}`, { accept: `${CAR}; version=1; order=dfs; dups=y` }],
      ['entity scope', `/ipfs/${amplifier.cid}?format=car&dag-scope=entity&car-dups=y`, {}],
    ] as const) {
      const r = await send(url(path), { headers })
      expect(r.status, how).toBe(200)
      expect(r.cut, how).toBe(false)
      expect(r.complete, how).toBe(true)
      expect(r.headers['content-type'], how).toBe(`${CAR}; version=1; order=dfs; dups=n`)
      expect(r.headers.etag, how).toMatch(/\.dfs\.n"$/)
      expect(r.bytes, how).toBeLessThanOrEqual(bound)
      expect(carCids(r.body), how).toEqual([amplifier.cid.toString(), leaf.cid.toString()])
    }
    // HEAD names the same answer and sends nothing.
    const head = await send(url(`/ipfs/${amplifier.cid}?format=car&car-dups=y`), { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers['content-type']).toBe(`${CAR}; version=1; order=dfs; dups=n`)
    expect(head.bytes).toBe(0)
  })

  it('V7: a directory of that file 500 times (2 TB logical) sends its three blocks once, whole or by path', async () => {
    const distinct = [fanout, amplifier, leaf]
    const whole = await send(url(`/ipfs/${fanout.cid}?format=car&car-dups=y`))
    expect(whole.status).toBe(200)
    expect(whole.cut).toBe(false)
    expect(whole.complete).toBe(true)
    expect(whole.bytes).toBeLessThanOrEqual(stored(distinct) + framing(distinct.length))
    expect(carCids(whole.body)).toEqual(distinct.map((b) => b.cid.toString()))

    const byPath = await send(url(`/ipfs/${fanout.cid}/copy-7.bin?format=car&car-dups=y`))
    expect(byPath.status).toBe(200)
    expect(byPath.bytes).toBeLessThanOrEqual(stored(distinct) + framing(distinct.length))
    expect(carCids(byPath.body)).toEqual(distinct.map((b) => b.cid.toString()))

    // A raw block is the one block asked for, GET or HEAD.
    const rawNode = await send(url(`/ipfs/${amplifier.cid}?format=raw`))
    expect(rawNode.status).toBe(200)
    expect(rawNode.bytes).toBe(amplifier.bytes.length)
    const rawHead = await send(url(`/ipfs/${leaf.cid}?format=raw`), { method: 'HEAD' })
    expect(rawHead.headers['content-length']).toBe(String(MiB))
    expect(rawHead.bytes).toBe(0)
    // A byte range of the 2,000 MiB file sends what its bytes need, each block once: the whole
    // file, a range across 1,000 of its links, and its last byte are all its two stored blocks.
    // dups=y stays only where the range meets the leaf once.
    const file = [amplifier, leaf]
    for (const [range, dups] of [
      ['0:*', 'n'],
      [`${MiB - 1}:${1000 * MiB}`, 'n'],
      ['-1:*', 'y'],
    ] as const) {
      const ranged = await send(url(`/ipfs/${amplifier.cid}?format=car&entity-bytes=${range}&car-dups=y`))
      expect(ranged.status, range).toBe(200)
      expect(ranged.complete, range).toBe(true)
      expect(ranged.headers['content-type'], range).toBe(`${CAR}; version=1; order=dfs; dups=${dups}`)
      expect(ranged.bytes, range).toBeLessThanOrEqual(stored(file) + framing(file.length))
      expect(carCids(ranged.body), range).toEqual(file.map((b) => b.cid.toString()))
    }
    // On the directory of 500 copies the range is ignored: dag-scope=entity, its one block.
    const dir = await send(url(`/ipfs/${fanout.cid}?format=car&entity-bytes=0:*`))
    expect(carCids(dir.body)).toEqual([fanout.cid.toString()])
    // Past the end of the 2,000 MiB: a 400 before anything is sent.
    const past = await send(url(`/ipfs/${amplifier.cid}?format=car&entity-bytes=${LINKS * MiB}:*`))
    expect(past.status).toBe(400)
    expect(errorOf(past).error.code).toBe('entity-bytes-out-of-range')
  })

  it('V7: dups=y is kept where no block repeats: the same bytes as dups=n, labelled dups=y', async () => {
    const leaves = await Promise.all([1, 2, 3].map(() => rawBlock(randomBytes(64 * 1024))))
    const file = await fileNode(leaves)
    await put(...leaves, file)
    await pin(file.cid)
    const y = await send(url(`/ipfs/${file.cid}?format=car&car-dups=y`))
    const n = await send(url(`/ipfs/${file.cid}?format=car&car-dups=n`))
    expect(y.headers['content-type']).toBe(`${CAR}; version=1; order=dfs; dups=y`)
    expect(n.headers['content-type']).toBe(`${CAR}; version=1; order=dfs; dups=n`)
    expect(y.body.equals(n.body)).toBe(true)
    expect(carCids(y.body)).toEqual([file, ...leaves].map((b) => b.cid.toString()))
  })

  it('V8: a stray block held but under no pin is a 404, the same answer as a block never held', async () => {
    const stray = await rawBlock(randomBytes(4096))
    const never = await rawBlock(randomBytes(4096))
    await put(stray)
    // It is there: the store has it, the pins do not.
    expect(await helia().blockstore.has(stray.cid)).toBe(true)
    expect(await pins().isPinned(stray.cid)).toBe(false)
    for (const [format, method] of [
      ['raw', 'GET'],
      ['car', 'GET'],
      ['raw', 'HEAD'],
      ['car', 'HEAD'],
    ] as const) {
      const held = await send(url(`/ipfs/${stray.cid}?format=${format}`), { method })
      const absent = await send(url(`/ipfs/${never.cid}?format=${format}`), { method })
      expect(held.status, `${method} ${format}`).toBe(404)
      expect(absent.status, `${method} ${format}`).toBe(404)
      if (method === 'GET') {
        expect(errorOf(held)).toEqual({
          error: { code: 'block-not-found', message: expect.stringContaining(stray.cid.toString()) },
        })
        expect(errorOf(held).error.message.replace(stray.cid.toString(), 'X')).toBe(
          errorOf(absent).error.message.replace(never.cid.toString(), 'X'),
        )
        expect(held.body.includes(Buffer.from(stray.bytes))).toBe(false)
      }
    }
    // Nor does a tag the client claims to hold reveal it.
    const tagged = await send(url(`/ipfs/${stray.cid}?format=raw`), { headers: { 'if-none-match': '*' } })
    expect(tagged.status).toBe(404)
  })

  it('V8: a block inside a pinned DAG is served; once the pin is gone it is a 404', async () => {
    const leaves = await Promise.all([1, 2].map(() => rawBlock(randomBytes(256 * 1024))))
    const file = await fileNode(leaves)
    const dir = await directoryNode([['model.bin', file]])
    await put(...leaves, file, dir)
    await pin(dir.cid)

    const inside = await send(url(`/ipfs/${leaves[1]!.cid}?format=raw`))
    expect(inside.status).toBe(200)
    expect(inside.body.equals(Buffer.from(leaves[1]!.bytes))).toBe(true)
    const car = await send(url(`/ipfs/${dir.cid}?format=car`))
    expect(car.status).toBe(200)
    expect(carCids(car.body)).toEqual([dir, file, ...leaves].map((b) => b.cid.toString()))

    await unpin(dir.cid)
    expect(await helia().blockstore.has(leaves[1]!.cid)).toBe(true) // still held, no longer served
    for (const path of [
      `/ipfs/${dir.cid}?format=car`,
      `/ipfs/${dir.cid}/model.bin?format=car`,
      `/ipfs/${file.cid}?format=car`,
      `/ipfs/${leaves[1]!.cid}?format=raw`,
    ]) {
      const r = await send(url(path))
      expect(r.status, path).toBe(404)
      expect(errorOf(r).error.code, path).toBe('block-not-found')
    }
  })

  it('V8: a leaf two pinned DAGs share stays served when one of them is unpinned', async () => {
    const shared = await rawBlock(randomBytes(64 * 1024))
    const own = await rawBlock(randomBytes(64 * 1024))
    const first = await fileNode([shared, own])
    const second = await fileNode([shared])
    await put(shared, own, first, second)
    await pin(first.cid)
    await pin(second.cid)
    await unpin(first.cid)
    expect((await send(url(`/ipfs/${shared.cid}?format=raw`))).status).toBe(200)
    expect((await send(url(`/ipfs/${second.cid}?format=car`))).status).toBe(200)
    expect((await send(url(`/ipfs/${own.cid}?format=raw`))).status).toBe(404)
    expect((await send(url(`/ipfs/${first.cid}?format=raw`))).status).toBe(404)
  })

  it('V8: a pinned block linking to a stray one: the CAR stops before the stray block leaves', async () => {
    // The pin walker follows dag-pb links only, so a dag-cbor block's links are not pinned by it.
    const stray = await rawBlock(randomBytes(8192))
    const bytes = dagCbor.encode({ parts: [stray.cid] })
    const list = { cid: CID.createV1(dagCbor.code, await sha256.digest(bytes)), bytes }
    await put(stray, list)
    await pin(list.cid)
    expect(await pins().isPinned(stray.cid)).toBe(false)

    const r = await send(url(`/ipfs/${list.cid}?format=car`))
    expect(r.status).toBe(200) // the root was pinned: the stream had begun
    expect(r.complete).toBe(false) // and was cut: a client sees a failed retrieval
    expect(r.body.includes(Buffer.from(stray.bytes))).toBe(false)
    expect(() => carCids(r.body)).not.toThrow() // what came is whole: the header and the list
    expect(carCids(r.body)).toEqual([list.cid.toString()])
    // The node keeps serving.
    expect((await send(url(`/ipfs/${leaf.cid}?format=raw`))).status).toBe(200)
  })
})
