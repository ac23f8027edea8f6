import { join } from 'node:path'
import { CarWriter } from '@ipld/car/writer'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initHome } from '../../node/config.js'
import { type AllmendeNode, type NodeOptions, startNode } from '../../node/index.js'
import { createLogger, silentLogger } from '../../node/log.js'
import type { P2P } from '../../node/p2p.js'
import { openRecordLog } from '../../node/record-log.js'
import { DEFAULT_BUDGET } from '../../node/sync/ledger.js'
import { encodeMessage, type SyncMessage } from '../../node/sync/messages.js'
import { SYNC_PROTOCOL, type SyncReport } from '../../node/sync/service.js'
import { buildList, cidKey, cidOfBlock, encode, type Verified } from '../../protocol/index.js'
import { type Cluster, startCluster, submit } from '../support/cluster.js'
import { Simulator } from '../support/simulator.js'
import { bareP2P, serveBlocks } from '../support/sync-peers.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { until } from '../support/until.js'

const voters = Array.from({ length: 6 }, (_, i) => `v${i}`)
const sim = new Simulator({
  members: [
    { name: 'a', roles: ['publisher', 'steward', 'voter'], weight: 1 },
    { name: 'b', roles: ['steward', 'voter'], weight: 1 },
    ...voters.map((name) => ({ name, roles: ['voter' as const], weight: 1 })),
  ],
  base: Date.now(),
  name: 'sync-abuse',
})
// Sessions only when a test opens one (no periodic rounds, none on connect): each test knows
// which sessions ran.
const SYNC = {
  intervalMs: 0,
  onConnect: false,
  frameTimeoutMs: 5_000,
  sessionTimeoutMs: 60_000,
  banMs: 10 * 60_000,
} satisfies NodeOptions['sync']
const tmp = tempDirForFile('allmende-sync-abuse-')

/** `n` distinct CIDs standing for votes a seal names (what they are does not matter to storage). */
const fakeCids = (n: number, tag: string): CID[] =>
  Array.from({ length: n }, (_, i) => cidOfBlock(encode({ tag, i })))

/** A list-shaped block (`[0, [bytes]]`) of about `size` bytes, unique by `seed`, that nothing names. */
function junkBlock(seed: number, size: number): Uint8Array {
  const filler = new Uint8Array(size)
  new DataView(filler.buffer).setUint32(0, seed)
  filler.fill(0xa5, 4)
  return encode([0, [filler]])
}

const strangers: P2P[] = []
/** A libp2p peer with a fresh identity, no member key, not in any federation's bootstrap list. */
async function stranger(): Promise<P2P> {
  const p2p = await bareP2P('stranger')
  strangers.push(p2p)
  return p2p
}

/** Opens a sync stream from `from` to `node`, as an initiator that speaks only what it likes. */
async function openSync(from: P2P, node: AllmendeNode) {
  await from.dial(node.p2p.addresses()[0]!)
  const stream = await from.libp2p.dialProtocol(peerIdFromString(node.p2p.peerId), SYNC_PROTOCOL)
  return { stream, lp: lpStream(stream, { maxDataLength: 2 * 1024 * 1024 }) }
}

/** The node's last responder report for `peer`, once there is one. */
const responderReport = (node: AllmendeNode, peer: string, after = 0) =>
  until(
    () => node.sync!.reports().filter((r) => r.role === 'responder' && r.peer === peer)[after],
    `the node's session with ${peer}`,
    60_000,
  ) as Promise<SyncReport>

/** A rogue responder holding `blocks`: honest reconciliation over them, every get answered with them. */
async function rogueResponder(blocks: readonly Uint8Array[]) {
  const p2p = await stranger()
  const byKey = new Map(blocks.map((b) => [cidKey(cidOfBlock(b)), b]))
  // What fits one frame, as an honest responder answers; the initiator asks for the rest.
  const { gets } = await serveBlocks(p2p, blocks, (cids) => {
    const answer: Uint8Array[] = []
    let size = 0
    for (const c of cids) {
      const b = byKey.get(cidKey(c))
      if (!b || size + b.length > 1000 * 1000) continue
      answer.push(b)
      size += b.length
    }
    return answer
  })
  return { p2p, gets }
}

/** Whether `node` holds or serves any of `blocks` (by the store and through the HTTP API). */
async function holdsAny(node: AllmendeNode, blocks: readonly Uint8Array[]): Promise<boolean> {
  for (const b of blocks) {
    const cid = cidOfBlock(b)
    if (node.store.bytesOf(cid) !== undefined) return true
    if ((await fetch(`${node.apiUrl}/records/${cid}`)).status !== 404) return true
  }
  return false
}

const sealLists = (node: AllmendeNode, seal: Verified<'seal'>) =>
  (node.store.fold.get(seal.cid) as Verified<'seal'> | undefined)?.lists

describe('sync with strangers', () => {
  let cluster: Cluster
  let late: AllmendeNode | undefined
  const junkSent: Uint8Array[] = []
  // A proposal with everyone's votes, and two seals by steward a: one over those votes (one
  // leaf per list), one over 300 made-up votes (a branch over two leaves).
  const p = sim.proposal('a', 1, {
    closesAt: 3_600_000,
    action: { type: 'ratify-model', manifest: fakeCids(1, 'model')[0]! },
  })
  const votes = ['a', 'b', ...voters].map((v, i) => sim.vote(v, 2 + i, { proposal: p.cid, choice: 'yes' }))
  sim.add(p, ...votes)
  const sealed = sim.seal('a', 20, { proposal: p.cid, votes: votes.map((v) => v.cid), attestations: [] })
  const sealedBlocks = [...sim.blocks.values()]
  const wide = fakeCids(300, 'wide')
  const wideSeal = sim.seal('b', 21, { proposal: p.cid, votes: wide, attestations: [] })
  const wideBlocks = buildList(wide).blocks

  beforeAll(async () => {
    cluster = await startCluster(sim.genesis, 2, { topology: 'line', sync: SYNC })
    const [a] = cluster.nodes as [AllmendeNode]
    for (const r of [p, ...votes]) expect((await submit(a, r)).status).toBe(201)
  }, 60_000)
  afterAll(async () => {
    await Promise.allSettled(strangers.map((s) => s.stop()))
    await late?.stop()
    await cluster?.stop()
  })

  it('takes honest seals whose lists come in the same session, before the seal or after it', async () => {
    const [a] = cluster.nodes as [AllmendeNode]
    const relay = await stranger()
    const { stream, lp } = await openSync(relay, a)
    const frames: SyncMessage[] = [
      // Lists first, then their seal.
      { type: 'blocks', blocks: sealedBlocks },
      { type: 'blocks', blocks: [sealed.bytes] },
      // A seal first, then its lists: leaves before the branch that names them.
      { type: 'blocks', blocks: [wideSeal.bytes] },
      {
        type: 'blocks',
        blocks: wideBlocks.filter((b) => !b.cid.equals(wideSeal.record.body.votes.root)).map((b) => b.bytes),
      },
      {
        type: 'blocks',
        blocks: wideBlocks.filter((b) => b.cid.equals(wideSeal.record.body.votes.root)).map((b) => b.bytes),
      },
      { type: 'done' },
    ]
    for (const f of frames) await lp.write(encodeMessage(f))
    const report = await responderReport(a, relay.peerId)
    await stream.close().catch(() => {})
    expect(report).toMatchObject({ ok: true, refused: 0 })
    expect(sealLists(a, sealed)?.votes).toHaveLength(votes.length)
    expect(sealLists(a, wideSeal)?.votes).toHaveLength(300)
    for (const b of [...sealedBlocks, ...wideBlocks.map((x) => x.bytes)])
      expect(a.store.bytesOf(cidOfBlock(b))).toBeDefined()
    expect(a.sync!.ledger.junk(relay.peerId)).toBe(0)
  })

  it("POST /records with a CAR keeps the seal's own lists and none of the junk sent with it", async () => {
    const [a] = cluster.nodes as [AllmendeNode]
    const listed = fakeCids(3, 'car')
    const seal = sim.seal('a', 22, { proposal: p.cid, votes: listed, attestations: [] })
    const list = buildList(listed)
    const junk = [junkBlock(40_000, 5_000), junkBlock(40_001, 5_000)]
    junkSent.push(...junk)
    const { writer, out } = CarWriter.create([seal.cid])
    const chunks: Uint8Array[] = []
    const collected = (async () => {
      for await (const chunk of out) chunks.push(chunk)
    })()
    await writer.put({ cid: seal.cid, bytes: seal.bytes })
    for (const b of list.blocks) await writer.put(b)
    // Junk under its own CID, and junk filed under the CID of the seal's list root.
    await writer.put({ cid: cidOfBlock(junk[0]!), bytes: junk[0]! })
    await writer.put({ cid: list.root, bytes: junk[1]! })
    await writer.close()
    await collected
    const res = await fetch(`${a.apiUrl}/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.ipld.car' },
      body: Buffer.concat(chunks),
    })
    expect(res.status).toBe(201)
    expect(a.store.bytesOf(list.root)).toEqual(list.blocks[0]!.bytes)
    expect(await holdsAny(a, junk)).toBe(false)
  })

  it('refuses and bans a stranger pushing junk list blocks at full speed; nothing is stored; the node keeps serving', async () => {
    const [a, b] = cluster.nodes as [AllmendeNode, AllmendeNode]
    const attacker = await stranger()
    const [logBefore, idsBefore] = [a.store.logBytes(), a.store.ids.size]
    // Its own records: a seal signed by a key that is no member, naming its junk, and a vote.
    const ownJunk = fakeCids(5, 'attacker')
    const ownSeal = sim.seal('attacker', 30, { proposal: p.cid, votes: ownJunk, attestations: [] })
    const ownLists = buildList(ownJunk).blocks.map((x) => x.bytes)
    const ownVote = sim.vote('attacker', 31, { proposal: p.cid, choice: 'no' })
    junkSent.push(...ownLists)
    const { lp } = await openSync(attacker, a)
    let sent = 0
    try {
      await lp.write(encodeMessage({ type: 'blocks', blocks: [ownVote.bytes, ownSeal.bytes, ...ownLists] }))
      // Frames of one list-shaped block of ~1 MiB each, as fast as the stream takes them, until
      // the node hangs up (bounded: 200 frames, 200 MiB).
      for (; sent < 200; sent++) {
        const junk = junkBlock(sent, 1_000_000)
        junkSent.push(junk)
        await lp.write(encodeMessage({ type: 'blocks', blocks: [junk] }))
      }
    } catch {
      // The node hung up: what the attack runs into.
    }
    const report = await responderReport(a, attacker.peerId)
    expect(report).toMatchObject({ ok: false, code: 'sync-junk' })
    expect(report.refused).toBeGreaterThan(0)
    expect(a.sync!.ledger.junk(attacker.peerId)).toBeGreaterThanOrEqual(DEFAULT_BUDGET.junkPoints)
    // Stopped long before its 200 MiB were in: the holding area (16 MiB) and a few frames more.
    expect(sent).toBeLessThan(40)
    // Nothing of it is written, reconciled or served; its records are not held.
    expect(a.store.logBytes()).toBe(logBefore)
    expect(a.store.ids.size).toBe(idsBefore)
    expect(await holdsAny(a, junkSent)).toBe(false)
    expect(a.store.fold.has(ownSeal.cid) || a.store.fold.has(ownVote.cid)).toBe(false)
    // Banned: hung up on, and refused when it calls back.
    await until(() => !a.p2p.peers().some((x) => x.id === attacker.peerId), 'the attacker to be dropped')
    await attacker.dial(a.p2p.addresses()[0]!).catch(() => {})
    await until(() => !a.p2p.peers().some((x) => x.id === attacker.peerId), 'the attacker to stay out')
    // The node keeps serving: an honest record is taken and reaches the other node.
    const honest = sim.vote('v0', 40, { proposal: p.cid, choice: 'no' })
    expect((await submit(a, honest)).status).toBe(201)
    await until(() => b.store.fold.has(honest.cid), 'the honest vote to reach the second node', 30_000)
  })

  it('refuses a rogue responder that advertises junk and answers with it, and bans it', async () => {
    const [a] = cluster.nodes as [AllmendeNode]
    // 40 blocks of 100 KB: 2 junk points each, past the threshold of 64.
    const junk = Array.from({ length: 40 }, (_, i) => junkBlock(10_000 + i, 100_000))
    junkSent.push(...junk)
    const rogue = await rogueResponder(junk)
    const [logBefore, idsBefore] = [a.store.logBytes(), a.store.ids.size]
    await a.p2p.dial(rogue.p2p.addresses()[0]!)
    const report = await a.sync!.syncWith(rogue.p2p.peerId)
    expect(report).toMatchObject({ ok: false, code: 'sync-junk', fetched: 40, refused: 40 })
    expect(a.store.logBytes()).toBe(logBefore)
    expect(a.store.ids.size).toBe(idsBefore)
    expect(await holdsAny(a, junk)).toBe(false)
    await until(() => !a.p2p.peers().some((x) => x.id === rogue.p2p.peerId), 'the rogue to be dropped')
    await expect(a.p2p.dial(rogue.p2p.addresses()[0]!)).rejects.toThrow()
  })

  it('refuses a little junk from a responder without a ban, and does not ask for it again', async () => {
    const [a] = cluster.nodes as [AllmendeNode]
    const junk = Array.from({ length: 3 }, (_, i) => junkBlock(20_000 + i, 500))
    junkSent.push(...junk)
    const rogue = await rogueResponder(junk)
    await a.p2p.dial(rogue.p2p.addresses()[0]!)
    const first = await a.sync!.syncWith(rogue.p2p.peerId)
    expect(first).toMatchObject({ ok: true, fetched: 3, refused: 3 })
    expect(rogue.gets()).toBe(1)
    const second = await a.sync!.syncWith(rogue.p2p.peerId)
    expect(second).toMatchObject({ ok: true, fetched: 0, refused: 0 })
    expect(rogue.gets()).toBe(1)
    expect(await holdsAny(a, junk)).toBe(false)
  })

  it('a node started later syncs the honest records and seals with their lists, and none of the junk', async () => {
    const [a] = cluster.nodes as [AllmendeNode]
    const home = join(tmp(), 'late')
    const config = await initHome(home, {
      genesis: sim.genesis,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [a.p2p.addresses()[0]!],
      api: '127.0.0.1:0',
      logLevel: 'warn',
    })
    // This one syncs as an honest node does: on connect and periodically.
    late = await startNode({
      home,
      config,
      genesis: sim.genesis,
      log: silentLogger,
      helia: false,
      sync: { ...SYNC, onConnect: true, intervalMs: 2_000 },
    })
    await until(() => late!.store.ids.size === a.store.ids.size, 'the late node to catch up', 60_000)
    expect(late.store.fold.state().recordCount).toBe(a.store.fold.state().recordCount)
    expect(sealLists(late, sealed)?.votes).toHaveLength(votes.length)
    expect(sealLists(late, wideSeal)?.votes).toHaveLength(300)
    expect(await holdsAny(late, junkSent)).toBe(false)
    // Honest content only: kilobytes, where one junk frame alone was a megabyte.
    expect(late.store.logBytes()).toBeLessThan(256 * 1024)
    expect(late.sync!.reports().every((r) => r.refused === 0)).toBe(true)
  }, 90_000)
})

describe('sync budgets on a live node', () => {
  let cluster: Cluster
  beforeAll(async () => {
    cluster = await startCluster(sim.genesis, 1, { sync: { ...SYNC, budget: { sessionFrames: 4 } } })
  }, 60_000)
  afterAll(async () => {
    await Promise.allSettled(strangers.map((s) => s.stop()))
    await cluster?.stop()
  })

  it('a session one frame past its budget ends with sync-budget, without a ban', async () => {
    const [node] = cluster.nodes as [AllmendeNode]
    const peer = await stranger()
    const get: SyncMessage = { type: 'get', cids: [cidOfBlock(encode({ nothing: 'held' }))] }
    const within = await openSync(peer, node)
    for (let i = 0; i < 3; i++) {
      await within.lp.write(encodeMessage(get))
      await within.lp.read()
    }
    await within.lp.write(encodeMessage({ type: 'done' }))
    expect(await responderReport(node, peer.peerId, 0)).toMatchObject({ ok: true })
    const over = await openSync(peer, node)
    for (let i = 0; i < 4; i++) {
      await over.lp.write(encodeMessage(get))
      await over.lp.read()
    }
    await over.lp.write(encodeMessage({ type: 'done' })).catch(() => {})
    expect(await responderReport(node, peer.peerId, 1)).toMatchObject({ ok: false, code: 'sync-budget' })
    // Not a ban: the peer may open the next session at once.
    const next = await openSync(peer, node)
    await next.lp.write(encodeMessage({ type: 'done' }))
    expect(await responderReport(node, peer.peerId, 2)).toMatchObject({ ok: true })
  })
})

describe('junk an older version wrote to records.log', () => {
  it('is dropped at start with one log line; the node serves none of it', async () => {
    const home = join(tmp(), 'old')
    const config = await initHome(home, {
      genesis: sim.genesis,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      api: '127.0.0.1:0',
      logLevel: 'info',
    })
    const p = sim.proposal('a', 50, {
      closesAt: 3_600_000,
      action: { type: 'ratify-model', manifest: fakeCids(1, 'm')[0]! },
    })
    const vote = sim.vote('b', 51, { proposal: p.cid, choice: 'yes' })
    const seal = sim.seal('a', 52, { proposal: p.cid, votes: [vote.cid], attestations: [] })
    const lists = [...buildList([vote.cid]).blocks, ...buildList([]).blocks].map((b) => b.bytes)
    const junk = Array.from({ length: 5 }, (_, i) => junkBlock(30_000 + i, 10_000 * (i + 1)))
    const old = await openRecordLog(join(home, 'records.log'))
    await old.appendMany([p.bytes, junk[0]!, vote.bytes, ...lists, seal.bytes, ...junk.slice(1)])
    await old.close()
    const lines: Record<string, unknown>[] = []
    const node = await startNode({
      home,
      config,
      genesis: sim.genesis,
      log: createLogger({ level: 'info', write: (line) => lines.push(JSON.parse(line)) }),
      helia: false,
      sync: false,
    })
    try {
      const dropped = lines.filter((l) => l.event === 'record-log-junk-dropped')
      expect(dropped).toHaveLength(1)
      expect(dropped[0]).toMatchObject({ blocks: 5, bytes: junk.reduce((n, b) => n + b.length, 0) })
      expect(await holdsAny(node, junk)).toBe(false)
      expect(node.store.ids.size).toBe(3 + 2)
      expect(sealLists(node, seal)?.votes).toHaveLength(1)
      for (const b of lists) expect((await fetch(`${node.apiUrl}/records/${cidOfBlock(b)}`)).status).toBe(200)
    } finally {
      await node.stop()
    }
  })
})
