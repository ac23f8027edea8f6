/**
 * The record store's validator policy (ADR 0015, the gossip validator):
 * reject only invalid bytes; ignore duplicates, unknown authors and records
 * past the ingest limits; accept the rest — inapplicable records are kept
 * and reported, never dropped. On a real record log in a temp directory.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLogger, silentLogger } from '../../../node/log.js'
import { openRecordLog } from '../../../node/record-log.js'
import { MAX_VOTES_PER_VOTER_AND_PROPOSAL, openStore, type RecordStore } from '../../../node/store.js'
import { idOfCid } from '../../../node/sync/id-set.js'
import {
  type AnyVerified,
  buildList,
  cidKey,
  cidOfBlock,
  encode,
  signRecord,
  type Verified,
} from '../../../protocol/index.js'
import { seededBytes } from '../../support/prng.js'
import { DEFAULT_RULES, rulesWith, Simulator } from '../../support/simulator.js'
import { tempDirForFile } from '../../support/temp-dir.js'

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

/** `n` distinct CIDs standing for votes (a seal's list names CIDs; what they are does not matter here). */
function fakeVotes(n: number, tag: string): CID[] {
  return Array.from({ length: n }, (_, i) => cidOfBlock(encode({ tag, i })))
}

/** A list-shaped block (`[0, [bytes]]`) no record names: what a stranger sends. */
function junkBlock(seed: number, bytes = 1000): Uint8Array {
  return encode([0, [seededBytes(bytes, seed)]])
}

/** A seal by steward `a` naming `votes` (and no attestations), with every block of its lists. */
function sealOf(votes: CID[], at: number) {
  const p = open(1000 + at)
  const seal = sim.seal('a', at, { proposal: p.cid, votes, attestations: [] })
  const blocks = [...buildList(votes).blocks, ...buildList([]).blocks]
  return { seal, blocks: blocks.map((b) => b.bytes), cids: blocks.map((b) => b.cid) }
}

describe('list blocks', () => {
  const tmp = tempDirForFile('allmende-store-lists-')
  let n = 0
  const opened = (log = silentLogger, path = join(tmp(), `records-${n++}.log`)) =>
    openStore({ path, genesis: sim.genesis, clock: () => NOW, log })

  it('are refused, unwritten and not reconciled when no held seal names them; taken once one does', async () => {
    const s = await opened()
    try {
      const { seal, blocks, cids } = sealOf(fakeVotes(3, 'one'), 1)
      const junk = junkBlock(1)
      const [bytesBefore, idsBefore] = [s.logBytes(), s.ids.size]
      // No seal held yet: even the real list blocks are named by nothing.
      const early = await s.ingestBlocks([junk, ...blocks])
      expect(early).toMatchObject({ taken: 0, refused: 3 })
      expect(s.logBytes()).toBe(bytesBefore)
      expect(s.ids.size).toBe(idsBefore)
      for (const c of cids) expect(s.bytesOf(c)).toBeUndefined()
      // The seal alone: held, waiting for its lists, which are named now.
      expect((await s.ingest(seal.bytes)).verdict).toBe('accept')
      expect((s.fold.get(seal.cid) as Verified<'seal'>).lists).toBeUndefined()
      for (const c of cids) expect(s.wantsBlock(cidKey(c))).toBe(true)
      expect(s.wantsBlock(cidKey(cidOfBlock(junk)))).toBe(false)
      const afterSeal = s.logBytes()
      const taken = await s.ingestBlocks([junk, ...blocks])
      expect(taken).toMatchObject({ taken: 2, refused: 1, refusedBytes: junk.length })
      expect(s.logBytes() - afterSeal).toBeGreaterThan(0)
      for (const c of cids) {
        expect(s.bytesOf(c)).toBeDefined()
        expect(s.ids.has(idOfCid(c))).toBe(true)
      }
      expect(s.bytesOf(cidOfBlock(junk))).toBeUndefined()
      expect(s.ids.has(idOfCid(cidOfBlock(junk)))).toBe(false)
      expect((s.fold.get(seal.cid) as Verified<'seal'>).lists?.votes).toHaveLength(3)
      // Offered again: held already, neither taken nor refused.
      expect(await s.ingestBlocks(blocks)).toMatchObject({ taken: 0, duplicates: 2, refused: 0 })
    } finally {
      await s.close()
    }
  })

  it("sent along with a record, only the record's own lists are kept", async () => {
    const s = await opened()
    try {
      const mine = sealOf(fakeVotes(2, 'mine'), 2)
      const other = sealOf(fakeVotes(2, 'other'), 3)
      const junk = junkBlock(2)
      const r = await s.ingest(mine.seal.bytes, [junk, other.blocks[0]!, ...mine.blocks])
      expect(r.verdict).toBe('accept')
      expect(r.blocksTaken).toBe(2)
      for (const c of mine.cids) expect(s.bytesOf(c)).toBeDefined()
      expect(s.bytesOf(cidOfBlock(junk))).toBeUndefined()
      expect(s.bytesOf(other.cids[0]!)).toBeUndefined()
      // A vote sent with blocks names none of them.
      const vote = sim.vote('v', 900, { proposal: open(0).cid, choice: 'yes' })
      const withVote = await s.ingest(vote.bytes, [junkBlock(3)])
      expect(withVote.verdict).toBe('accept')
      expect(withVote.blocksTaken).toBe(0)
      expect(s.bytesOf(cidOfBlock(junkBlock(3)))).toBeUndefined()
    } finally {
      await s.close()
    }
  })

  it('below a root, a kept branch names its children; children before their branch are refused', async () => {
    const s = await opened()
    try {
      // 300 entries: two leaves (256 + 44) under one branch, the root.
      const votes = fakeVotes(300, 'wide')
      const list = buildList(votes)
      const branch = list.blocks.find((b) => b.cid.equals(list.root))!
      const leaves = list.blocks.filter((b) => !b.cid.equals(list.root))
      expect(leaves).toHaveLength(2)
      const { seal, blocks } = sealOf(votes, 4)
      const emptyList = blocks[blocks.length - 1]!
      await s.ingest(seal.bytes)
      expect(s.wantsBlock(cidKey(branch.cid))).toBe(true)
      expect(s.wantsBlock(cidKey(leaves[0]!.cid))).toBe(false)
      expect(await s.ingestBlocks(leaves.map((b) => b.bytes))).toMatchObject({ taken: 0, refused: 2 })
      expect(await s.ingestBlocks([branch.bytes])).toMatchObject({ taken: 1, refused: 0 })
      for (const leaf of leaves) expect(s.wantsBlock(cidKey(leaf.cid))).toBe(true)
      expect(await s.ingestBlocks([...leaves.map((b) => b.bytes), emptyList])).toMatchObject({
        taken: 3,
        refused: 0,
      })
      expect((s.fold.get(seal.cid) as Verified<'seal'>).lists?.votes).toHaveLength(300)
      // In one call, children first: the branch admitted names them within the same call.
      const again = sealOf(fakeVotes(300, 'wide-2'), 5)
      await s.ingest(again.seal.bytes)
      const reversed = [...again.blocks].reverse()
      expect(await s.ingestBlocks(reversed)).toMatchObject({ taken: 3, duplicates: 1, refused: 0 })
      expect((s.fold.get(again.seal.cid) as Verified<'seal'>).lists?.votes).toHaveLength(300)
    } finally {
      await s.close()
    }
  })

  it('a block at a named root that is not the block its count calls for is refused', async () => {
    const s = await opened()
    try {
      const votes = fakeVotes(2, 'forged')
      const leaf = buildList(votes)
      const honest = sealOf(votes, 6).seal
      // The same root, with counts that call for a branch (300) or a leaf of 3 entries.
      const forged = [300, 3].map((count, i) =>
        signRecord(
          {
            kind: 'seal',
            federation: sim.federation,
            at: sim.base + 7 + i,
            body: { ...honest.record.body, votes: { root: leaf.root, count } },
          },
          sim.signer('a'),
        ),
      )
      for (const f of forged) expect((await s.ingest(f.bytes)).verdict).toBe('accept')
      const before = s.logBytes()
      expect(await s.ingestBlocks([leaf.blocks[0]!.bytes])).toMatchObject({ taken: 0, refused: 1 })
      expect(s.logBytes()).toBe(before)
      expect(s.bytesOf(leaf.root)).toBeUndefined()
    } finally {
      await s.close()
    }
  })

  it('held by an older version and named by nothing, are dropped at start with one log line', async () => {
    const path = join(tmp(), 'old-records.log')
    // The log as an older version wrote it: records, a seal with its blocks, and a stranger's
    // list-shaped blocks taken from sync.
    const p = open(2000)
    const votes = ['a', 'b', 'v'].map((v, i) => sim.vote(v, 2100 + i, { proposal: p.cid, choice: 'yes' }))
    const { seal, blocks, cids } = sealOf(
      votes.map((v) => v.cid),
      2200,
    )
    const junk = [junkBlock(10, 500), junkBlock(11, 70_000), junkBlock(12, 3)]
    const old = await openRecordLog(path)
    await old.appendMany([m.bytes, p.bytes, ...votes.map((v) => v.bytes), junk[0]!, ...blocks, seal.bytes])
    await old.appendMany(junk.slice(1))
    await old.close()
    const lines: string[] = []
    const log = createLogger({ level: 'info', write: (line) => lines.push(line) })
    for (let start = 0; start < 2; start++) {
      lines.length = 0
      const s = await opened(log, path)
      try {
        const dropped = lines.map((l) => JSON.parse(l)).filter((e) => e.event === 'record-log-junk-dropped')
        expect(dropped).toHaveLength(1)
        expect(dropped[0]).toMatchObject({ blocks: 3, bytes: junk.reduce((n, b) => n + b.length, 0) })
        for (const b of junk) {
          expect(s.bytesOf(cidOfBlock(b))).toBeUndefined()
          expect(s.ids.has(idOfCid(cidOfBlock(b)))).toBe(false)
        }
        for (const c of cids) expect(s.ids.has(idOfCid(c))).toBe(true)
        // Records and the seal's two list blocks are reconciled; the seal is complete.
        expect(s.ids.size).toBe(2 + votes.length + 1 + cids.length)
        expect((s.fold.get(seal.cid) as Verified<'seal'> | undefined)?.lists?.votes).toHaveLength(3)
      } finally {
        await s.close()
      }
    }
  })
})

describe("a seal's or checkpoint's lists, by who signed it", () => {
  const tmp = tempDirForFile('allmende-store-stewards-')
  let n = 0
  const opened = (federation: Simulator, log = silentLogger, path = join(tmp(), `records-${n++}.log`)) =>
    openStore({ path, genesis: federation.genesis, clock: () => NOW, log })
  /** 20,000 entries: 79 leaves under one branch, about 780 KB. */
  const LARGE = 20_000

  /** A seal by `by` over `count` made-up votes, with every block of its lists. */
  function sealBy(federation: Simulator, by: string, count: number, tag: string, at: number) {
    const votes = fakeVotes(count, tag)
    const p = open(3000 + at)
    const seal = federation.seal(by, at, { proposal: p.cid, votes, attestations: [] })
    const blocks = [...buildList(votes).blocks, ...buildList([]).blocks]
    return { seal, blocks: blocks.map((b) => b.bytes), cids: blocks.map((b) => b.cid) }
  }

  it('a member who is no steward names none: no block of its large list is kept, sent along or on their own', async () => {
    const s = await opened(sim)
    try {
      const { seal, blocks, cids } = sealBy(sim, 'v', LARGE, 'member', 1)
      expect(blocks.length).toBeGreaterThan(80)
      const before = s.logBytes()
      // As POST /records with a CAR hands it over: the seal and its blocks together.
      const r = await s.ingest(seal.bytes, blocks)
      expect(r.verdict).toBe('accept')
      expect(r.blocksTaken).toBe(0)
      // Held as a record (a valid signed member record), reported as the fold sees it.
      expect(s.fold.has(seal.cid)).toBe(true)
      expect(s.logBytes() - before).toBeLessThan(seal.bytes.length + 64)
      // Sent again with its blocks, and the blocks on their own (sync): none taken, none wanted.
      expect((await s.ingest(seal.bytes, blocks)).blocksTaken ?? 0).toBe(0)
      expect(await s.ingestBlocks(blocks)).toMatchObject({ taken: 0, refused: blocks.length })
      for (const c of cids) {
        expect(s.wantsBlock(cidKey(c))).toBe(false)
        expect(s.bytesOf(c)).toBeUndefined()
        expect(s.ids.has(idOfCid(c))).toBe(false)
      }
      expect(s.logBytes() - before).toBeLessThan(seal.bytes.length + 64)
    } finally {
      await s.close()
    }
  })

  it("a steward's seal keeps its large list, as before", async () => {
    const s = await opened(sim)
    try {
      const { seal, blocks, cids } = sealBy(sim, 'a', LARGE, 'steward', 2)
      const r = await s.ingest(seal.bytes, blocks)
      expect(r.blocksTaken).toBe(blocks.length)
      for (const c of cids) expect(s.bytesOf(c)).toBeDefined()
      expect((s.fold.get(seal.cid) as Verified<'seal'>).lists?.votes).toHaveLength(LARGE)
    } finally {
      await s.close()
    }
  })

  it("a member's seal and its blocks an older version wrote: the blocks are dropped at start", async () => {
    const path = join(tmp(), 'old-member.log')
    const member = sealBy(sim, 'v', 300, 'old-member', 3)
    const steward = sealBy(sim, 'a', 2, 'old-steward', 4)
    const old = await openRecordLog(path)
    await old.appendMany([...member.blocks, member.seal.bytes, ...steward.blocks, steward.seal.bytes])
    await old.close()
    const lines: string[] = []
    const s = await opened(sim, createLogger({ level: 'info', write: (line) => lines.push(line) }), path)
    try {
      const dropped = lines.map((l) => JSON.parse(l)).filter((e) => e.event === 'record-log-junk-dropped')
      // The member's branch and two leaves (its empty list is the steward's too, and kept).
      expect(dropped).toMatchObject([{ blocks: 3 }])
      for (const c of member.cids.slice(0, 3)) {
        expect(s.bytesOf(c)).toBeUndefined()
        expect(s.wantsBlock(cidKey(c))).toBe(false)
      }
      for (const c of steward.cids) expect(s.bytesOf(c)).toBeDefined()
      expect(s.fold.has(member.seal.cid)).toBe(true)
    } finally {
      await s.close()
    }
  })

  it('a member made a steward by a later admission: its lists are wanted once the decision arrives', async () => {
    // x is admitted twice on the genesis basis: as a voter (closing later, decided first here),
    // and as a steward (closing earlier, so it takes the chain once its seals arrive).
    const fed = new Simulator({
      members: [
        { name: 'a', roles: ['publisher', 'steward', 'voter'], weight: 1 },
        { name: 'b', roles: ['steward', 'voter'], weight: 1 },
        { name: 'v', roles: ['voter'], weight: 1 },
      ],
      base: 1_800_000_000_000,
      name: 'store-stewards',
    })
    const x = (roles: ('steward' | 'voter')[]) => ({ id: fed.did('x'), roles, weight: 1 })
    /** An admission of x closing at `closesAt`, its votes and both stewards' seals with their lists. */
    const admission = (roles: ('steward' | 'voter')[], closesAt: number, at: number) => {
      const p = fed.proposal('a', at, {
        closesAt,
        action: { type: 'admit-member', member: x(roles) },
        basis: fed.federation,
      })
      fed.add(p)
      const votes = ['a', 'b', 'v'].map((m, i) =>
        fed.vote(m, at + 10 + i, { proposal: p.cid, choice: 'yes' }),
      )
      fed.add(...votes)
      const seals = ['a', 'b'].map((m, i) =>
        fed.seal(m, closesAt + DEFAULT_RULES.sealGraceMs + i, { proposal: p.cid }),
      )
      fed.add(...seals)
      return { p, votes, seals }
    }
    const asVoter = admission(['voter'], 2_000, 10)
    const asSteward = admission(['steward', 'voter'], 1_000, 0)
    const s = await opened(fed)
    const ingestAll = async (records: readonly AnyVerified[]) => {
      for (const r of records)
        expect((await s.ingest(r.bytes, [...fed.blocks.values()])).verdict).toBe('accept')
    }
    try {
      await ingestAll([asVoter.p, ...asVoter.votes, ...asVoter.seals])
      expect(s.fold.state().head.equals(asVoter.p.cid)).toBe(true)
      // x is a member now, a voter: its seal is held, its lists are not wanted.
      const { seal, blocks, cids } = sealBy(fed, 'x', 300, 'x', 5000)
      expect((await s.ingest(seal.bytes, blocks)).blocksTaken).toBe(0)
      expect(s.fold.has(seal.cid)).toBe(true)
      for (const c of cids.slice(0, 3)) expect(s.wantsBlock(cidKey(c))).toBe(false)
      expect(await s.ingestBlocks(blocks.slice(0, 3))).toMatchObject({ taken: 0 })
      const generation = s.namingGeneration()

      // The earlier admission, as a steward, arrives: it takes the chain.
      await ingestAll([asSteward.p, ...asSteward.votes, ...asSteward.seals])
      expect(s.fold.state().head.equals(asSteward.p.cid)).toBe(true)
      expect(s.namingGeneration()).toBeGreaterThan(generation)
      // The root of each list is wanted now (sync asks for it), then what a kept branch names.
      expect(s.wantsBlock(cidKey(seal.record.body.votes.root))).toBe(true)
      expect(await s.ingestBlocks(blocks)).toMatchObject({ taken: 3, refused: 0 })
      expect((s.fold.get(seal.cid) as Verified<'seal'>).lists?.votes).toHaveLength(300)
    } finally {
      await s.close()
    }
  })
})
