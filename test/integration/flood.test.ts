/**
 * A hostile gossip peer: a raw libp2p + gossipsub peer (node/p2p.ts) that
 * accepts everything and publishes invalid bytes at one node of a real
 * three-node line. The victim rejects them, its gossipsub score for the
 * attacker goes negative, nothing invalid enters any record log, and honest
 * records submitted at the far end keep flowing through the victim to every
 * node. Latency under attack is measured in bench/propagation.ts, not here.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FILES } from '../../node/config.js'
import { createLogger } from '../../node/log.js'
import { createP2P, type P2P, topicFor } from '../../node/p2p.js'
import { openRecordLog } from '../../node/record-log.js'
import {
  type AnyVerified,
  cidKey,
  decodeRecord,
  decodeStrict,
  encode,
  GENESIS_SCAN_LIMITS,
  stateRoot,
} from '../../protocol/index.js'
import { type Cluster, startCluster, submit } from '../support/cluster.js'
import { Simulator } from '../support/simulator.js'
import { until } from '../support/until.js'

const members = [
  { name: 'a', roles: ['publisher', 'steward', 'voter'] as const, weight: 1 },
  { name: 'b', roles: ['auditor', 'steward', 'voter'] as const, weight: 1 },
  { name: 'c', roles: ['steward', 'voter'] as const, weight: 1 },
  { name: 'd', roles: ['voter'] as const, weight: 1 },
]
const FLOOD = 10_000
const FLOOD_BATCH = 50
const FLOOD_BUDGET_MS = 40_000
const FLOOD_PAUSE_MS = 5
const HONEST_PACE_MS = 40
/** The graylist threshold of node/p2p.ts: below it gossipsub drops a peer's RPCs unread. */
const GRAYLIST = -80

/** Events that would mean the validator did not give a verdict of its own. */
const SUSPECT = new Set(['validator-threw', 'gossip-validator-threw', 'gossip-validator-bad-verdict'])

/** Flips one bit of a record's signature; the bytes stay well-formed DAG-CBOR. */
function badSignature(r: AnyVerified, bit: number): Uint8Array {
  const value = decodeStrict(r.bytes, GENESIS_SCAN_LIMITS)
  if (!value.ok) throw new Error('a simulator record does not decode')
  const obj = value.value as { sig: Uint8Array }
  const sig = new Uint8Array(obj.sig)
  sig[(bit >> 3) % sig.length]! ^= 1 << (bit & 7)
  return encode({ ...obj, sig })
}

describe('a peer sending invalid records', () => {
  const sim = new Simulator({
    members: members.map((m) => ({ ...m, roles: [...m.roles] })),
    base: Date.now(),
    name: 'flood',
  })
  // Same member keys, another federation: its records are well signed but foreign.
  const other = new Simulator({
    members: members.map((m) => ({ ...m, roles: [...m.roles] })),
    base: Date.now(),
    name: 'flood-other',
  })
  const suspect: string[] = []
  let oversize = 0
  const log = createLogger({
    level: 'warn',
    write: (line) => {
      const entry = JSON.parse(line) as { level: string; event: string }
      if (SUSPECT.has(entry.event) || entry.event === 'ingest-failed') suspect.push(line)
      if (entry.event === 'gossip-oversize') oversize++
    },
  })
  let cluster: Cluster | undefined
  let attacker: P2P | undefined

  beforeAll(async () => {
    // origin — victim — far: honest records from the origin reach the far end only through the victim.
    cluster = await startCluster(sim.genesis, 3, { topology: 'line', helia: false, log })
    const [origin, victim, far] = cluster.nodes
    await until(
      () =>
        victim!.p2p.subscribers().length >= 2 &&
        origin!.p2p.subscribers().length >= 1 &&
        far!.p2p.subscribers().length >= 1,
      'subscriptions along the line',
    )
    attacker = await createP2P({
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [victim!.p2p.addresses()[0]!],
      topic: topicFor(sim.federation.toString()),
      validate: () => 'accept',
      onMessage: () => {},
      helia: false,
    })
    const a = attacker
    await until(
      () => a.subscribers().includes(victim!.p2p.peerId) && victim!.p2p.subscribers().includes(a.peerId),
      'the attacker subscribed at the victim',
    )
  }, 60_000)

  afterAll(async () => {
    await attacker?.stop()
    await cluster?.stop()
  }, 30_000)

  it('has them rejected and its score drop; nothing invalid enters any log; honest traffic keeps flowing', async () => {
    const nodes = cluster!.nodes
    const [origin, victim] = nodes as [(typeof nodes)[0], (typeof nodes)[0]]
    const a = attacker!

    // Honest records: two manifests, a proposal, 27 votes (at most 7 per voter, under the ingest limit of 10).
    const m1 = sim.manifest('a', 0, { id: 'flood-m1', name: 'tiny', version: '1.0.0' })
    const m2 = sim.manifest('a', 1, { id: 'flood-m2', name: 'tiny', version: '2.0.0' })
    const p = sim.proposal('a', 2, {
      closesAt: 3_600_000,
      action: { type: 'ratify-model', manifest: m1.cid },
      basis: sim.federation,
    })
    const votes = Array.from({ length: 27 }, (_, i) =>
      sim.vote(members[i % 4]!.name, 10 + i, { proposal: p.cid, choice: i % 3 === 0 ? 'no' : 'yes' }),
    )
    const honest: AnyVerified[] = [m1, m2, p, ...votes]

    // Invalid payloads of every sort.
    const foreignManifest = other.manifest('a', 0, { id: 'other-m', name: 'tiny', version: '1.0.0' })
    const foreign = [
      foreignManifest,
      other.proposal('a', 1, {
        closesAt: 3_600_000,
        action: { type: 'ratify-model', manifest: foreignManifest.cid },
        basis: other.federation,
      }),
    ]
    const templates = honest.slice(0, 8)
    const samples: { what: string; bytes: Uint8Array }[] = [
      ...templates.map((r, i) => ({ what: 'bad signature', bytes: badSignature(r, i * 37) })),
      ...templates.map((r, i) => ({ what: 'truncated', bytes: r.bytes.subarray(0, r.bytes.length - 1 - i) })),
      ...Array.from({ length: 8 }, () => ({ what: 'random bytes', bytes: new Uint8Array(randomBytes(120)) })),
      ...foreign.map((r) => ({ what: 'another federation', bytes: r.bytes })),
      { what: 'another genesis', bytes: other.genesis.bytes },
      { what: '200 KiB CBOR blob', bytes: encode({ kind: 'vote', blob: 'x'.repeat(200 * 1024) }) },
      { what: '64 KiB + 1 record-shaped', bytes: encode({ kind: 'vote', pad: 'y'.repeat(64 * 1024) }) },
    ]
    // Every one is invalid on its own (not merely ignored): the validator must say 'reject'.
    for (const s of samples) expect([s.what, victim.store.check(s.bytes).verdict]).toEqual([s.what, 'reject'])
    const rejectsBefore = victim.store.counters.verdicts.get('unknown|reject') ?? 0

    // Honest traffic at a steady pace through the origin's API, while the attacker floods the victim.
    const honestRun = (async () => {
      for (const r of honest) {
        const res = await submit(origin, r)
        expect(res.status, JSON.stringify(res.body)).toBe(201)
        await new Promise((resolve) => setTimeout(resolve, HONEST_PACE_MS))
      }
    })()

    const stats = { samples: 0, flood: 0, delivered: 0, graylistedAfter: -1 }
    const attack = (async () => {
      // First, past the p2p layer's own cap (a.publish refuses it): straight into gossipsub.
      // Sent first, so the victim is sure to read it before the attacker is graylisted.
      const sent = await a.libp2p.services.pubsub.publish(
        topicFor(sim.federation.toString()),
        new Uint8Array(300 * 1024).fill(0xa0),
      )
      stats.delivered += sent.recipients.length
      for (const s of samples) {
        stats.delivered += (await a.publish(s.bytes)).delivered
        stats.samples++
      }
      const deadline = Date.now() + FLOOD_BUDGET_MS
      for (let i = 0; i < FLOOD && Date.now() < deadline; i += FLOOD_BATCH) {
        const batch: Promise<{ delivered: number }>[] = []
        for (let j = i; j < Math.min(FLOOD, i + FLOOD_BATCH); j++) {
          // Distinct bytes each (message ids are content hashes): a truncated map header plus a counter.
          const bytes = new Uint8Array(16)
          bytes[0] = 0xa9
          new DataView(bytes.buffer).setUint32(1, j)
          bytes.set(randomBytes(11), 5)
          batch.push(a.publish(bytes))
        }
        for (const r of await Promise.all(batch)) stats.delivered += r.delivered
        stats.flood = Math.min(FLOOD, i + FLOOD_BATCH)
        if (stats.graylistedAfter < 0 && victim.p2p.score(a.peerId) < GRAYLIST)
          stats.graylistedAfter = stats.flood
        // A short pause per batch spreads the flood over the honest run instead of one burst.
        await new Promise((resolve) => setTimeout(resolve, FLOOD_PAUSE_MS))
      }
    })()

    await Promise.all([honestRun, attack])

    // Every honest record reaches every node, through the victim.
    await until(
      () => nodes.every((n) => honest.every((r) => n.store.fold.has(r.cid))),
      'the honest records at every node',
      30_000,
    )
    // Scores are refreshed on the heartbeat (1 s).
    await until(() => victim.p2p.score(a.peerId) < 0, "the victim's score for the attacker below 0", 10_000)
    const rejects = victim.store.counters.verdicts.get('unknown|reject') ?? 0
    expect(rejects).toBeGreaterThan(rejectsBefore)
    // The honest neighbours keep a non-negative score at the victim.
    for (const n of nodes) {
      if (n !== victim) expect(victim.p2p.score(n.p2p.peerId)).toBeGreaterThanOrEqual(0)
    }
    // The victim neither took nor forwarded anything invalid: the other nodes saw no rejects.
    for (const n of nodes) {
      if (n !== victim) expect(n.store.counters.verdicts.get('unknown|reject') ?? 0).toBe(0)
    }
    // Every node agrees.
    const roots = nodes.map((n) => stateRoot(n.store.fold.state()).toString())
    expect(new Set(roots).size).toBe(1)
    expect(suspect).toEqual([])
    // The 300 KiB message was refused by the victim's size check, before the record validator.
    expect(oversize).toBeGreaterThanOrEqual(1)
    console.info(
      `flood: ${stats.samples} samples + ${stats.flood} flood messages published` +
        ` (${stats.delivered} deliveries); graylisted after ${stats.graylistedAfter} flood messages;` +
        ` victim rejects ${rejects - rejectsBefore}; score ${victim.p2p.score(a.peerId).toFixed(1)}`,
    )

    // Stop the attacker and the nodes, then read each record log from disk.
    await a.stop()
    const want = new Set(honest.map((r) => cidKey(r.cid)))
    for (const n of nodes) {
      await n.stop()
      const recordLog = await openRecordLog(join(n.home, FILES.log), { log: () => {} })
      try {
        const held = new Set<string>()
        for (const bytes of await recordLog.records()) {
          const value = decodeStrict(bytes, GENESIS_SCAN_LIMITS)
          const isListBlock =
            value.ok &&
            Array.isArray(value.value) &&
            (value.value[0] === 0 || value.value[0] === 1) &&
            value.value.length === 2
          if (isListBlock) continue
          const d = decodeRecord(bytes, { federation: sim.federation })
          expect(d.ok, d.ok ? '' : `${d.code}: ${d.message}`).toBe(true)
          if (d.ok) held.add(cidKey(d.value.cid))
        }
        // Exactly the honest records: the genesis is not logged, and nothing else was taken.
        expect(held).toEqual(want)
      } finally {
        await recordLog.close()
      }
    }
  }, 90_000)
})
