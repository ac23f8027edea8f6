/**
 * V9 as an attacker performs it: a member who is not a steward (and one steward alone, short of
 * the threshold) posts a stream of checkpoints to a real node over HTTP, each with its finalized
 * list in a CAR. Each one used to make the node derive its whole fold again. The node must take
 * them as the inapplicable records they are without deriving anything again, keep its state, and
 * keep serving honest records.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type AnyVerified, cidKey, derivationsOf, stateRoot } from '../../protocol/index.js'
import { type Cluster, startCluster, submit } from '../support/cluster.js'
import { Simulator } from '../support/simulator.js'
import { carOf } from '../support/uploads.js'

const members = [
  { name: 'a', roles: ['publisher', 'steward', 'voter'] as const, weight: 1 },
  { name: 'b', roles: ['steward', 'voter'] as const, weight: 1 },
  { name: 'c', roles: ['steward', 'voter'] as const, weight: 1 },
  { name: 'm', roles: ['voter'] as const, weight: 1 },
]

async function postWithList(url: string, checkpoint: AnyVerified, sim: Simulator): Promise<number> {
  const root = (checkpoint.record.body as { finalized: { root: import('multiformats/cid').CID } }).finalized
    .root
  const list = sim.getBlock(root)!
  const car = await carOf(checkpoint.cid, [
    { cid: checkpoint.cid, bytes: checkpoint.bytes },
    { cid: root, bytes: list },
  ])
  const res = await fetch(`${url}/records`, {
    method: 'POST',
    headers: { 'content-type': 'application/vnd.ipld.car' },
    body: Buffer.from(car),
  })
  await res.arrayBuffer()
  return res.status
}

describe('V9: checkpoints that cannot count, posted to a real node', () => {
  let cluster: Cluster
  const sim = new Simulator({
    members: members.map((x) => ({ ...x, roles: [...x.roles] })),
    base: Date.now(),
    name: 'checkpoint-abuse',
  })

  beforeAll(async () => {
    cluster = await startCluster(sim.genesis, 1)
  }, 60_000)
  afterAll(async () => {
    await cluster?.stop()
  })

  it('a stream of them derives nothing again, changes no state, and the node keeps serving', async () => {
    const node = cluster.nodes[0]!
    const interval = sim.genesis.record.body.rules.checkpointIntervalMs
    const rootBefore = stateRoot(node.store.fold.state()).toString()
    const derivedBefore = derivationsOf(node.store.fold)
    const bogus: AnyVerified[] = []
    // Epochs on interval boundaries (SPEC §11.2, checkpoint-epoch), so each is refused for its signer.
    const boundary = (i: number) => i * interval - (sim.base % interval)
    for (let i = 1; i <= 60; i++) {
      // A member with no steward role, for a new epoch each time.
      bogus.push(sim.checkpoint('m', i, boundary(i)))
      // One steward alone: one signature of t = 2 never counts.
      bogus.push(sim.checkpoint('a', i, boundary(i)))
    }
    for (const c of bogus) expect(await postWithList(node.apiUrl, c, sim)).toBe(201)

    expect(derivationsOf(node.store.fold)).toBe(derivedBefore)
    expect(stateRoot(node.store.fold.state()).toString()).toBe(rootBefore)
    expect(node.store.fold.state().checkpoint ?? null).toBeNull()
    for (const c of bogus.filter((r) => r.record.author === sim.did('m')))
      expect(node.store.fold.report(c.cid)).toMatchObject({
        status: 'inapplicable',
        code: 'checkpoint-not-steward',
      })

    // Still serving: an honest manifest and proposal are taken and applied.
    const m = sim.manifest('a', 100, { id: 'after', name: 'after', version: '1.0.0' })
    const p = sim.proposal('a', 101, {
      closesAt: 3_600_000,
      action: { type: 'ratify-model', manifest: m.cid },
      basis: sim.federation,
    })
    for (const r of [m, p]) expect((await submit(node, r)).status).toBe(201)
    expect(node.store.fold.state().proposals.has(cidKey(p.cid))).toBe(true)
  })
})
