/**
 * The node's pins (node/weights/pins.ts) on the node's real stores: a BlockFiles blockstore and a
 * LevelDatastore on disk, as node.ts builds them, with the node's pin walker.
 *
 * First the two defects of Helia 7.1.15's pins this module exists for, reproduced against the
 * installed version (they fail once an upgrade fixes them: then ADR 0008 can be looked at again).
 * Then the node's pins: pins added at the same time over DAGs sharing blocks, the unpin and re-pin
 * sequences that broke Helia's counts, retention deleting a revoked model's blocks while another
 * model shares some, the records Helia got wrong rebuilt when a home is opened, and a property
 * test over random sequences of adds and removals (some at the same time) on DAGs sharing blocks:
 * after every step, a block reads as pinned exactly when some pinned root reaches it.
 *
 * Cases of the property: FUZZ_RUNS (default 150; `FUZZ_RUNS=2000` for a long run).
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import * as dagPb from '@ipld/dag-pb'
import * as cborg from 'cborg'
import { LevelDatastore } from 'datastore-level'
import fc from 'fast-check'
import { createHeliaLight } from 'helia'
import { Key } from 'interface-datastore'
import { UnixFS } from 'ipfs-unixfs'
import { base36 } from 'multiformats/bases/base36'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { initHome } from '../../node/config.js'
import { nativeSigner } from '../../node/ed25519-native.js'
import { startNode } from '../../node/index.js'
import { createLogger } from '../../node/log.js'
import { BlockFiles } from '../../node/weights/block-files.js'
import { type PinWalker, unixfsPinWalker } from '../../node/weights/pin-walker.js'
import { openPins, WeightsPins } from '../../node/weights/pins.js'
import { createRetention } from '../../node/weights/retention.js'
import type { Action, Verified } from '../../protocol/index.js'
import { Simulator } from '../support/simulator.js'
import { tempDirForFile } from '../support/temp-dir.js'

const RUNS = Number(process.env.FUZZ_RUNS ?? 150)
const root = tempDirForFile('allmende-pins-')
const WALK = { offline: true, walker: unixfsPinWalker } as const

interface Block {
  cid: CID
  bytes: Uint8Array
}

/** The node's stores, fresh for each test: blocks and pin records on disk. */
interface Stores {
  blocks: BlockFiles
  datastore: LevelDatastore
}

let dirs = 0
async function openStores(): Promise<Stores> {
  const dir = join(root(), `home-${dirs++}`)
  await mkdir(join(dir, 'blocks'), { recursive: true })
  const blocks = new BlockFiles(join(dir, 'blocks'))
  await blocks.open()
  const datastore = new LevelDatastore(join(dir, 'datastore'))
  await datastore.open()
  return { blocks, datastore }
}

/** Helia's own pins over the same stores, as the node called them before (with its walker). */
interface HeliaPins {
  add(cid: CID, options?: { offline?: boolean; walker?: PinWalker }): AsyncIterable<CID>
  rm(cid: CID, options?: { offline?: boolean; walker?: PinWalker }): AsyncIterable<CID>
  isPinned(cid: CID): Promise<boolean>
  ls(): AsyncIterable<{ cid: CID }>
}

function heliaPins(s: Stores): HeliaPins {
  return createHeliaLight({ blockstore: s.blocks, datastore: s.datastore }).pins
}

async function closeStores(s: Stores): Promise<void> {
  await s.datastore.close()
  await s.blocks.close()
}

async function rawBlock(text: string): Promise<Block> {
  const bytes = new TextEncoder().encode(text)
  return { cid: CID.createV1(raw.code, await sha256.digest(bytes)), bytes }
}

async function pbBlock(node: dagPb.PBNode): Promise<Block> {
  const bytes = dagPb.encode(dagPb.prepare(node))
  return { cid: CID.createV1(dagPb.code, await sha256.digest(bytes)), bytes }
}

/** A UnixFS file node linking `leaves` in order. */
function fileNode(leaves: readonly Block[]): Promise<Block> {
  const data = new UnixFS({ type: 'file', blockSizes: leaves.map((l) => BigInt(l.bytes.length)) })
  return pbBlock({ Data: data.marshal(), Links: leaves.map((l) => ({ Hash: l.cid, Tsize: l.bytes.length })) })
}

/** A UnixFS directory of `entries`, named in order. */
function directoryNode(entries: readonly Block[]): Promise<Block> {
  return pbBlock({
    Data: new UnixFS({ type: 'directory' }).marshal(),
    Links: entries.map((b, i) => ({
      Name: `f${String(i).padStart(3, '0')}`,
      Hash: b.cid,
      Tsize: b.bytes.length,
    })),
  })
}

async function put(s: Stores, ...blocks: Block[]): Promise<void> {
  for (const b of blocks) await s.blocks.put(b.cid, b.bytes)
}

async function drain(blocks: AsyncIterable<unknown>): Promise<number> {
  let n = 0
  for await (const _ of blocks) n++
  return n
}

/** The per-block record as stored (Helia's layout), or undefined. */
async function record(s: Stores, cid: CID): Promise<{ pinCount: number; pinnedBy: string[] } | undefined> {
  try {
    const bytes = await s.datastore.get(new Key(`/pinned-block/${base36.encode(cid.multihash.bytes)}`))
    const value = cborg.decode(bytes) as { pinCount: number; pinnedBy: Uint8Array[] }
    return {
      pinCount: value.pinCount,
      pinnedBy: value.pinnedBy.map((b) => CID.decode(b).toString()).sort(),
    }
  } catch (e) {
    if ((e as Error).name === 'NotFoundError') return undefined
    throw e
  }
}

/** Two models sharing `shared` leaves, each with a leaf of its own: A = file(shared…, a), B likewise. */
async function sharingPair(s: Stores, tag: string, shared: number) {
  const common = await Promise.all(Array.from({ length: shared }, (_, i) => rawBlock(`${tag} shared ${i}`)))
  const ownA = await rawBlock(`${tag} only a`)
  const ownB = await rawBlock(`${tag} only b`)
  const a = await fileNode([...common, ownA])
  const b = await fileNode([...common, ownB])
  await put(s, ...common, ownA, ownB, a, b)
  return { common, ownA, ownB, a, b }
}

const names = (...blocks: Block[]) => blocks.map((b) => b.cid.toString()).sort()

describe('Helia 7.1.15 pins as installed (why node/weights/pins.ts exists)', () => {
  let s: Stores
  beforeEach(async () => {
    s = await openStores()
  })
  afterEach(async () => {
    await closeStores(s)
  })

  it('two overlapping pins.add lose counts: after one rm, blocks the other still pins read as unpinned', async () => {
    const helia = heliaPins(s)
    const { common, a, b } = await sharingPair(s, 'helia-concurrent', 32)
    await Promise.all([drain(helia.add(a.cid, WALK)), drain(helia.add(b.cid, WALK))])
    const counts = await Promise.all(common.map(async (c) => (await record(s, c.cid))?.pinCount))
    // One count per pin would be 2 for every shared block; the read-modify-write lost some.
    expect(counts.filter((n) => n !== 2).length).toBeGreaterThan(0)
    await drain(helia.rm(a.cid, WALK))
    expect(await helia.isPinned(b.cid)).toBe(true)
    const lost = []
    for (const c of common) if (!(await helia.isPinned(c.cid))) lost.push(c)
    expect(lost.length).toBeGreaterThan(0)
  })

  it('pins.rm keeps the wrong root: re-pin, unpin leaves a block of a pinned root unpinned, one more unpin writes -1', async () => {
    const helia = heliaPins(s)
    const { common, a, b } = await sharingPair(s, 'helia-rm', 1)
    const shared = common[0]!
    await drain(helia.add(a.cid, WALK))
    await drain(helia.add(b.cid, WALK))
    await drain(helia.rm(a.cid, WALK))
    // B pins it, yet the record names only A, the root just removed.
    expect(await record(s, shared.cid)).toEqual({ pinCount: 1, pinnedBy: names(a) })
    await drain(helia.add(a.cid, WALK))
    // A again: the record already names A, so no count is added.
    expect(await record(s, shared.cid)).toEqual({ pinCount: 1, pinnedBy: names(a) })
    await drain(helia.rm(a.cid, WALK))
    expect(await helia.isPinned(b.cid)).toBe(true)
    expect(await helia.isPinned(shared.cid)).toBe(false)
    await drain(helia.rm(b.cid, WALK))
    expect(await record(s, shared.cid)).toEqual({ pinCount: -1, pinnedBy: [] })
    // No pin left, and the block reads as pinned.
    expect(await drain(helia.ls())).toBe(0)
    expect(await helia.isPinned(shared.cid)).toBe(true)
  })
})

describe("the node's pins", () => {
  let s: Stores
  let pins: WeightsPins
  beforeEach(async () => {
    s = await openStores()
    pins = await openPins({ datastore: s.datastore, blockstore: s.blocks })
  })
  afterEach(async () => {
    await pins.drain()
    await closeStores(s)
  })

  it('two adds at the same time over DAGs sharing blocks count both pins on every shared block', async () => {
    const { common, ownA, ownB, a, b } = await sharingPair(s, 'concurrent', 32)
    await Promise.all([drain(pins.add(a.cid, WALK)), drain(pins.add(b.cid, WALK))])
    for (const c of common) expect(await record(s, c.cid)).toEqual({ pinCount: 2, pinnedBy: names(a, b) })
    expect(await record(s, ownA.cid)).toEqual({ pinCount: 1, pinnedBy: names(a) })
    await drain(pins.rm(a.cid, WALK))
    for (const c of common) {
      expect(await pins.isPinned(c.cid)).toBe(true)
      expect(await record(s, c.cid)).toEqual({ pinCount: 1, pinnedBy: names(b) })
    }
    expect(await pins.isPinned(ownA.cid)).toBe(false)
    expect(await pins.isPinned(a.cid)).toBe(false)
    expect(await pins.isPinned(ownB.cid)).toBe(true)
    expect(await pins.hasPin(a.cid)).toBe(false)
    expect(await pins.hasPin(b.cid)).toBe(true)
  })

  it('the sequences that broke Helia: re-pin then unpin, and unpin twice, keep every count and isPinned right', async () => {
    const { common, a, b } = await sharingPair(s, 'sequence', 1)
    const shared = common[0]!
    const expectShared = async (...by: Block[]) => {
      expect(await record(s, shared.cid)).toEqual(
        by.length === 0 ? undefined : { pinCount: by.length, pinnedBy: names(...by) },
      )
      expect(await pins.isPinned(shared.cid)).toBe(by.length > 0)
    }
    await drain(pins.add(a.cid, WALK))
    await drain(pins.add(b.cid, WALK))
    await expectShared(a, b)
    await drain(pins.rm(a.cid, WALK))
    await expectShared(b)
    await drain(pins.add(a.cid, WALK))
    await expectShared(a, b)
    await drain(pins.rm(a.cid, WALK))
    await expectShared(b)
    await drain(pins.rm(b.cid, WALK))
    await expectShared()
    // Unpinning what is no longer pinned writes nothing: no -1.
    await drain(pins.rm(b.cid, WALK))
    await drain(pins.rm(a.cid, WALK))
    await expectShared()
    await drain(pins.add(b.cid, WALK))
    await expectShared(b)
    // Pinning a root already pinned adds nothing.
    await drain(pins.add(b.cid, WALK))
    await expectShared(b)
    // Helia still reads the records the node writes.
    const helia = heliaPins(s)
    expect(await helia.isPinned(shared.cid)).toBe(true)
    expect(await helia.isPinned(a.cid)).toBe(false)
    const listed: string[] = []
    for await (const pin of helia.ls()) listed.push(pin.cid.toString())
    expect(listed).toEqual([b.cid.toString()])
  })

  it('a change takes its turn whole: a removal asked while a pin is being walked waits for the walk to end', async () => {
    const { a, b } = await sharingPair(s, 'turns', 4)
    await drain(pins.add(b.cid, WALK))
    const events: string[] = []
    const adding = pins.add(a.cid, WALK)[Symbol.asyncIterator]()
    await adding.next()
    events.push('add started')
    const removing = (async () => {
      for await (const _ of pins.rm(b.cid, WALK)) events.push('rm walked')
    })()
    for (let step = await adding.next(); !step.done; step = await adding.next()) events.push('add walked')
    events.push('add ended')
    await removing
    expect(events.indexOf('add ended')).toBeLessThan(events.indexOf('rm walked'))
    expect(events.filter((e) => e === 'add walked')).toHaveLength(5)
  })

  it('a change that gives up waiting for its turn (its signal) runs nothing, and the ones after it still run', async () => {
    const { a, b } = await sharingPair(s, 'abort', 2)
    const held = pins.add(a.cid, WALK)[Symbol.asyncIterator]()
    await held.next()
    const giveUp = new AbortController()
    const waiting = drain(pins.add(b.cid, { ...WALK, signal: giveUp.signal }))
    const after = drain(pins.rm(a.cid, WALK))
    giveUp.abort(new Error('given up'))
    await expect(waiting).rejects.toThrow('given up')
    while (!(await held.next()).done) {
      // the pin of A finishes its walk
    }
    await after
    expect(await pins.hasPin(b.cid)).toBe(false)
    expect(await pins.hasPin(a.cid)).toBe(false)
    expect(await pins.isPinned(b.cid)).toBe(false)
  })

  it('a pin over a block not held fails with pin-block-missing and takes back every name it gave', async () => {
    const { common, a, b, ownA } = await sharingPair(s, 'missing', 3)
    await drain(pins.add(b.cid, WALK))
    await s.blocks.delete(ownA.cid)
    await expect(drain(pins.add(a.cid, WALK))).rejects.toMatchObject({ code: 'pin-block-missing' })
    expect(await pins.hasPin(a.cid)).toBe(false)
    expect(await pins.isPinned(a.cid)).toBe(false)
    // The shared blocks keep B's name, and only B's.
    for (const c of common) expect(await record(s, c.cid)).toEqual({ pinCount: 1, pinnedBy: names(b) })
    // Once the block is back, the pin goes through.
    await put(s, ownA)
    await drain(pins.add(a.cid, WALK))
    for (const c of common) expect(await record(s, c.cid)).toEqual({ pinCount: 2, pinnedBy: names(a, b) })
  })

  it('an add its caller leaves half-way takes back its names; a removal cut off is finished by the next one', async () => {
    const { common, a, b } = await sharingPair(s, 'cut', 3)
    for await (const _ of pins.add(a.cid, WALK)) break
    expect(await pins.hasPin(a.cid)).toBe(false)
    for (const c of [a, ...common]) expect(await record(s, c.cid)).toBeUndefined()

    await drain(pins.add(a.cid, WALK))
    await drain(pins.add(b.cid, WALK))
    const cut = new AbortController()
    let walked = 0
    await expect(
      (async () => {
        for await (const _ of pins.rm(a.cid, { ...WALK, signal: cut.signal })) if (++walked === 2) cut.abort()
      })(),
    ).rejects.toThrow()
    // The pin stays until a removal walks the whole DAG.
    expect(await pins.hasPin(a.cid)).toBe(true)
    await drain(pins.rm(a.cid, WALK))
    expect(await pins.hasPin(a.cid)).toBe(false)
    for (const c of common) expect(await record(s, c.cid)).toEqual({ pinCount: 1, pinnedBy: names(b) })
  })
})

// ---------------------------------------------------------------- retention

/** A federation in which the manifests of `roots` are ratified, then the first one revoked. */
function revokedFirst(roots: readonly CID[]): Simulator {
  const sim = new Simulator({
    members: [
      { name: 'a', roles: ['publisher', 'steward', 'voter'], weight: 1 },
      { name: 'b', roles: ['steward', 'voter'], weight: 1 },
      { name: 'c', roles: ['steward', 'voter'], weight: 1 },
    ],
    signer: nativeSigner,
    name: 'pins-retention',
  })
  const decide = (at: number, action: Action) => {
    const p = sim.proposal('a', at, { closesAt: at + 1000, action })
    sim.add(p)
    sim.add(...['a', 'b', 'c'].map((v, i) => sim.vote(v, at + 10 + i, { proposal: p.cid, choice: 'yes' })))
    sim.add(...['a', 'b'].map((by, i) => sim.seal(by, at + 1000 + 100 + i, { proposal: p.cid })))
    return p
  }
  const manifests: Verified<'manifest'>[] = roots.map((weights, i) =>
    sim.manifest('a', 0, {
      id: `m${i}`,
      name: `model-${i}`,
      version: '1.0.0',
      weights: { root: weights, files: [{ path: 'w.bin', size: 1, sha256: new Uint8Array(32) }], size: 1 },
    }),
  )
  sim.add(...manifests)
  for (const m of manifests) decide(10, { type: 'ratify-model', manifest: m.cid })
  decide(3000, { type: 'revoke-model', manifest: manifests[0]!.cid, reason: 'withdrawn' })
  return sim
}

describe('retention on the node pins', () => {
  let s: Stores
  beforeEach(async () => {
    s = await openStores()
  })
  afterEach(async () => {
    await closeStores(s)
  })

  it('pinned at the same time, sharing blocks: retention unpins the revoked model and deletes none of the shared blocks', async () => {
    const pins = await openPins({ datastore: s.datastore, blockstore: s.blocks })
    const { common, ownA, ownB, a, b } = await sharingPair(s, 'retention', 16)
    await Promise.all([drain(pins.add(a.cid, WALK)), drain(pins.add(b.cid, WALK))])
    const sim = revokedFirst([a.cid, b.cid])
    const lines: Record<string, unknown>[] = []
    const log = createLogger({
      level: 'debug',
      write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>),
    })
    const retention = createRetention({
      state: () => sim.fold.state(),
      weightsOf: (m) => {
        const r = sim.fold.get(m)
        return r?.record.kind === 'manifest' ? r.record.body.weights : undefined
      },
      pins,
      blockstore: s.blocks,
      clock: () => sim.base + 1_000_000,
      delayMs: 0,
      log,
    })
    // While retention unpins A, B is pinned again (an upload of the same bytes): it takes its turn.
    const [unpinned] = await Promise.all([retention.tick(), drain(pins.add(b.cid, WALK))])
    expect(unpinned.map(String)).toEqual([a.cid.toString()])
    expect(lines.find((l) => l.event === 'weights-unpinned')).toMatchObject({
      blocks: common.length + 2,
      deleted: 2,
    })
    expect(await s.blocks.has(a.cid)).toBe(false)
    expect(await s.blocks.has(ownA.cid)).toBe(false)
    for (const block of [b, ownB, ...common]) {
      expect(await s.blocks.has(block.cid)).toBe(true)
      expect(await pins.isPinned(block.cid)).toBe(true)
    }
    await pins.drain()
  })
})

// ---------------------------------------------------------------- records Helia wrote

describe('a home whose pin records Helia 7.1.15 wrote', () => {
  let s: Stores
  beforeEach(async () => {
    s = await openStores()
  })
  afterEach(async () => {
    await closeStores(s)
  })

  it('is repaired once when opened: every pin kept, every count right, the -1 record gone', async () => {
    const helia = heliaPins(s)
    // Lost counts: P and Q pinned at the same time.
    const pq = await sharingPair(s, 'repair-pq', 16)
    await Promise.all([drain(helia.add(pq.a.cid, WALK)), drain(helia.add(pq.b.cid, WALK))])
    // Wrong names: C and D pinned, C unpinned and pinned again.
    const cd = await sharingPair(s, 'repair-cd', 2)
    for (const step of [helia.add(cd.a.cid, WALK), helia.add(cd.b.cid, WALK), helia.rm(cd.a.cid, WALK)])
      await drain(step)
    await drain(helia.add(cd.a.cid, WALK))
    // A record naming only a root no longer pinned: G and H pinned, H unpinned.
    const gh = await sharingPair(s, 'repair-gh', 1)
    for (const step of [helia.add(gh.a.cid, WALK), helia.add(gh.b.cid, WALK), helia.rm(gh.b.cid, WALK)])
      await drain(step)
    expect(await record(s, gh.common[0]!.cid)).toEqual({ pinCount: 1, pinnedBy: names(gh.b) })
    // -1: E and F pinned, E unpinned, pinned, unpinned, then F unpinned.
    const ef = await sharingPair(s, 'repair-ef', 1)
    for (const step of [
      () => helia.add(ef.a.cid, WALK),
      () => helia.add(ef.b.cid, WALK),
      () => helia.rm(ef.a.cid, WALK),
      () => helia.add(ef.a.cid, WALK),
      () => helia.rm(ef.a.cid, WALK),
      () => helia.rm(ef.b.cid, WALK),
    ])
      await drain(step())
    expect(await record(s, ef.common[0]!.cid)).toEqual({ pinCount: -1, pinnedBy: [] })
    // A pin whose DAG lost a block (a delete the defects allowed): its names below it are kept.
    const gone = await rawBlock('repair lost leaf')
    const kept = await rawBlock('repair kept leaf')
    const lostFile = await fileNode([gone])
    const broken = await directoryNode([lostFile, kept])
    await put(s, gone, kept, lostFile, broken)
    await drain(helia.add(broken.cid, WALK))
    await s.blocks.delete(lostFile.cid)

    const lines: Record<string, unknown>[] = []
    const log = createLogger({ level: 'info', write: (line: string) => lines.push(JSON.parse(line)) })
    const pins = await openPins({ datastore: s.datastore, blockstore: s.blocks, log })
    const repaired = lines.find((l) => l.event === 'pins-repaired')
    expect(repaired).toMatchObject({ level: 'info', roots: 6, dropped: 1, rewritten: 1 })
    // D's name on C and D's shared block, G's on G and H's, and whatever P and Q lost.
    expect(repaired!.named).toBeGreaterThanOrEqual(2)
    expect(lines.find((l) => l.event === 'pins-repair-incomplete')).toMatchObject({
      roots: [broken.cid.toString()],
    })

    for (const c of pq.common)
      expect(await record(s, c.cid)).toEqual({ pinCount: 2, pinnedBy: names(pq.a, pq.b) })
    for (const c of cd.common)
      expect(await record(s, c.cid)).toEqual({ pinCount: 2, pinnedBy: names(cd.a, cd.b) })
    expect(await record(s, gh.common[0]!.cid)).toEqual({ pinCount: 1, pinnedBy: names(gh.a) })
    expect(await record(s, ef.common[0]!.cid)).toBeUndefined()
    expect(await pins.isPinned(ef.common[0]!.cid)).toBe(false)
    for (const c of [gone, kept, broken])
      expect(await record(s, c.cid)).toEqual({ pinCount: 1, pinnedBy: names(broken) })

    // The pins Helia wrote work as before: unpinning P leaves Q whole.
    await drain(pins.rm(pq.a.cid, { ...WALK, onReleased: (cid) => s.blocks.delete(cid) }))
    for (const c of [pq.b, pq.ownB, ...pq.common]) {
      expect(await pins.isPinned(c.cid)).toBe(true)
      expect(await s.blocks.has(c.cid)).toBe(true)
    }
    expect(await s.blocks.has(pq.ownA.cid)).toBe(false)

    // Opened again: not repaired again.
    expect(await new WeightsPins(s.datastore, s.blocks).repairOnce()).toBeUndefined()
    await pins.drain()
  })
})

// ---------------------------------------------------------------- a node on such a home

describe('a node started on a home whose pin records Helia 7.1.15 got wrong', () => {
  it('repairs them before it serves: the gateway serves every block still pinned, and not the -1 block', async () => {
    const sim = new Simulator({
      members: [{ name: 's', roles: ['steward', 'publisher', 'voter'], weight: 1 }],
      signer: nativeSigner,
      name: 'pins-node',
    })
    const home = join(root(), 'node-home')
    const config = await initHome(home, {
      genesis: sim.genesis,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      api: '127.0.0.1:0',
      logLevel: 'warn',
    })
    // The home as the previous version left it: Helia's pins on the node's own stores.
    const s: Stores = {
      blocks: new BlockFiles(join(home, 'blocks')),
      datastore: new LevelDatastore(join(home, 'datastore')),
    }
    await mkdir(join(home, 'blocks'), { recursive: true })
    await s.blocks.open()
    await s.datastore.open()
    const helia = heliaPins(s)
    const { common, a, b } = await sharingPair(s, 'node', 1)
    const shared = common[0]!
    for (const step of [
      () => helia.add(a.cid, WALK),
      () => helia.add(b.cid, WALK),
      () => helia.rm(a.cid, WALK),
      () => helia.add(a.cid, WALK),
      () => helia.rm(a.cid, WALK),
    ])
      await drain(step())
    // B is pinned and holds the shared block, which Helia reads as unpinned.
    expect(await helia.isPinned(shared.cid)).toBe(false)
    const lone = await sharingPair(s, 'node-lone', 1)
    for (const step of [
      () => helia.add(lone.a.cid, WALK),
      () => helia.add(lone.b.cid, WALK),
      () => helia.rm(lone.a.cid, WALK),
      () => helia.add(lone.a.cid, WALK),
      () => helia.rm(lone.a.cid, WALK),
      () => helia.rm(lone.b.cid, WALK),
    ])
      await drain(step())
    // No pin holds this one, which Helia reads as pinned (-1).
    expect(await helia.isPinned(lone.common[0]!.cid)).toBe(true)
    await closeStores(s)

    const lines: Record<string, unknown>[] = []
    const log = createLogger({ level: 'info', write: (line: string) => lines.push(JSON.parse(line)) })
    const node = await startNode({ home, config, genesis: sim.genesis, log, helia: true, sync: false })
    try {
      expect(lines.find((l) => l.event === 'pins-repaired')).toMatchObject({ roots: 1, named: 1, dropped: 1 })
      const raw = (cid: CID) => fetch(`${node.apiUrl}/ipfs/${cid}?format=raw`)
      for (const block of [b, shared]) {
        const r = await raw(block.cid)
        expect(r.status, block.cid.toString()).toBe(200)
        expect(new Uint8Array(await r.arrayBuffer())).toEqual(block.bytes)
      }
      const gone = await raw(lone.common[0]!.cid)
      expect(gone.status).toBe(404)
      expect(await gone.json()).toMatchObject({ error: { code: 'block-not-found' } })
      expect(await node.pins!.isPinned(shared.cid)).toBe(true)
    } finally {
      await node.stop()
    }
  }, 60_000)
})

// ---------------------------------------------------------------- property

/**
 * A family of DAGs sharing blocks: leaves, files linking some of them, and roots (directories)
 * linking some files and some leaves straight. `reach` is what each root's walk must name.
 */
interface Family {
  blocks: Block[]
  roots: Block[]
  reach: Set<string>[]
}

const familyShape = fc.record({
  leaves: fc.integer({ min: 2, max: 8 }),
  files: fc.array(fc.uniqueArray(fc.nat(7), { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 4 }),
  roots: fc.array(
    fc.record({
      files: fc.uniqueArray(fc.nat(3), { maxLength: 3 }),
      leaves: fc.uniqueArray(fc.nat(7), { maxLength: 3 }),
    }),
    { minLength: 2, maxLength: 4 },
  ),
})
type Shape = typeof familyShape extends fc.Arbitrary<infer T> ? T : never

async function buildFamily(shape: Shape, tag: string): Promise<Family> {
  const leaves = await Promise.all(
    Array.from({ length: shape.leaves }, (_, i) => rawBlock(`${tag} leaf ${i}`)),
  )
  const files: Block[] = []
  const fileReach: Set<string>[] = []
  for (const picks of shape.files) {
    const linked = picks.map((i) => leaves[i % leaves.length]!)
    const file = await fileNode(linked)
    files.push(file)
    fileReach.push(new Set([file, ...linked].map((b) => b.cid.toString())))
  }
  const roots: Block[] = []
  const reach: Set<string>[] = []
  for (const [r, pick] of shape.roots.entries()) {
    const linkedFiles = pick.files.map((i) => i % files.length).filter((i, at, all) => all.indexOf(i) === at)
    const linkedLeaves = pick.leaves.map((i) => leaves[i % leaves.length]!)
    // Each root has a leaf of its own, so no two roots are the same block.
    const own = await rawBlock(`${tag} root ${r}`)
    const dir = await directoryNode([own, ...linkedFiles.map((i) => files[i]!), ...linkedLeaves])
    roots.push(dir)
    const set = new Set([
      dir.cid.toString(),
      own.cid.toString(),
      ...linkedLeaves.map((b) => b.cid.toString()),
    ])
    for (const i of linkedFiles) for (const k of fileReach[i]!) set.add(k)
    reach.push(set)
    leaves.push(own)
  }
  return { blocks: [...leaves, ...files, ...roots], roots, reach }
}

const step = fc.array(fc.record({ add: fc.boolean(), root: fc.nat(3) }), { minLength: 1, maxLength: 3 })

describe('property: isPinned(block) is "some pinned root reaches it", after every step', () => {
  it(`random adds and removals, some at the same time, on DAGs sharing blocks (${RUNS} cases)`, async () => {
    let run = 0
    await fc.assert(
      fc.asyncProperty(familyShape, fc.array(step, { minLength: 1, maxLength: 12 }), async (shape, steps) => {
        const s = await openStores()
        const pins = await openPins({ datastore: s.datastore, blockstore: s.blocks })
        try {
          const family = await buildFamily(shape, `run ${run++}`)
          await put(s, ...family.blocks)
          const pinned = new Set<number>()
          for (const ops of steps) {
            // Asked at the same time; the turns run them in the order asked.
            await Promise.all(
              ops.map(({ add, root }) => {
                const r = root % family.roots.length
                if (add) pinned.add(r)
                else pinned.delete(r)
                const cid = family.roots[r]!.cid
                return drain(add ? pins.add(cid, WALK) : pins.rm(cid, WALK))
              }),
            )
            for (const block of family.blocks) {
              const key = block.cid.toString()
              const holders = [...pinned].filter((r) => family.reach[r]!.has(key))
              expect(await pins.isPinned(block.cid), key).toBe(holders.length > 0)
              expect(await record(s, block.cid), key).toEqual(
                holders.length === 0
                  ? undefined
                  : { pinCount: holders.length, pinnedBy: names(...holders.map((r) => family.roots[r]!)) },
              )
            }
            for (const [r, rootBlock] of family.roots.entries())
              expect(await pins.hasPin(rootBlock.cid)).toBe(pinned.has(r))
          }
        } finally {
          await pins.drain()
          await closeStores(s)
        }
      }),
      { numRuns: RUNS },
    )
  }, 600_000)
})
