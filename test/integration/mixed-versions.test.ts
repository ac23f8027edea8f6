/**
 * A federation of two record versions does not split (SPEC.md §5.1, Versions; docs/adr/0023):
 * real nodes on 127.0.0.1 in a line A – B – C (A and C refuse each other), version 1 traffic
 * beside well-signed records of versions 2 and 3. Every node keeps and relays the future records,
 * reports them `version-unsupported`, scores no peer down and bans nobody, and all reach the same
 * state root; when the stewards raise `minVersion` to 2, every node says it must be upgraded.
 */
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FILES } from '../../node/config.js'
import type { AllmendeNode, NodeStatus } from '../../node/index.js'
import { createLogger, type Level, silentLogger } from '../../node/log.js'
import { openStore } from '../../node/store.js'
import { CAR_TYPE } from '../../node/weights/http-contract.js'
import { stateRoot } from '../../protocol/checkpoint.js'
import { buildList } from '../../protocol/cidlist.js'
import type { AnyVerified, FutureRecord, Verified } from '../../protocol/record.js'
import { type Cluster, startCluster, submit } from '../support/cluster.js'
import { blockOf, writeCar } from '../support/federation.js'
import { signFutureRecord } from '../support/future-records.js'
import { rulesWith, Simulator } from '../support/simulator.js'
import { until } from '../support/until.js'

const sim = new Simulator({
  members: [
    { name: 'alice', roles: ['publisher', 'steward', 'voter'], weight: 1 },
    { name: 'bob', roles: ['steward', 'voter'], weight: 1 },
    { name: 'carol', roles: ['steward', 'voter'], weight: 1 },
  ],
  base: Date.now(),
  name: 'mixed versions',
})
const SYNC = { intervalMs: 1_000, frameTimeoutMs: 5_000, sessionTimeoutMs: 30_000, banMs: 60_000 }
const WAIT = 60_000

/** Every node's log lines, as events with their level. */
const events: { level: Level; event: string; fields: Record<string, unknown> }[] = []
const capture = createLogger({
  level: 'debug',
  write: (line) => {
    const { level, event, ...fields } = JSON.parse(line) as { level: Level; event: string }
    events.push({ level, event, fields })
  },
})

/** A seal with the blocks of its lists, as one CAR: how a steward hands a seal to a node. */
async function submitSeal(node: AllmendeNode, seal: Verified<'seal'>): Promise<number> {
  const lists = [seal.lists!.votes, seal.lists!.attestations].map((l) => buildList(l))
  const car = writeCar([seal.cid], [blockOf(seal), ...lists.flatMap((l) => l.blocks).map(blockOf)])
  const res = await fetch(`${node.apiUrl}/records`, {
    method: 'POST',
    headers: { 'content-type': CAR_TYPE },
    body: Buffer.from(car),
  })
  return res.status
}

/** A proposal by alice to change the rules, voted yes on A, B and C, sealed on A and C: final-passed. */
async function decideOnEveryNode(
  nodes: AllmendeNode[],
  at: number,
  rules = rulesWith({}),
): Promise<AnyVerified[]> {
  const [a, b, c] = nodes as [AllmendeNode, AllmendeNode, AllmendeNode]
  const proposal = sim.proposal('alice', at, { closesAt: at + 2000, action: { type: 'change-rules', rules } })
  sim.add(proposal)
  expect((await submit(a, proposal)).status).toBe(201)
  const votes = (['alice', 'bob', 'carol'] as const).map((v) =>
    sim.vote(v, at + 10, { proposal: proposal.cid, choice: 'yes' }),
  )
  sim.add(...votes)
  for (const [node, vote] of [
    [a, votes[0]!],
    [b, votes[1]!],
    [c, votes[2]!],
  ] as const)
    expect((await submit(node, vote)).status).toBe(201)
  const seals = [
    sim.seal('alice', at + 2200, { proposal: proposal.cid }),
    sim.seal('bob', at + 2300, { proposal: proposal.cid }),
  ]
  sim.add(...seals)
  expect(await submitSeal(a, seals[0]!)).toBe(201)
  expect(await submitSeal(c, seals[1]!)).toBe(201)
  await until(
    () => nodes.every((n) => n.store.fold.state().proposals.get(proposal.key)?.phase === 'final-passed'),
    'the decision to be final on every node',
    WAIT,
  )
  return [proposal, ...votes, ...seals]
}

const rootOf = (n: AllmendeNode) => stateRoot(n.store.fold.state()).toString()

async function statusOf(n: AllmendeNode): Promise<NodeStatus> {
  return (await (await fetch(`${n.apiUrl}/status`)).json()) as NodeStatus
}

describe('a federation of two record versions, in a line A – B – C', () => {
  let cluster: Cluster
  let nodes: AllmendeNode[]
  const futures: FutureRecord[] = []

  beforeAll(async () => {
    cluster = await startCluster(sim.genesis, 3, { topology: 'line', sync: SYNC, log: capture })
    nodes = cluster.nodes
    const [a, b, c] = nodes as [AllmendeNode, AllmendeNode, AllmendeNode]
    // Only B joins them: A and C refuse each other, so what reaches C from A went through B.
    await a.p2p.block(c.p2p.peerId)
    await c.p2p.block(a.p2p.peerId)
    await until(
      () =>
        a.p2p.subscribers().length === 1 &&
        b.p2p.subscribers().length === 2 &&
        c.p2p.subscribers().length === 1,
      'subscriptions along the line',
      WAIT,
    )
  }, WAIT)
  afterAll(async () => {
    await cluster?.stop()
  })

  it(
    'keeps and relays future records, penalises nobody, and agrees on the state root',
    async () => {
      const [a, b, c] = nodes as [AllmendeNode, AllmendeNode, AllmendeNode]
      const delegation = { delegate: sim.did('bob'), scope: 'all-decisions' }
      futures.push(signFutureRecord(sim, 'alice', 5, { kind: 'delegation', body: delegation }))
      const sent = await submit(a, futures[0]!)
      expect(sent.status).toBe(201)
      expect(sent.body).toMatchObject({ report: { status: 'inapplicable', code: 'version-unsupported' } })
      const decided = await decideOnEveryNode(nodes, 10, rulesWith({ maxOpenProposalsPerAuthor: 50 }))
      // Later, C too, with a record of version 3 of a kind version 2 did not have either.
      futures.push(signFutureRecord(sim, 'carol', 40, { v: 3, kind: 'profile', body: { name: 'Carol' } }))
      expect((await submit(c, futures[1]!)).status).toBe(201)

      await until(
        () => nodes.every((n) => futures.every((f) => n.store.fold.has(f.cid))),
        'every node to hold both future records',
        WAIT,
      )
      for (const n of nodes) {
        for (const f of futures)
          expect(n.store.fold.report(f.cid)).toMatchObject({
            status: 'inapplicable',
            code: 'version-unsupported',
          })
        for (const r of decided) expect(n.store.fold.report(r.cid)?.status).toBe('applied')
        expect(n.store.fold.state().recordCount).toBe(1 + decided.length + futures.length)
      }
      // The records A and C published crossed B: A and C never spoke.
      expect(c.p2p.peers().map((p) => p.id)).not.toContain(a.p2p.peerId)
      expect(a.p2p.peers().map((p) => p.id)).not.toContain(c.p2p.peerId)

      // The same state as a fold of the version 1 records alone.
      const root = stateRoot(sim.fold.state()).toString()
      for (const n of nodes) expect(rootOf(n)).toBe(root)

      // Accepted wherever they were checked, rejected nowhere, and no peer scored down or banned.
      for (const n of nodes) {
        const verdicts = [...n.store.counters.verdicts.keys()]
        expect(verdicts.filter((k) => k.endsWith('|reject'))).toEqual([])
        expect(n.store.counters.verdicts.get('future|accept') ?? 0).toBeGreaterThan(0)
        for (const peer of n.p2p.peers()) expect(n.p2p.score(peer.id)).toBeGreaterThanOrEqual(0)
        expect(n.sync!.reports().filter((r) => r.code === 'sync-invalid')).toEqual([])
      }
      expect(b.p2p.peers()).toHaveLength(2)
      expect(events.filter((e) => e.event === 'peer-banned' || e.event === 'gossip-rejected')).toEqual([])
      for (const n of nodes) expect((await statusOf(n)).recordVersion).toEqual({ speaks: 1, required: null })
    },
    2 * WAIT,
  )

  it(
    'says so on every node once the rules demand version 2, and version 1 proposals stop counting',
    async () => {
      const [, b] = nodes as [AllmendeNode, AllmendeNode]
      await decideOnEveryNode(nodes, 2500, rulesWith({ maxOpenProposalsPerAuthor: 50, minVersion: 2 }))
      await until(
        async () => (await Promise.all(nodes.map(statusOf))).every((s) => s.recordVersion.required === 2),
        'every node to report that version 2 is required',
        WAIT,
      )
      const said = events.filter((e) => e.event === 'record-version-unsupported')
      expect(said.length).toBeGreaterThanOrEqual(nodes.length)
      expect(said[0]).toMatchObject({ level: 'error', fields: { speaks: 1, required: 2 } })

      const tooOld = sim.proposal('bob', 5000, {
        closesAt: 7000,
        action: { type: 'remove-member', id: sim.did('carol') },
      })
      sim.add(tooOld)
      expect((await submit(b, tooOld)).body).toMatchObject({ report: { code: 'version-below-minimum' } })
      await until(
        () => nodes.every((n) => n.store.fold.has(tooOld.cid)),
        'every node to hold the old proposal',
        WAIT,
      )
      for (const n of nodes)
        expect(n.store.fold.report(tooOld.cid)).toMatchObject({
          status: 'inapplicable',
          code: 'version-below-minimum',
        })
      const root = stateRoot(sim.fold.state()).toString()
      for (const n of nodes) expect(rootOf(n)).toBe(root)
    },
    2 * WAIT,
  )

  it(
    "has the future records in every node's record log",
    async () => {
      for (const [i, n] of nodes.entries()) {
        await n.stop()
        const store = await openStore({
          path: join(cluster.root, `node-${i}`, FILES.log),
          genesis: sim.genesis,
          clock: Date.now,
          log: silentLogger,
        })
        try {
          for (const f of futures) {
            expect(Buffer.from(store.bytesOf(f.cid) ?? []).equals(Buffer.from(f.bytes))).toBe(true)
            expect(store.fold.report(f.cid)).toMatchObject({ code: 'version-unsupported' })
          }
          expect(store.requiredVersion()).toBe(2)
        } finally {
          await store.close()
        }
      }
    },
    WAIT,
  )
})
