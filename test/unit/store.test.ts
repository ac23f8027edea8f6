/**
 * The record store's validator policy (DESIGN.md §6, the gossip validator):
 * reject only invalid bytes; ignore duplicates, unknown authors and records
 * past the ingest limits; accept the rest — inapplicable records are kept
 * and reported, never dropped. On a real record log in a temp directory.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../node/log.js'
import { MAX_VOTES_PER_VOTER_AND_PROPOSAL, openStore, type RecordStore } from '../../node/store.js'
import { rulesWith, Simulator } from '../support/simulator.js'

const sim = new Simulator({
  members: [
    { name: 'a', roles: ['publisher', 'steward', 'voter'], weight: 1 },
    { name: 'b', roles: ['steward', 'voter'], weight: 1 },
    { name: 'v', roles: ['voter'], weight: 1 },
  ],
  base: 1_800_000_000_000,
  name: 'store',
  rules: rulesWith({ maxOpenProposalsPerAuthor: 2 }),
})
const NOW = sim.base + 10_000

let dir: string
let store: RecordStore
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'allmende-store-'))
  store = await openStore({
    path: join(dir, 'records.log'),
    genesis: sim.genesis,
    clock: () => NOW,
    log: silentLogger,
  })
})
afterAll(async () => {
  await store.close()
  await rm(dir, { recursive: true, force: true })
})

const m = sim.manifest('a', 0, { id: 'm', name: 'tiny', version: '1.0.0' })
const open = (i: number, by = 'a') =>
  sim.proposal(by, 100 + i, {
    closesAt: 3_600_000,
    action: { type: 'ratify-model', manifest: m.cid },
    basis: sim.federation,
    title: `open ${i}`,
  })

describe('the store validator', () => {
  it('rejects invalid bytes and writes nothing of them', async () => {
    const before = store.logBytes()
    const bad = Uint8Array.from(m.bytes)
    bad[Buffer.from(bad).indexOf(Buffer.from(m.record.sig)) + 10]! ^= 1
    const r = await store.ingest(bad)
    expect(r.verdict).toBe('reject')
    expect(r.code).toBe('sig-invalid')
    expect((await store.ingest(Uint8Array.of(0xa1, 0x61))).verdict).toBe('reject')
    expect(store.logBytes()).toBe(before)
  })

  it('ignores a duplicate, and says so', async () => {
    expect((await store.ingest(m.bytes)).verdict).toBe('accept')
    const again = await store.ingest(m.bytes)
    expect(again.verdict).toBe('ignore')
    expect(again.code).toBe('duplicate')
    expect(again.duplicate).toBe(true)
  })

  it('ignores authors who are members in no known state', async () => {
    const stranger = sim.vote('stranger', 5, { proposal: m.cid, choice: 'yes' })
    const r = await store.ingest(stranger.bytes)
    expect(r.verdict).toBe('ignore')
    expect(r.code).toBe('unknown-author')
    expect(store.fold.has(stranger.cid)).toBe(false)
  })

  it(`takes at most ${MAX_VOTES_PER_VOTER_AND_PROPOSAL} votes per voter and proposal`, async () => {
    const p = open(0)
    expect((await store.ingest(p.bytes)).verdict).toBe('accept')
    for (let i = 0; i < MAX_VOTES_PER_VOTER_AND_PROPOSAL; i++) {
      const v = sim.vote('v', 200 + i, { proposal: p.cid, choice: i % 2 ? 'yes' : 'no' })
      expect((await store.ingest(v.bytes)).verdict).toBe('accept')
    }
    const over = await store.ingest(sim.vote('v', 300, { proposal: p.cid, choice: 'yes' }).bytes)
    expect(over.verdict).toBe('ignore')
    expect(over.code).toBe('ingest-limit')
    // Another voter on the same proposal is not limited by v's votes.
    expect((await store.ingest(sim.vote('b', 300, { proposal: p.cid, choice: 'yes' }).bytes)).verdict).toBe(
      'accept',
    )
  })

  it('takes at most maxOpenProposalsPerAuthor open proposals per author; closed ones do not count', async () => {
    // open(0) is held already: one more is taken, the third is not.
    expect((await store.ingest(open(1).bytes)).verdict).toBe('accept')
    const third = await store.ingest(open(2).bytes)
    expect(third.verdict).toBe('ignore')
    expect(third.code).toBe('ingest-limit')
    // A proposal closed by now is not open: it is taken.
    const closed = sim.proposal('a', 1, {
      closesAt: 2_000,
      action: { type: 'ratify-model', manifest: m.cid },
      basis: sim.federation,
      title: 'closed',
    })
    expect((await store.ingest(closed.bytes)).verdict).toBe('accept')
    // Another author has a limit of their own.
    expect((await store.ingest(open(3, 'b').bytes)).verdict).toBe('accept')
  })

  it('keeps inapplicable records and reports them (a vote out of its window, a wrong role)', async () => {
    const p = open(0)
    const late = sim.vote('b', 3_600_001, { proposal: p.cid, choice: 'no' })
    const r = await store.ingest(late.bytes)
    expect(r.verdict).toBe('accept')
    expect(r.report).toMatchObject({ status: 'inapplicable', code: 'vote-window' })
    const notPublisher = sim.manifest('v', 7, { id: 'x', name: 'other', version: '1.0.0' })
    const r2 = await store.ingest(notPublisher.bytes)
    expect(r2.verdict).toBe('accept')
    expect(r2.report).toMatchObject({ status: 'inapplicable', code: 'author-role' })
    // Both are held (and durable: ingest resolves after the log's fsync), so every honest node
    // holds the same record set.
    expect(store.bytesOf(late.cid)).toEqual(late.bytes)
    expect(store.bytesOf(notPublisher.cid)).toEqual(notPublisher.bytes)
  })
})

describe('witness times', () => {
  it('are kept across a restart: the first reception counts, not a later one or a re-ingest', async () => {
    const home = await mkdtemp(join(tmpdir(), 'allmende-witness-'))
    let now = NOW
    const opened = () =>
      openStore({
        path: join(home, 'records.log'),
        genesis: sim.genesis,
        clock: () => now,
        log: silentLogger,
      })
    try {
      const p = open(50, 'b')
      const vote = sim.vote('v', 200, { proposal: p.cid, choice: 'yes' })
      let s = await opened()
      for (const r of [m, p, vote]) expect((await s.ingest(r.bytes)).verdict).toBe('accept')
      expect(s.witnessedAt(p.key)).toBe(NOW)
      expect(s.witnessedAt(vote.key)).toBe(NOW)
      // A manifest is not a record whose reception time decides anything: none is kept.
      expect(s.witnessedAt(m.key)).toBeUndefined()
      await s.close()

      now = NOW + 60_000
      s = await opened()
      try {
        expect(s.witnessedAt(p.key)).toBe(NOW)
        expect(s.witnessedAt(vote.key)).toBe(NOW)
        // Received again (from another peer, or by sync): the first time stands.
        expect((await s.ingest(vote.bytes)).duplicate).toBe(true)
        expect(s.witnessedAt(vote.key)).toBe(NOW)
        // A record first received after the restart gets the new clock.
        const late = sim.vote('a', 300, { proposal: p.cid, choice: 'no' })
        expect((await s.ingest(late.bytes)).verdict).toBe('accept')
        expect(s.witnessedAt(late.key)).toBe(NOW + 60_000)
      } finally {
        await s.close()
      }
    } finally {
      await rm(home, { recursive: true, force: true })
    }
  })
})
