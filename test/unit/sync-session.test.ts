/**
 * Sync sessions (node/sync/session.ts) against a real record store on a temp
 * dir, the peer's frames given in advance: every budget ends the session with
 * `sync-budget` one frame or one byte past it; the holding area and the junk
 * threshold are exact; a session cut by a budget keeps nothing it should not.
 */
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../node/log.js'
import { openStore, type RecordStore } from '../../node/store.js'
import { createPeerLedger, DEFAULT_BUDGET, junkPoints, type SyncBudget } from '../../node/sync/ledger.js'
import type { SyncMessage } from '../../node/sync/messages.js'
import { createSessions, HOLDING_ENTRY_BYTES } from '../../node/sync/session.js'
import { cidOfBlock, encode } from '../../protocol/index.js'
import { seededBytes } from '../support/prng.js'
import { Simulator } from '../support/simulator.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { frameBytes, scripted } from './helpers/sync-channel.js'

const sim = new Simulator({
  members: [{ name: 'a', roles: ['publisher', 'steward', 'voter'], weight: 1 }],
  base: 1_800_000_000_000,
  name: 'sync-session',
})
const tmp = tempDirForFile('allmende-sync-session-')
let store: RecordStore
beforeAll(async () => {
  store = await openStore({
    path: join(tmp(), 'records.log'),
    genesis: sim.genesis,
    clock: () => sim.base,
    log: silentLogger,
  })
})
afterAll(async () => {
  await store?.close()
})

/** A list-shaped block nothing names. */
const junk = (seed: number, bytes = 200) => encode([0, [seededBytes(bytes, seed)]])
const someCid = cidOfBlock(encode({ nothing: 'held' }))
const get: SyncMessage = { type: 'get', cids: [someCid] }
const done: SyncMessage = { type: 'done' }

/** Sessions with `budget` changes, a ledger on a stopped clock (no decay between sessions). */
function sessions(changes: Partial<SyncBudget>) {
  const budget = { ...DEFAULT_BUDGET, ...changes }
  const ledger = createPeerLedger(budget, () => 0)
  return { ledger, run: createSessions({ store, log: silentLogger, ledger, budget, frameTimeoutMs: 2_000 }) }
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
