/**
 * `entity-bytes` on the trustless gateway against independent readers: a real FsBlockstore filled
 * by ipfs-unixfs-importer (a weight file with the unixfs-v1-2025 profile, and a four-level file of
 * 1 KiB leaves), pinned with Helia's pins (a LevelDatastore on disk, the node's pin walker), a real
 * Fastify on 127.0.0.1:0. Each ranged CAR is read with @ipld/car, every block re-hashed against its
 * CID, and the range read back by ipfs-unixfs-exporter from those blocks alone.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CarBlockIterator } from '@ipld/car/iterator'
import * as dagPb from '@ipld/dag-pb'
import { FsBlockstore } from 'blockstore-fs'
import { LevelDatastore } from 'datastore-level'
import Fastify, { type FastifyInstance } from 'fastify'
import { createHeliaLight } from 'helia'
import { UnixFS } from 'ipfs-unixfs'
import { exporter } from 'ipfs-unixfs-exporter'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import type { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type GatewayPins, registerGateway } from '../../node/weights/gateway.js'
import { type PinWalker, unixfsPinWalker } from '../../node/weights/pin-walker.js'

const MiB = 1024 * 1024
const KiB = 1024
const CAR_N = 'application/vnd.ipld.car; version=1; order=dfs; dups=n'

interface Ranged {
  status: number
  headers: Headers
  /** The CAR's blocks in order, each re-hashed against its CID. */
  blocks: { cid: CID; bytes: Uint8Array }[]
  /** The body, for an error's JSON. */
  body: Uint8Array
}

describe('trustless gateway: entity-bytes', () => {
  let dir: string
  let store: FsBlockstore
  let datastore: LevelDatastore
  let app: FastifyInstance
  let base: string
  const gets: string[] = []

  /** A weight file of six 1 MiB leaves (the last short), in a directory with a small file. */
  const weights = randomBytes(5 * MiB + 777)
  let modelDir: CID
  let weightsRoot: CID
  let weightLeaves: CID[]
  /** 150 leaves of 1 KiB under nodes of at most 4 links: four levels of file nodes. */
  const deep = randomBytes(150 * KiB - 300)
  let deepRoot: CID

  async function blockBytes(cid: CID): Promise<Uint8Array> {
    const chunks: Uint8Array[] = []
    for await (const c of store.get(cid)) chunks.push(c)
    return Buffer.concat(chunks)
  }

  /** A CAR request: the blocks re-hashed against their CIDs (a mismatch fails the test). */
  async function car(path: string, init: RequestInit = {}): Promise<Ranged> {
    const res = await fetch(`${base}${path}`, { headers: { accept: 'application/vnd.ipld.car' }, ...init })
    const body = new Uint8Array(await res.arrayBuffer())
    const blocks: Ranged['blocks'] = []
    if (res.status === 200 && body.length > 0) {
      for await (const { cid, bytes } of await CarBlockIterator.fromBytes(body)) {
        expect((await sha256.digest(bytes)).bytes, cid.toString()).toEqual(cid.multihash.bytes)
        blocks.push({ cid, bytes })
      }
    }
    return { status: res.status, headers: res.headers, blocks, body }
  }

  /**
   * Reads `length` bytes at `offset` of the file at `path` (a CID, or CID/name) with
   * ipfs-unixfs-exporter from the CAR's blocks alone: a block it needs and the CAR lacks fails the
   * read. Returns the bytes and the blocks the exporter asked for.
   */
  async function exportRange(
    path: string,
    blocks: Ranged['blocks'],
    offset: number,
    length: number,
  ): Promise<{ bytes: Buffer; asked: Set<string> }> {
    const held = new Map(blocks.map((b) => [b.cid.toString(), b.bytes]))
    const asked = new Set<string>()
    const local = {
      async *get(cid: CID) {
        asked.add(cid.toString())
        const b = held.get(cid.toString())
        if (!b) throw new Error(`the CAR lacks ${cid}`)
        yield b
      },
    }
    const entry = await exporter(path, local)
    if (entry.type !== 'file' && entry.type !== 'raw')
      throw new Error(`${path} is a ${entry.type}, not a file`)
    const parts: Uint8Array[] = []
    for await (const c of entry.content({ offset, length })) parts.push(c)
    return { bytes: Buffer.concat(parts), asked }
  }

  /**
   * What a range [start, end) of a file needs, found here by plain recursion over the store: the
   * node, then each child whose bytes meet the range, depth-first in link order.
   */
  async function needed(cid: CID, at: number, start: number, end: number): Promise<string[]> {
    if (cid.code === raw.code) return [cid.toString()]
    const node = dagPb.decode(await blockBytes(cid))
    const fs = UnixFS.unmarshal(node.Data!)
    const out = [cid.toString()]
    let offset = at + (fs.data?.length ?? 0)
    for (const [i, link] of node.Links.entries()) {
      const size = Number(fs.blockSizes[i])
      if (offset < end && offset + size > start) out.push(...(await needed(link.Hash, offset, start, end)))
      offset += size
    }
    return out
  }

  const cids = (r: Ranged) => r.blocks.map((b) => b.cid.toString())
  const codeOf = (r: Ranged) =>
    (JSON.parse(Buffer.from(r.body).toString()) as { error: { code: string } }).error.code

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'allmende-gateway-ranges-'))
    store = new FsBlockstore(join(dir, 'blocks'))
    await store.open()
    datastore = new LevelDatastore(join(dir, 'datastore'))
    await datastore.open()
    const pins: GatewayPins & {
      add(cid: CID, options?: { offline?: boolean; walker?: PinWalker }): AsyncIterable<CID>
    } = createHeliaLight({ blockstore: store, datastore }).pins
    const model = [
      { path: 'model/weights.safetensors', content: weights },
      { path: 'model/config.json', content: new TextEncoder().encode('{"layers": 2}\n') },
    ]
    for await (const e of importer(model, store, { profile: 'unixfs-v1-2025' })) {
      if (e.path === 'model') modelDir = e.cid
      if (e.path === 'model/weights.safetensors') weightsRoot = e.cid
    }
    weightLeaves = dagPb.decode(await blockBytes(weightsRoot)).Links.map((l) => l.Hash)
    for await (const e of importer([{ content: deep }], store, {
      chunker: fixedSize({ chunkSize: KiB }),
      layout: balanced({ maxChildrenPerNode: 4 }),
      rawLeaves: true,
      cidVersion: 1,
    }))
      deepRoot = e.cid
    for (const root of [modelDir, deepRoot])
      for await (const _ of pins.add(root, { walker: unixfsPinWalker, offline: true })) {
        // each block walked gets its record
      }

    app = Fastify({ logger: false })
    registerGateway(app, {
      blockstore: {
        get: (cid, options) => {
          gets.push(cid.toString())
          return store.get(cid, options)
        },
      },
      pins,
    })
    base = await app.listen({ host: '127.0.0.1', port: 0 })
  }, 60_000)

  afterAll(async () => {
    await app?.close()
    await store?.close()
    await datastore?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('a ranged CAR of a weight file verifies and unpacks to exactly those bytes, with no block more', async () => {
    expect(weightLeaves.length).toBe(6)
    // Bytes 1 MiB + 100 to 3 MiB + 5, inclusive: in leaves 1, 2 and 3.
    const from = MiB + 100
    const to = 3 * MiB + 5
    const path = `/ipfs/${modelDir}/weights.safetensors`
    const before = gets.length
    const r = await car(`${path}?format=car&entity-bytes=${from}:${to}`)
    expect(r.status).toBe(200)
    expect(r.headers.get('content-type')).toBe(CAR_N)
    expect(r.headers.get('x-ipfs-roots')).toBe(`${modelDir},${weightsRoot}`)
    // The path, the file's root, then the three leaves that hold the range, in that order.
    expect(cids(r)).toEqual([modelDir, weightsRoot, ...weightLeaves.slice(1, 4)].map(String))
    // Read only those: the directory, the file root and three leaves.
    expect(gets.length - before).toBe(5)

    const got = await exportRange(`${modelDir}/weights.safetensors`, r.blocks, from, to - from + 1)
    expect(got.bytes.equals(weights.subarray(from, to + 1))).toBe(true)
    // The exporter needed every block the CAR holds.
    expect([...got.asked].sort()).toEqual(cids(r).sort())
  })

  it('serves * and negative offsets as the spec and the reference gateway read them', async () => {
    const size = weights.length
    const lastLeafStart = 5 * MiB
    const url = (range: string) => `/ipfs/${weightsRoot}?format=car&entity-bytes=${range}`
    const leaves = async (range: string) => cids(await car(url(range))).slice(1)
    const of = (...i: number[]) => i.map((n) => weightLeaves[n]!.toString())

    expect(await leaves('0:*')).toEqual(of(0, 1, 2, 3, 4, 5))
    expect(await leaves(`${lastLeafStart}:*`)).toEqual(of(5))
    // The last 10 bytes; the last 1 MiB + 1 byte; more than the file: all of it.
    expect(await leaves('-10:*')).toEqual(of(5))
    expect(await leaves(`-${size - lastLeafStart + 1}:*`)).toEqual(of(4, 5))
    expect(await leaves(`-${size + 1000}:*`)).toEqual(of(0, 1, 2, 3, 4, 5))
    // A negative to ends the range before the last -to bytes: 0:-1 is all but the last byte.
    expect(await leaves('0:-1')).toEqual(of(0, 1, 2, 3, 4, 5))
    expect(await leaves(`0:-${size - lastLeafStart}`)).toEqual(of(0, 1, 2, 3, 4))
    expect(await leaves(`0:-${size - lastLeafStart - 1}`)).toEqual(of(0, 1, 2, 3, 4, 5))
    expect(await leaves(`${MiB + 1}:-${size - 2 * MiB}`)).toEqual(of(1))
    // Past the end: the part inside the file.
    expect(await leaves(`${4 * MiB}:${size + 10 * MiB}`)).toEqual(of(4, 5))
    // A range of no bytes: the file's root alone (its UnixFS data gives the size).
    const none = await car(url(`0:-${size}`))
    expect(none.status).toBe(200)
    expect(cids(none)).toEqual([weightsRoot.toString()])

    // The exporter reads the last 10 bytes from that CAR alone.
    const tail = await car(url('-10:*'))
    const got = await exportRange(weightsRoot.toString(), tail.blocks, size - 10, 10)
    expect(got.bytes.equals(weights.subarray(size - 10))).toBe(true)
  })

  it('walks a deep file only along the range: the edges down, the middle whole, every level', async () => {
    const size = deep.length
    for (const [from, to] of [
      [0, 0],
      [KiB - 1, KiB],
      [5 * KiB + 17, 77 * KiB + 3],
      [63 * KiB, 64 * KiB + 1],
      [size - 1, size - 1],
      [100, size - 100],
    ] as const) {
      const range = `${from}:${to}`
      const before = gets.length
      const r = await car(`/ipfs/${deepRoot}?format=car&entity-bytes=${range}`)
      expect(r.status, range).toBe(200)
      expect(cids(r), range).toEqual(await needed(deepRoot, 0, from, to + 1))
      // Each block read once, none it does not send.
      expect(gets.length - before, range).toBe(r.blocks.length)
      const got = await exportRange(deepRoot.toString(), r.blocks, from, to - from + 1)
      expect(got.bytes.equals(deep.subarray(from, to + 1)), range).toBe(true)
    }
    // The file has four levels of nodes above its leaves: a range reaches them all.
    const one = await car(`/ipfs/${deepRoot}?format=car&entity-bytes=70000:70000`)
    expect(one.blocks.filter((b) => b.cid.code === dagPb.code).length).toBe(4)
    expect(one.blocks.filter((b) => b.cid.code === raw.code).length).toBe(1)
  })

  it('ignores entity-bytes on a directory: the answer is dag-scope=entity, or the dag-scope asked', async () => {
    const ranged = await car(`/ipfs/${modelDir}?format=car&entity-bytes=0:10`)
    const entity = await car(`/ipfs/${modelDir}?format=car&dag-scope=entity`)
    expect(ranged.status).toBe(200)
    expect(cids(ranged)).toEqual([modelDir.toString()])
    expect(Buffer.from(ranged.body).equals(Buffer.from(entity.body))).toBe(true)
    const all = await car(`/ipfs/${modelDir}?format=car&dag-scope=all&entity-bytes=0:10`)
    const whole = await car(`/ipfs/${modelDir}?format=car`)
    expect(Buffer.from(all.body).equals(Buffer.from(whole.body))).toBe(true)
    // dag-scope=block keeps to the block, range or not; a raw block request does not look at it.
    const block = await car(`/ipfs/${weightsRoot}?format=car&dag-scope=block&entity-bytes=0:10`)
    expect(cids(block)).toEqual([weightsRoot.toString()])
    const rawBlock = await fetch(`${base}/ipfs/${weightLeaves[0]}?format=raw&entity-bytes=0:10`)
    expect(rawBlock.status).toBe(200)
    expect((await rawBlock.arrayBuffer()).byteLength).toBe(MiB)
  })

  it('refuses a malformed range and one past the end with 400, saying how to ask', async () => {
    const url = (range: string) => `/ipfs/${weightsRoot}?format=car&entity-bytes=${encodeURIComponent(range)}`
    for (const range of [
      '',
      '10',
      ':10',
      '0:',
      'a:10',
      '0:b',
      '1:2:3',
      '1.5:9',
      '0x10:*',
      '10:5',
      '-5:-10',
      '1e3:*',
      '*:10',
      '12345678901234567:*',
    ]) {
      const r = await car(url(range))
      expect(r.status, range).toBe(400)
      expect(codeOf(r), range).toBe('bad-entity-bytes')
      expect(JSON.parse(Buffer.from(r.body).toString()).error.message, range).toMatch(/from:to/)
    }
    const size = weights.length
    for (const range of [`${size}:*`, `${size + 5}:${size + 10}`]) {
      const r = await car(url(range))
      expect(r.status, range).toBe(400)
      expect(codeOf(r), range).toBe('entity-bytes-out-of-range')
      expect(JSON.parse(Buffer.from(r.body).toString()).error.message).toContain(`${size} bytes`)
      const head = await fetch(`${base}${url(range)}`, {
        method: 'HEAD',
        headers: { accept: 'application/vnd.ipld.car' },
      })
      expect(head.status, range).toBe(400)
      expect(head.headers.get('cache-control')).toBe('no-store')
    }
    // The last byte is in range.
    expect((await car(url(`${size - 1}:*`))).status).toBe(200)
  })

  it('tags each range with its own Etag, and answers If-None-Match with it', async () => {
    const path = `/ipfs/${weightsRoot}?format=car`
    const whole = await car(path)
    const ranged = await car(`${path}&entity-bytes=0:99`)
    const other = await car(`${path}&entity-bytes=0:100`)
    const tags = [whole, ranged, other].map((r) => r.headers.get('etag'))
    expect(new Set(tags).size).toBe(3)
    expect(tags[1]).toBe(`"${weightsRoot}.car.entity.dfs.n.bytes.0_99"`)
    const again = await fetch(`${base}${path}&entity-bytes=0:99`, { headers: { 'if-none-match': tags[1]! } })
    expect(again.status).toBe(304)
    // dups=y where the range repeats no block: kept, and the same stream.
    const y = await car(`${path}&car-dups=y&entity-bytes=0:99`)
    expect(y.headers.get('content-type')).toBe('application/vnd.ipld.car; version=1; order=dfs; dups=y')
    expect(Buffer.from(y.body).equals(Buffer.from(ranged.body))).toBe(true)
  })
})
