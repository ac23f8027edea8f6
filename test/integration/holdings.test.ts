/**
 * Holding announcements and the replication report on real nodes (docs/adr/0029-holding-announcements.md):
 * four steward nodes on 127.0.0.1 ratify a model; the nodes that hold its weights whole and
 * verified announce them, signed with their peer keys, and `GET /replication` on every node
 * lists exactly those, with the member a binding names; a node that holds them only partly (a
 * failed scrub) or not at all is not listed; a version with fewer holders than `minHolders` is
 * flagged; a node that stops holding withdraws; a node that joins later learns the holders by
 * sync; an announcement signed in another peer's name, one of another federation and a binding
 * of a stranger are not stored; a renewal period set live applies at once.
 */
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { adminToken, initHome } from '../../node/config.js'
import { signBinding } from '../../node/holdings/binding.js'
import { holdingsTopicFor } from '../../node/holdings/gossip.js'
import type { ReplicationReport } from '../../node/holdings/report.js'
import { type AllmendeNode, startNode } from '../../node/index.js'
import { createLogger } from '../../node/log.js'
import { createSigner } from '../../protocol/index.js'
import { root as repoRoot, runProcess } from '../support/cli.js'
import { announcementFields, OTHER_FEDERATION, rawAnnouncement, testPeer } from '../support/holdings.js'
import {
  holdWeights,
  startOnRealClock,
  submitRatificationNow,
  untilFinalPassed,
} from '../support/stewards.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { until } from '../support/until.js'

const KEY_PREFIX = 'allmende-holdings-test:'
const root = tempDirForFile('allmende-holdings-')

async function replication(n: AllmendeNode, model?: string): Promise<ReplicationReport> {
  const query = model ? `?model=${encodeURIComponent(model)}` : ''
  const res = await fetch(`${n.apiUrl}/replication${query}`)
  if (res.status !== 200) throw new Error(`GET /replication answered ${res.status}: ${await res.text()}`)
  return (await res.json()) as ReplicationReport
}

/** Sets `n` to announce its own API as its gateway: a loopback API is announced only when set. */
async function announceOwnApi(n: AllmendeNode): Promise<void> {
  const res = await fetch(`${n.apiUrl}/admin/config/announceGateways`, {
    method: 'PUT',
    headers: {
      authorization: `Bearer ${(await adminToken(n.home)).trim()}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ value: [n.apiUrl] }),
  })
  if (res.status !== 200) throw new Error(`announceGateways refused: ${res.status} ${await res.text()}`)
}

/** The peers listed as holders of tiny@1.0.0 on `n`, sorted. */
async function holdersOn(n: AllmendeNode): Promise<string[]> {
  const report = await replication(n)
  return (report.versions.find((v) => v.model === 'tiny@1.0.0')?.holders ?? []).map((h) => h.peer).sort()
}

async function untilHolders(nodes: readonly AllmendeNode[], peers: string[], what: string): Promise<void> {
  const want = [...peers].sort()
  await until(
    async () =>
      (await Promise.all(nodes.map(holdersOn))).every((h) => JSON.stringify(h) === JSON.stringify(want)),
    what,
    20_000,
  )
}

/** `allmende --json ...args` from the sources, talking to `node`; its parsed output. */
async function cli(node: AllmendeNode, args: string[]): Promise<Record<string, unknown>> {
  const run = await runProcess(
    join(repoRoot, 'node_modules/.bin/tsx'),
    [join(repoRoot, 'cli/run.ts'), '--json', ...args],
    {
      env: { ...process.env, ALLMENDE_NODE: node.apiUrl, ALLMENDE_HOME: root(), ALLMENDE_PASSPHRASE: '' },
    },
  )
  if (run.code !== 0) throw new Error(`allmende ${args.join(' ')} exited ${run.code}: ${run.stderr}`)
  return JSON.parse(run.stdout) as Record<string, unknown>
}

/** A node of the federation that is no steward and holds no weights, bootstrapping to `to`. */
async function lateNode(sim: { genesis: Parameters<typeof initHome>[1]['genesis'] }, to: AllmendeNode) {
  const home = join(root(), 'late')
  const config = await initHome(home, {
    genesis: sim.genesis,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: [to.p2p.addresses()[0]!],
    api: '127.0.0.1:0',
  })
  return startNode({
    home,
    config,
    genesis: sim.genesis,
    log: createLogger({ level: 'error', name: 'late', write: () => {} }),
    helia: false,
    sync: { intervalMs: 1_000 },
  })
}

describe('the replication report', () => {
  it('lists exactly the nodes that hold a ratified version, flags it below minHolders, and stores no forgery', async () => {
    const modelDir = join(root(), 'model')
    await generateModel(modelDir, { seed: 11 })
    const { sim, net } = await startOnRealClock(
      {
        name: 'holdings',
        keyPrefix: KEY_PREFIX,
        rules: { weightsDeadlineMs: 8_000, sealDeadlineMs: 12_000 },
      },
      { root: root(), tag: 'holdings', helia: true },
    )
    const nodes = net.nodes
    let late: AllmendeNode | undefined
    try {
      const weights = await holdWeights(nodes, modelDir)
      for (const n of nodes) await n.weights!.pin(weights.root)
      const { proposal } = await submitRatificationNow(sim, nodes[0]!, 'holdings', weights)
      await untilFinalPassed(nodes, proposal.cid)
      const [s1, s2, s3, s4] = nodes as [AllmendeNode, AllmendeNode, AllmendeNode, AllmendeNode]
      for (const n of nodes) await announceOwnApi(n)

      // s1 and s2 hold the weights whole and verified; s3 only partly (a scrub failed); s4 not at all.
      const now = Date.now()
      await s1.held!.verified(weights.root, now)
      await s2.held!.verified(weights.root, now)
      await s3.held!.verified(weights.root, now)
      await s3.held!.scrubbed(weights.root, now + 1, false)
      await s4.held!.forget(weights.root)
      // Member s1 binds its node.
      const binding = signBinding(
        { federation: sim.federation, member: sim.did('s1'), peers: [s1.p2p.peerId], at: Date.now() },
        sim.signer('s1'),
      )
      const bound = await fetch(`${s3.apiUrl}/holdings/bindings`, {
        method: 'POST',
        headers: { 'content-type': 'application/cbor' },
        body: Buffer.from(binding),
      })
      expect(bound.status).toBe(201)

      await untilHolders(nodes, [s1.p2p.peerId, s2.p2p.peerId], 's1 and s2 listed as holders on every node')
      await until(
        async () => (await replication(s4)).versions[0]?.holders.some((h) => h.member !== null),
        "s1's binding on s4",
        20_000,
      )
      const report = await replication(s4)
      expect(report.minHolders).toBe(3)
      expect(report.versions.length).toBe(1)
      const entry = report.versions[0]!
      expect(entry).toMatchObject({
        model: 'tiny@1.0.0',
        weights: weights.root.toString(),
        status: 'ratified',
        flagged: true,
      })
      const byPeer = new Map(entry.holders.map((h) => [h.peer, h]))
      expect(byPeer.get(s1.p2p.peerId)).toMatchObject({
        member: sim.did('s1'),
        gateways: [s1.apiUrl],
        verifiedAt: now,
      })
      expect(byPeer.get(s2.p2p.peerId)).toMatchObject({ member: null, gateways: [s2.apiUrl] })
      // As sources: one URL per host (every node here is on 127.0.0.1), the bound holder's first.
      expect(s4.holdings.gatewaysOf(weights.root)).toEqual([s1.apiUrl])
      expect((await replication(s4, 'tiny@1.0.0')).versions).toEqual(report.versions)
      expect((await fetch(`${s4.apiUrl}/replication?model=none@0`)).status).toBe(404)

      // A third holder does not lift the flag while only one of the three is bound to a member
      // (a stranger's peer ids would look the same); a holder whose scrub fails withdraws at once.
      await s4.held!.verified(weights.root, Date.now())
      await untilHolders(nodes, [s1.p2p.peerId, s2.p2p.peerId, s4.p2p.peerId], 's4 listed too')
      expect((await replication(s1)).versions[0]).toMatchObject({ affiliatedHolders: 1, flagged: true })
      await s2.held!.scrubbed(weights.root, Date.now(), false)
      await untilHolders(nodes, [s1.p2p.peerId, s4.p2p.peerId], 's2 withdrawn everywhere')
      expect((await replication(s3)).versions[0]!.flagged).toBe(true)

      // `node bind` with member s2's key binds s2's node; `model holders` shows it.
      const boundCli = await cli(s2, ['node', 'bind', '--key', join(root(), 'holdings-s2.key')])
      expect(boundCli).toEqual({ member: sim.did('s2'), peers: [s2.p2p.peerId] })
      await s2.held!.verified(weights.root, Date.now())
      await until(
        async () =>
          (await replication(s3)).versions[0]?.holders.find((h) => h.peer === s2.p2p.peerId)?.member ===
          sim.did('s2'),
        's2 listed again, bound to member s2',
        20_000,
      )
      const shown = (await cli(s3, ['model', 'holders', 'tiny@1.0.0'])) as {
        holders: { peer: string; member: string }[]
      }
      expect(shown.holders.map((h) => [h.peer, h.member]).sort()).toEqual(
        [
          [s1.p2p.peerId, sim.did('s1')],
          [s2.p2p.peerId, sim.did('s2')],
          [s4.p2p.peerId, null],
        ].sort(),
      )
      // Once member s4 binds its node too, three affiliated holders lift the flag.
      const s4Binding = signBinding(
        { federation: sim.federation, member: sim.did('s4'), peers: [s4.p2p.peerId], at: Date.now() },
        sim.signer('s4'),
      )
      const s4Bound = await fetch(`${s3.apiUrl}/holdings/bindings`, {
        method: 'POST',
        headers: { 'content-type': 'application/cbor' },
        body: Buffer.from(s4Binding),
      })
      expect(s4Bound.status).toBe(201)
      await until(
        async () => (await replication(s3)).versions[0]?.flagged === false,
        'three affiliated holders lift the flag',
        20_000,
      )
      expect((await replication(s3)).versions[0]!.affiliatedHolders).toBe(3)
      await s2.held!.forget(weights.root)
      await untilHolders(nodes, [s1.p2p.peerId, s4.p2p.peerId], 's2 withdrawn again')

      // A node that joins now learns the holders and the binding by sync (gossip said them before it came).
      late = await lateNode(sim, s1)
      await untilHolders([late], [s1.p2p.peerId, s4.p2p.peerId], 'the late node learns the holders')
      const metrics = await (await fetch(`${s1.apiUrl}/metrics`)).text()
      expect(metrics).toMatch(/allmende_version_holders\{model="tiny@1.0.0"\} 2/)

      // Forgeries sent from the late node: signed by a stranger in s3's name, of another
      // federation, and a binding by someone who is no member. None is stored anywhere.
      const stranger = await testPeer()
      const topic = holdingsTopicFor(sim.federation.toString())
      const forged = await rawAnnouncement(
        announcementFields(
          { key: stranger.key, id: s3.p2p.peerId },
          {
            federation: sim.federation,
            weights: weights.root,
            verifiedAt: Date.now(),
            at: Date.now(),
          },
        ),
        stranger.key,
      )
      const otherFederation = await rawAnnouncement(
        announcementFields(stranger, { federation: OTHER_FEDERATION, weights: weights.root, at: Date.now() }),
        stranger.key,
      )
      const notMember = createSigner(new Uint8Array(32).fill(7))
      const strangerBinding = signBinding(
        { federation: sim.federation, member: notMember.did, peers: [stranger.id], at: Date.now() },
        notMember,
      )
      const pubsub = late.p2p.libp2p.services.pubsub
      await until(() => pubsub.getSubscribers(topic).length > 0, 'the late node sees holdings subscribers')
      for (const bytes of [forged, otherFederation, strangerBinding]) await pubsub.publish(topic, bytes)
      await until(
        async () => {
          const text = await (await fetch(`${s1.apiUrl}/metrics`)).text()
          return ['signature', 'federation', 'not-member'].every((r) =>
            text.includes(`allmende_holdings_refused_total{reason="${r}"}`),
          )
        },
        's1 refused all three',
        20_000,
      )
      for (const n of nodes) {
        expect(n.holdings.store.announcementOf(s3.p2p.peerId, weights.root)?.withdrawn ?? true).toBe(true)
        expect(n.holdings.store.announcementOf(stranger.id, weights.root)).toBeUndefined()
        expect(n.holdings.store.bindingOf(notMember.did)).toBeUndefined()
      }
      expect(await holdersOn(s1)).toEqual([s1.p2p.peerId, s4.p2p.peerId].sort())
      // The API refuses the stranger's binding with its code.
      const refused = await fetch(`${s1.apiUrl}/holdings/bindings`, {
        method: 'POST',
        headers: { 'content-type': 'application/cbor' },
        body: Buffer.from(strangerBinding),
      })
      expect(refused.status).toBe(403)
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('binding-not-member')
      // A body of 2 KiB is read (and refused for what it is); one byte more is not read at all.
      const post = (bytes: number) =>
        fetch(`${s1.apiUrl}/holdings/bindings`, {
          method: 'POST',
          headers: { 'content-type': 'application/cbor' },
          body: Buffer.alloc(bytes, 0xa0),
        })
      const atLimit = await post(2048)
      expect([atLimit.status, ((await atLimit.json()) as { error: { code: string } }).error.code]).toEqual([
        400,
        'binding-malformed',
      ])
      expect((await post(2049)).status).toBe(413)
      expect((await fetch(`${s1.apiUrl}/replication?model=${'x'.repeat(601)}@1`)).status).toBe(400)

      // holdingRenewMs is live: set to its least (1 s) on s1, s1 renews within seconds, not hours.
      const announcedAt = () => s4.holdings.store.announcementOf(s1.p2p.peerId, weights.root)?.at ?? 0
      const lastAt = announcedAt()
      await s1.liveConfig.set('holdingRenewMs', 1_000)
      await until(() => announcedAt() > lastAt, "s1's renewal reaches s4 once holdingRenewMs is set", 20_000)

      // Bindings outlive a restart: s3 started again alone still knows who bound what.
      const again = await net.restart(2, { isolated: true })
      expect(again.holdings.store.bindingOf(sim.did('s1'))?.peers).toEqual([s1.p2p.peerId])
      expect(again.holdings.store.bindingOf(sim.did('s2'))?.peers).toEqual([s2.p2p.peerId])
    } finally {
      await late?.stop()
      await net.stop()
    }
  }, 120_000)
})
