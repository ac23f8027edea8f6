/**
 * Sync sessions (node/sync/session.ts) against a real record store on a temp
 * dir, the peer's frames given in advance: every budget ends the session with
 * `sync-budget` one frame or one byte past it; the holding area (its room and
 * how long a block may wait there) and the junk threshold are exact; a
 * session cut by a budget keeps nothing it should not; strangers filling the
 * holding areas keep no held seal's lists out.
 */
import type { CID } from 'multiformats/cid'
import { beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../../../node/log.js'
import type { RecordStore } from '../../../../node/store.js'
import { createIdSet } from '../../../../node/sync/id-set.js'
import {
  createPeerLedger,
  DEFAULT_BUDGET,
  junkPoints,
  type SyncBudget,
} from '../../../../node/sync/ledger.js'
import { decodeMessage, encodeMessage, type SyncMessage } from '../../../../node/sync/messages.js'
import { createReconciler } from '../../../../node/sync/reconcile.js'
import {
  createSessions,
  type FrameChannel,
  HOLDING_ENTRY_BYTES,
  MAX_REMEMBERED,
  RECONCILE_FRAME_LIMIT,
} from '../../../../node/sync/session.js'
import { buildList, cidKey, cidOfBlock, encode, type Verified } from '../../../../protocol/index.js'
import { seededBytes } from '../../../support/prng.js'
import { Simulator } from '../../../support/simulator.js'
import { frameBytes, scripted, storeForFile } from '../../../support/sync-channel.js'

const sim = new Simulator({
  members: [{ name: 'a', roles: ['publisher', 'steward', 'voter'], weight: 1 }],
  base: 1_800_000_000_000,
  name: 'sync-session',
})
const storeOf = storeForFile(sim, 'allmende-sync-session-')
let store: RecordStore
beforeAll(() => {
  store = storeOf()
})

/** A list-shaped block nothing names. */
const junk = (seed: number, bytes = 200) => encode([0, [seededBytes(bytes, seed)]])
const someCid = cidOfBlock(encode({ nothing: 'held' }))
const get: SyncMessage = { type: 'get', cids: [someCid] }
const done: SyncMessage = { type: 'done' }

/**
 * Sessions with `budget` changes, a ledger on a stopped clock (no decay between sessions),
 * `now` as the holding area's clock, and at most `maxRemembered` CIDs remembered of each kind.
 */
function sessions(changes: Partial<SyncBudget>, now?: () => number, maxRemembered?: number) {
  const budget = { ...DEFAULT_BUDGET, ...changes }
  const ledger = createPeerLedger(budget, () => 0)
  return {
    ledger,
    run: createSessions({
      store,
      log: silentLogger,
      ledger,
      budget,
      frameTimeoutMs: 2_000,
      ...(now ? { now } : {}),
      ...(maxRemembered ? { maxRemembered } : {}),
    }),
  }
}

const respond = (s: ReturnType<typeof sessions>, frames: SyncMessage[], peer = 'peer') =>
  s.run.respond(scripted(frames), peer, AbortSignal.timeout(10_000))

describe('a session budget', () => {
  it('of frames: the budget is served, one frame more ends the session with sync-budget', async () => {
    const s = sessions({ sessionFrames: 3 })
    expect((await respond(s, [get, get, done])).report).toMatchObject({ ok: true })
    const over = await respond(s, [get, get, get, done])
    expect(over.report).toMatchObject({ ok: false, code: 'sync-budget' })
  })

  it('of bytes: the budget is served, one byte more ends the session with sync-budget', async () => {
    const exact = frameBytes(get) + frameBytes(done)
    expect((await respond(sessions({ sessionBytes: exact }), [get, done])).report.ok).toBe(true)
    const over = await respond(sessions({ sessionBytes: exact - 1 }), [get, done])
    expect(over.report).toMatchObject({ ok: false, code: 'sync-budget' })
    expect(over.report.bytesReceived).toBe(exact)
  })
})

describe("a peer's budget over all its sessions", () => {
  it('of frames: one frame past it ends the session; another peer is not affected', async () => {
    const s = sessions({ peerFrames: 4 })
    expect((await respond(s, [get, done])).report.ok).toBe(true)
    expect((await respond(s, [get, done])).report.ok).toBe(true)
    expect((await respond(s, [done])).report).toMatchObject({ ok: false, code: 'sync-budget' })
    expect((await respond(s, [get, done], 'another')).report.ok).toBe(true)
  })

  it('of bytes: one byte past it ends the session', async () => {
    const s = sessions({ peerBytes: 2 * frameBytes(get) + frameBytes(done) })
    expect((await respond(s, [get, get])).report.code).toBe('sync-stream-failed')
    expect((await respond(s, [done])).report.ok).toBe(true)
    expect((await respond(s, [done])).report).toMatchObject({ ok: false, code: 'sync-budget' })
  })
})

describe('the holding area', () => {
  it('keeps a block that fits until the session ends; one byte more is refused at once', async () => {
    const [a, b] = [junk(1), junk(2)]
    const before = [store.logBytes(), store.ids.size]
    const fits = sessions({ holdingBytes: a.length + HOLDING_ENTRY_BYTES })
    const one = await respond(fits, [{ type: 'blocks', blocks: [a] }, done])
    expect(one.report).toMatchObject({ ok: true, refused: 1, refusedBytes: a.length })
    const tight = sessions({ holdingBytes: a.length + HOLDING_ENTRY_BYTES - 1 })
    const none = await respond(tight, [{ type: 'blocks', blocks: [a, b] }, done])
    expect(none.report).toMatchObject({ ok: true, refused: 2 })
    expect(tight.ledger.junk('peer')).toBe(junkPoints(a.length) + junkPoints(b.length))
    expect([store.logBytes(), store.ids.size]).toEqual(before)
  })

  it('full for all sessions together: the block is dropped, not charged (not this peer’s doing)', async () => {
    const s = sessions({ holdingTotalBytes: 10 })
    const r = await respond(s, [{ type: 'blocks', blocks: [junk(3)] }, done])
    expect(r.report).toMatchObject({ ok: true, refused: 0 })
    expect(s.ledger.junk('peer')).toBe(0)
  })
})

describe('junk points', () => {
  it('below the threshold the session ends well; the block that reaches it ends it with sync-junk', async () => {
    const small = [junk(4), junk(5), junk(6)]
    const s = sessions({ junkPoints: 3 })
    const first = await respond(s, [{ type: 'blocks', blocks: small.slice(0, 2) }, done])
    expect(first.report).toMatchObject({ ok: true, refused: 2 })
    expect(s.ledger.junk('peer')).toBe(2)
    const second = await respond(s, [{ type: 'blocks', blocks: small.slice(2) }, done])
    expect(second.report).toMatchObject({ ok: false, code: 'sync-junk', refused: 1 })
  })

  it('count the size: a block of 64 KiB or more costs a point per 64 KiB on top of one', () => {
    expect(junkPoints(1)).toBe(1)
    expect(junkPoints(65_535)).toBe(1)
    expect(junkPoints(65_536)).toBe(2)
    expect(junkPoints(1024 * 1024)).toBe(17)
  })

  it('halve every half-life', () => {
    let now = 0
    const ledger = createPeerLedger({ ...DEFAULT_BUDGET, junkHalfLifeMs: 1000 }, () => now)
    ledger.charge('p', 40)
    now = 2000
    expect(ledger.junk('p')).toBe(10)
  })
})

/** `n` distinct CIDs standing for votes (what a list names does not matter to storage). */
const fakeCids = (n: number, tag: string): CID[] =>
  Array.from({ length: n }, (_, i) => cidOfBlock(encode({ tag, i })))

/** A seal by steward `a` over `n` made-up votes and no attestations, with its list blocks. */
function sealWithLists(n: number, tag: string, at: number) {
  const votes = fakeCids(n, tag)
  const p = sim.proposal('a', at, {
    closesAt: 3_600_000,
    action: { type: 'ratify-model', manifest: votes[0]! },
  })
  const seal = sim.seal('a', at + 1, { proposal: p.cid, votes, attestations: [] })
  const lists = [...buildList(votes).blocks, ...buildList([]).blocks]
  return { seal, lists: lists.map((b) => b.bytes), cids: lists.map((b) => b.cid) }
}

const listsOf = (seal: Verified<'seal'>) => (store.fold.get(seal.cid) as Verified<'seal'> | undefined)?.lists

/**
 * A peer that sends `frames` and then keeps its session open (sending nothing) until `end()`;
 * `drained` resolves once the session has dealt with every frame and waits for the next.
 */
function lingering(frames: readonly SyncMessage[]) {
  let next = 0
  let end!: () => void
  const ended = new Promise<void>((resolve) => {
    end = resolve
  })
  let drained!: () => void
  const isDrained = new Promise<void>((resolve) => {
    drained = resolve
  })
  const channel: FrameChannel = {
    async read({ signal }) {
      signal.throwIfAborted()
      const frame = frames[next]
      if (frame) {
        next++
        return encodeMessage(frame)
      }
      drained()
      await Promise.race([ended, new Promise((resolve) => signal.addEventListener('abort', resolve))])
      throw Object.assign(new Error('the stream ended'), { name: 'StreamEndedError' })
    },
    async write() {},
  }
  return { channel, drained: isDrained, end }
}

describe('strangers filling every holding area', () => {
  it("keep no held seal's lists out: a block a held record names goes straight to the store", async () => {
    const park = [junk(100, 1000), junk(101, 1000)]
    const cost = park[0]!.length + HOLDING_ENTRY_BYTES
    // Each stranger's block fills its own area; together they fill the area of all sessions.
    const s = sessions({ holdingBytes: cost, holdingTotalBytes: 2 * cost })
    const strangers = park.map((b) => lingering([{ type: 'blocks', blocks: [b] }]))
    const parked = strangers.map((x, i) =>
      s.run.respond(x.channel, `stranger-${i}`, AbortSignal.timeout(30_000)),
    )
    await Promise.all(strangers.map((x) => x.drained))
    // Full: a third peer's unnamed block finds no room, and is dropped without a charge.
    const third = await respond(s, [{ type: 'blocks', blocks: [junk(102, 10)] }, done], 'third')
    expect(third.report).toMatchObject({ ok: true, refused: 0 })

    // A seal held already (by gossip): its lists come by sync and are taken.
    const held = sealWithLists(3, 'held', 10)
    expect((await store.ingest(held.seal.bytes)).verdict).toBe('accept')
    expect(listsOf(held.seal)).toBeUndefined()
    const honest = await respond(s, [{ type: 'blocks', blocks: held.lists }, done], 'honest')
    expect(honest.report).toMatchObject({ ok: true, taken: 2, refused: 0 })
    expect(listsOf(held.seal)?.votes).toHaveLength(3)

    // A seal and its lists in one frame, records first, as an honest sender pushes them.
    const pushed = sealWithLists(4, 'pushed', 20)
    const together = await respond(
      s,
      [{ type: 'blocks', blocks: [pushed.seal.bytes, ...pushed.lists] }, done],
      'honest-2',
    )
    expect(together.report).toMatchObject({ ok: true, refused: 0 })
    expect(listsOf(pushed.seal)?.votes).toHaveLength(4)
    expect(s.ledger.junk('honest')).toBe(0)

    for (const x of strangers) x.end()
    for (const outcome of await Promise.all(parked)) expect(outcome.report.refused).toBe(1)
    expect(s.ledger.junk('stranger-0')).toBe(junkPoints(park[0]!.length))
  })
})

/** A peer whose frames are read at given times: `at[i]` is the clock when frame i is read. */
function timed(
  frames: readonly SyncMessage[],
  at: readonly number[],
  clock: { t: number },
  seen: () => void,
) {
  let next = 0
  const channel: FrameChannel = {
    async read({ signal }) {
      signal.throwIfAborted()
      // What the session did with the frames before this one.
      seen()
      const frame = frames[next]
      if (!frame) throw Object.assign(new Error('the stream ended'), { name: 'StreamEndedError' })
      clock.t = at[next++]!
      return encodeMessage(frame)
    },
    async write() {},
  }
  return channel
}

/**
 * A responder holding `held`: honest reconciliation, each get answered by `answer` (what it
 * returns of the asked blocks, all by default); with `timing`, the clock is set to `at(n)`
 * before the n-th answer is read.
 */
function responder(
  held: readonly Uint8Array[],
  answer: (asked: Uint8Array[], n: number) => Uint8Array[] = (asked) => asked,
  timing?: { clock: { t: number }; at: (n: number) => number },
) {
  const byKey = new Map(held.map((b) => [cidKey(cidOfBlock(b)), b]))
  const rec = createReconciler(createIdSet(held.map((b) => cidOfBlock(b).multihash.digest)), {
    frameSizeLimit: RECONCILE_FRAME_LIMIT,
  })
  const pending: Uint8Array[] = []
  const gets: CID[][] = []
  const channel: FrameChannel = {
    async read({ signal }) {
      signal.throwIfAborted()
      const frame = pending.shift()
      if (!frame) throw Object.assign(new Error('the stream ended'), { name: 'StreamEndedError' })
      return frame
    },
    async write(payload) {
      const m = decodeMessage(payload)
      if (m.type === 'reconcile')
        pending.push(
          encodeMessage({
            type: 'reconcile',
            payload: rec.reconcile(m.payload).reply ?? Uint8Array.of(0x61),
          }),
        )
      else if (m.type === 'get') {
        gets.push(m.cids)
        const asked = m.cids.map((c) => byKey.get(cidKey(c))).filter((b): b is Uint8Array => b !== undefined)
        const n = gets.length - 1
        // Answers are read in the order asked: the clock moves as each one is read.
        const blocks = answer(asked, n)
        pending.push(encodeMessage({ type: 'blocks', blocks }))
        if (!timing) return
        const read = channel.read
        channel.read = async (o) => {
          channel.read = read
          timing.clock.t = timing.at(n)
          return read(o)
        }
      }
    },
  }
  return { channel, gets }
}

describe('how long a block may wait in the holding area', () => {
  const WAIT = 1000

  it('as responder: held for holdingMs, one ms more and it is refused and charged', async () => {
    const clock = { t: 0 }
    const s = sessions({ holdingMs: WAIT }, () => clock.t)
    const parked = junk(200, 300)
    const junkSeen: number[] = []
    const frames: SyncMessage[] = [{ type: 'blocks', blocks: [parked] }, get, get, done]
    const channel = timed(frames, [0, WAIT, WAIT + 1, WAIT + 1], clock, () =>
      junkSeen.push(s.ledger.junk('peer')),
    )
    const outcome = await s.run.respond(channel, 'peer', AbortSignal.timeout(10_000))
    expect(outcome.report).toMatchObject({ ok: true, refused: 1, refusedBytes: parked.length })
    // Seen before each read: nothing charged after the frames read at 0 and at holdingMs; charged
    // by the frame read at holdingMs + 1.
    expect(junkSeen).toEqual([0, 0, 0, junkPoints(parked.length)])
  })

  it('as initiator: a list whose seal comes after its wait is asked for again and taken, uncharged', async () => {
    const clock = { t: 0 }
    const s = sessions({ holdingMs: WAIT }, () => clock.t)
    const late = sealWithLists(2, 'late-seal', 30)
    const lists = late.lists.filter((b) => !store.hasBlock(cidKey(cidOfBlock(b))))
    // The lists first (their seal not asked yet), the seal in the next answer, past the wait.
    const peer = responder(
      [late.seal.bytes, ...lists],
      (asked, n) => (n === 0 ? asked.filter((b) => b !== late.seal.bytes) : asked),
      { clock, at: (n) => (WAIT + 1) * n },
    )
    const outcome = await s.run.initiate(peer.channel, 'peer', AbortSignal.timeout(10_000))
    expect(outcome.report).toMatchObject({ ok: true, refused: 0 })
    expect(listsOf(late.seal)?.votes).toHaveLength(2)
    // Asked for: the seal and its lists, the seal again (not in the first answer), the lists again.
    expect(peer.gets.map((g) => g.length)).toEqual([1 + lists.length, 1, lists.length])
    expect(s.ledger.junk('peer')).toBe(0)
  })

  it('as initiator: junk is asked for once more, then refused and charged', async () => {
    const clock = { t: 0 }
    const s = sessions({ holdingMs: WAIT }, () => clock.t)
    const parked = [junk(300, 300), junk(301, 400)]
    // One block per answer, each answer read past the wait of the block before it.
    const peer = responder(parked, (asked) => asked.slice(0, 1), { clock, at: (n) => (WAIT + 1) * n })
    const outcome = await s.run.initiate(peer.channel, 'peer', AbortSignal.timeout(10_000))
    expect(outcome.report).toMatchObject({ ok: true, fetched: 4, refused: 2 })
    expect(peer.gets).toHaveLength(4)
    expect(s.ledger.junk('peer')).toBe(junkPoints(parked[0]!.length) + junkPoints(parked[1]!.length))
    for (const b of parked) expect(store.hasBlock(cidKey(cidOfBlock(b)))).toBe(false)
  })
})

describe('records ignored for an unknown author', () => {
  it(`are remembered up to a bound (${MAX_REMEMBERED} by default): one more forgets the oldest`, async () => {
    const CAP = 3
    const s = sessions({}, undefined, CAP)
    // One record per throwaway key, none of them a member: each ignored, none held.
    const records = Array.from({ length: CAP + 1 }, (_, i) =>
      sim.vote(`throwaway-${i}`, 40 + i, { proposal: someCid, choice: 'yes' }),
    )
    const first = responder(records.map((r) => r.bytes))
    expect((await s.run.initiate(first.channel, 'peer', AbortSignal.timeout(10_000))).report).toMatchObject({
      ok: true,
      fetched: CAP + 1,
      taken: 0,
    })
    for (const r of records) expect(store.fold.has(r.cid)).toBe(false)
    // The next session asks again only for the one forgotten: the first ignored.
    const ignoredFirst = first.gets[0]![0]!
    const second = responder(records.map((r) => r.bytes))
    await s.run.initiate(second.channel, 'peer', AbortSignal.timeout(10_000))
    expect(second.gets.map((g) => g.map(String))).toEqual([[String(ignoredFirst)]])
  })
})
