import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cidKey, proposalStatus, stateRoot } from '../../protocol/index.js'
import { type Cluster, startCluster, submit } from '../support/cluster.js'
import { Simulator } from '../support/simulator.js'
import { until } from '../support/until.js'

const members = [
  { name: 'a', roles: ['publisher', 'steward', 'voter'] as const, weight: 1 },
  { name: 'b', roles: ['auditor', 'steward', 'voter'] as const, weight: 1 },
  { name: 'c', roles: ['steward', 'voter'] as const, weight: 1 },
  { name: 'd', roles: ['voter'] as const, weight: 1 },
]

describe('five nodes in a line', () => {
  let cluster: Cluster
  // Real time: the records are made "now" so the proposal is open while the test runs.
  const sim = new Simulator({
    members: members.map((m) => ({ ...m, roles: [...m.roles] })),
    base: Date.now(),
    name: 'line',
  })

  beforeAll(async () => {
    cluster = await startCluster(sim.genesis, 5, { topology: 'line' })
    // Each node but the ends has two neighbours; wait for the mesh along the line.
    await until(
      () => cluster.nodes.every((n, i) => n.p2p.subscribers().length >= (i === 0 || i === 4 ? 1 : 2)),
      'subscriptions along the line',
    )
  }, 60_000)
  afterAll(async () => {
    await cluster?.stop()
  })

  it('a record submitted at one end reaches every node, and all state roots agree', async () => {
    const [first] = cluster.nodes
    const m = sim.manifest('a', 0, { id: 'm1', name: 'tiny', version: '1.0.0' })
    const p = sim.proposal('a', 1, {
      closesAt: 3_600_000,
      action: { type: 'ratify-model', manifest: m.cid },
      basis: sim.federation,
    })
    const votes = ['a', 'b', 'd'].map((v, i) => sim.vote(v, 2 + i, { proposal: p.cid, choice: 'yes' }))
    for (const r of [m, p, ...votes]) expect((await submit(first!, r)).status).toBe(201)
    await until(
      () => cluster.nodes.every((n) => votes.every((v) => n.store.fold.has(v.cid))),
      'the records at every node',
    )
    const roots = cluster.nodes.map((n) => stateRoot(n.store.fold.state()).toString())
    expect(new Set(roots).size).toBe(1)
    const far = cluster.nodes[4]!.store.fold.state().proposals.get(cidKey(p.cid))!
    expect(proposalStatus(far, Date.now())).toBe('open')
    expect(far.tally).toEqual({ yes: 3, no: 0, abstain: 0 })
  })

  it('a vote arriving before its proposal is kept and counted once the proposal arrives', async () => {
    const [first, , , , last] = cluster.nodes
    const m = sim.manifest('a', 10, { id: 'm2', name: 'tiny', version: '2.0.0' })
    const p = sim.proposal('a', 11, {
      closesAt: 3_600_000,
      action: { type: 'ratify-model', manifest: m.cid },
      basis: sim.federation,
    })
    const early = sim.vote('c', 12, { proposal: p.cid, choice: 'no' })
    const res = await submit(last!, early)
    expect(res.status).toBe(201)
    expect((res.body as { report: { status: string } }).report.status).toBe('pending')
    await submit(first!, m)
    await submit(first!, p)
    await until(
      () => cluster.nodes.every((n) => n.store.fold.state().proposals.get(cidKey(p.cid))?.tally.no === 1),
      'the early vote counted everywhere',
    )
    expect(cluster.nodes[0]!.store.fold.report(early.cid)?.status).toBe('applied')
  })

  it('the API refuses bad records with a code and a message, and loses nothing', async () => {
    const node = cluster.nodes[2]!
    const before = node.store.fold.state().recordCount
    const garbage = await fetch(`${node.apiUrl}/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/cbor' },
      body: Buffer.from([0xa1, 0x61]),
    })
    expect(garbage.status).toBe(400)
    expect(((await garbage.json()) as { error: { code: string } }).error.code).toBe('cbor-truncated')
    const json = await fetch(`${node.apiUrl}/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    })
    expect(json.status).toBe(415)
    const big = await fetch(`${node.apiUrl}/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/cbor' },
      body: Buffer.alloc(9 * 1024 * 1024),
    })
    expect(big.status).toBe(413)
    const missing = await fetch(`${node.apiUrl}/proposals/bafy-not-a-cid`)
    expect(missing.status).toBe(400)
    expect(node.store.fold.state().recordCount).toBe(before)
    const health = await fetch(`${node.apiUrl}/health`)
    expect(await health.json()).toEqual({ ok: true })
    const metrics = await (await fetch(`${node.apiUrl}/metrics`)).text()
    expect(metrics).toMatch(/allmende_records\{kind="vote"\} \d+/)
    expect(metrics).toMatch(/allmende_records_checked\{kind="unknown",verdict="reject"\} \d+/)
  })
})

describe('admin endpoints', () => {
  it('dial needs the admin token, and a bad address is a 400 with a code, not a stack trace', async () => {
    const sim = new Simulator({ members: members.map((m) => ({ ...m, roles: [...m.roles] })), name: 'admin' })
    const cluster = await startCluster(sim.genesis, 1)
    try {
      const [node] = cluster.nodes
      const token = (await readFile(join(node!.home, 'api.token'), 'utf8')).trim()
      const dial = (auth: string | undefined, multiaddr: string) =>
        fetch(`${node!.apiUrl}/admin/dial`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(auth ? { authorization: `Bearer ${auth}` } : {}),
          },
          body: JSON.stringify({ multiaddr }),
        })
      const noToken = await dial(undefined, '/ip4/127.0.0.1/tcp/1')
      expect(noToken.status).toBe(401)
      expect(((await noToken.json()) as { error: { code: string } }).error.code).toBe('unauthorized')
      const bad = await dial(token, 'not a multiaddr')
      expect(bad.status).toBe(400)
      expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('bad-multiaddr')
    } finally {
      await cluster.stop()
    }
  })
})
