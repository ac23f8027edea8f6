/**
 * Benchmark: gossip propagation between real nodes (issue: the federation
 * node, DESIGN.md §6). Not part of `npm test`:
 *
 *     npx tsx bench/propagation.ts [sizes…]     default: 10 30
 *     npx tsx bench/propagation.ts flood
 *
 * Sizes mode: for each N, N real nodes in this process (127.0.0.1 TCP,
 * `helia: false`, records logs in a temp directory, fsync included), joined
 * in a random connected graph: node i bootstraps to BOOTSTRAP_PEERS random
 * earlier nodes (average degree ≈ 4). Once every mesh has formed, RECORDS
 * records (manifests and votes) are submitted one at a time through the HTTP
 * API, round-robin over the nodes; each one is timed from the request until
 * every node holds it (each node's fold is hooked, so the time is that of
 * the first `fold.add`, after the node's fsync). The reference, measured on
 * the same submissions: the API round trip to the local acknowledgement
 * (decode + verify + durable write + fold on the origin). The ratio shows
 * what gossip adds. Target: p99 < 250 ms for 30 nodes.
 *
 * Flood mode: 5 nodes; an attacker peer (a separate process, a raw
 * node/p2p.ts peer) connects to one node and stays quiet while honest
 * latency is measured, then floods invalid messages at that node while it is
 * measured again. Target: the flooded p50/p99 within 2× of the quiet ones.
 */
import '../node/polyfill.js'
import { type ChildProcess, fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { initHome } from '../node/config.js'
import { nativeSigner } from '../node/ed25519-native.js'
import { silentLogger } from '../node/log.js'
import { type AllmendeNode, startNode } from '../node/node.js'
import { createP2P, topicFor } from '../node/p2p.js'
import { type AnyVerified, cidKey, stateRoot } from '../protocol/index.js'
import { type SimMember, Simulator } from '../test/support/simulator.js'

const RECORDS = 200
const WARMUP = 20
const BOOTSTRAP_PEERS = 2
const VOTERS = 40
const RECORD_TIMEOUT_MS = 10_000
const MESH_TIMEOUT_MS = 60_000
/** gossipsub's D_lo: below it a node grafts more mesh peers at each heartbeat. */
const MESH_LOW = 4
const SEED = Number(process.env.SEED ?? 1)

// --- small helpers --------------------------------------------------------------

function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Nearest-rank percentile. */
function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.max(0, Math.ceil(p * s.length) - 1)] ?? Number.NaN
}

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : String(x))
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const load = () =>
  `load ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`

async function until(fn: () => boolean, what: string, timeout: number, interval = 25): Promise<void> {
  const deadline = Date.now() + timeout
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`)
    await sleep(interval)
  }
}

// --- the federation and its records ---------------------------------------------

const members: SimMember[] = [
  { name: 'a', roles: ['publisher', 'steward', 'voter'], weight: 1 },
  ...Array.from({ length: VOTERS }, (_, i) => ({ name: `v${i}`, roles: ['voter' as const], weight: 1 })),
]

class Records {
  private n = 0
  constructor(readonly sim: Simulator) {}

  /** A proposal, then `count` records alternating manifests and votes on it (≤ 10 votes per voter). */
  batch(count: number): AnyVerified[] {
    const tag = this.n++
    const anchor = this.sim.manifest('a', tag * 10_000, {
      id: `anchor-${tag}`,
      name: 'anchor',
      version: `${tag}.0.0`,
    })
    const p = this.sim.proposal('a', tag * 10_000 + 1, {
      closesAt: 24 * 3_600_000,
      action: { type: 'ratify-model', manifest: anchor.cid },
      basis: this.sim.federation,
    })
    const out: AnyVerified[] = [anchor, p]
    for (let i = 0; i < count; i++) {
      const at = tag * 10_000 + 2 + i
      out.push(
        i % 2 === 0
          ? this.sim.manifest('a', at, { id: `m-${tag}-${i}`, name: `model-${tag}`, version: `1.0.${i}` })
          : this.sim.vote(`v${(i >> 1) % VOTERS}`, at, {
              proposal: p.cid,
              choice: i % 3 === 0 ? 'no' : 'yes',
            }),
      )
    }
    return out
  }
}

// --- a cluster in a random connected graph ------------------------------------------

interface Bench {
  nodes: AllmendeNode[]
  neighbours: Set<number>[]
  diameter: number
  /** Resolves with the time (performance.now) at which the last node took the record. */
  arrival(r: AnyVerified): Promise<number>
  stop(): Promise<void>
}

function diameterOf(neighbours: readonly Set<number>[]): number {
  let d = 0
  for (let s = 0; s < neighbours.length; s++) {
    const dist = new Array<number>(neighbours.length).fill(-1)
    dist[s] = 0
    const queue = [s]
    while (queue.length > 0) {
      const u = queue.shift()!
      for (const v of neighbours[u]!) {
        if (dist[v] === -1) {
          dist[v] = dist[u]! + 1
          queue.push(v)
        }
      }
    }
    d = Math.max(d, ...dist)
  }
  return d
}

async function startGraph(sim: Simulator, n: number, rng: () => number): Promise<Bench> {
  const root = await mkdtemp(join(tmpdir(), 'allmende-propagation-'))
  const nodes: AllmendeNode[] = []
  const neighbours = Array.from({ length: n }, () => new Set<number>())
  // Per record: how many nodes hold it, and who waits for the last one.
  const held = new Map<string, { count: number; last: number; done?: (t: number) => void }>()
  const entry = (key: string) => {
    let e = held.get(key)
    if (!e) held.set(key, (e = { count: 0, last: 0 }))
    return e
  }
  const stop = async () => {
    await Promise.allSettled(nodes.map((x) => x.stop()))
    await rm(root, { recursive: true, force: true })
  }
  try {
    for (let i = 0; i < n; i++) {
      const earlier = Array.from({ length: i }, (_, j) => j)
      const peers: number[] = []
      while (peers.length < Math.min(BOOTSTRAP_PEERS, i)) {
        const j = earlier.splice(Math.floor(rng() * earlier.length), 1)[0]!
        peers.push(j)
        neighbours[i]!.add(j)
        neighbours[j]!.add(i)
      }
      const home = join(root, `node-${i}`)
      const config = await initHome(home, {
        genesis: sim.genesis,
        listen: ['/ip4/127.0.0.1/tcp/0'],
        bootstrap: peers.map((j) => nodes[j]!.p2p.addresses()[0]!),
        api: '127.0.0.1:0',
        logLevel: 'error',
      })
      const node = await startNode({ home, config, genesis: sim.genesis, log: silentLogger, helia: false })
      nodes.push(node)
      // Hook the fold: the first add of a record is the moment this node holds it (after its fsync).
      const fold = node.store.fold
      const add = fold.add.bind(fold)
      fold.add = (r) => {
        const fresh = !fold.has(r.cid)
        const out = add(r)
        if (fresh && fold.has(r.cid)) {
          const e = entry(cidKey(r.cid))
          e.count++
          e.last = performance.now()
          if (e.count === n) e.done?.(e.last)
        }
        return out
      }
    }
    await until(
      () =>
        nodes.every((node, i) => {
          const subs = new Set(node.p2p.subscribers())
          const ids = [...neighbours[i]!].map((j) => nodes[j]!.p2p.peerId)
          return (
            ids.every((id) => subs.has(id)) &&
            node.p2p.meshPeers().length >= Math.min(neighbours[i]!.size, MESH_LOW)
          )
        }),
      `the gossip mesh of ${n} nodes`,
      MESH_TIMEOUT_MS,
    )
  } catch (e) {
    await stop()
    throw e
  }
  return {
    nodes,
    neighbours,
    diameter: diameterOf(neighbours),
    arrival(r) {
      const e = entry(cidKey(r.cid))
      if (e.count === n) return Promise.resolve(e.last)
      return new Promise((resolve) => {
        e.done = resolve
      })
    },
    stop,
  }
}

// --- measuring -------------------------------------------------------------------

interface Sample {
  /** Request sent → API acknowledgement from the origin. */
  ack: number
  /** Request sent → the last node holds it. */
  all: number
}

async function post(node: AllmendeNode, r: AnyVerified): Promise<number> {
  const res = await fetch(`${node.apiUrl}/records`, {
    method: 'POST',
    headers: { 'content-type': 'application/cbor' },
    body: Buffer.from(r.bytes),
  })
  await res.arrayBuffer()
  return res.status
}

/** Submits records one at a time, round-robin over the nodes, each once the previous one is everywhere. */
async function measure(
  bench: Bench,
  records: readonly AnyVerified[],
): Promise<{ samples: Sample[]; lost: number }> {
  const samples: Sample[] = []
  let lost = 0
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!
    const origin = bench.nodes[i % bench.nodes.length]!
    const everywhere = bench.arrival(r)
    const t0 = performance.now()
    const status = await post(origin, r)
    const t1 = performance.now()
    if (status !== 201) throw new Error(`record ${i} was refused: HTTP ${status}`)
    let timer: NodeJS.Timeout | undefined
    const t2 = await Promise.race([
      everywhere,
      new Promise<number>((resolve) => {
        timer = setTimeout(() => resolve(Number.POSITIVE_INFINITY), RECORD_TIMEOUT_MS)
      }),
    ])
    clearTimeout(timer)
    if (!Number.isFinite(t2)) lost++
    samples.push({ ack: t1 - t0, all: t2 - t0 })
  }
  return { samples, lost }
}

/** Submits a batch's anchor manifest and proposal unmeasured, then measures the rest. */
async function measureBatch(bench: Bench, batch: readonly AnyVerified[]) {
  await measure(bench, batch.slice(0, 2))
  return measure(bench, batch.slice(2))
}

function summary(samples: readonly Sample[]) {
  const ack = samples.map((s) => s.ack)
  const all = samples.map((s) => s.all)
  const after = samples.map((s) => Math.max(0, s.all - s.ack))
  return {
    ack50: pct(ack, 0.5),
    ack99: pct(ack, 0.99),
    all50: pct(all, 0.5),
    all99: pct(all, 0.99),
    after50: pct(after, 0.5),
    after99: pct(after, 0.99),
  }
}

function rootsAgree(bench: Bench): boolean {
  return new Set(bench.nodes.map((n) => stateRoot(n.store.fold.state()).toString())).size === 1
}

function newSim(name: string): { sim: Simulator; records: Records } {
  const sim = new Simulator({ members, base: Date.now(), name, signer: nativeSigner })
  return { sim, records: new Records(sim) }
}

// --- sizes mode --------------------------------------------------------------------

async function sizes(ns: number[]): Promise<void> {
  const rows: string[] = []
  for (const n of ns) {
    const { sim, records } = newSim(`propagation-${n}`)
    const t = performance.now()
    const bench = await startGraph(sim, n, mulberry32(SEED + n))
    const degrees = bench.neighbours.map((s) => s.size)
    console.log(
      `${n} nodes up and meshed in ${((performance.now() - t) / 1000).toFixed(1)} s; degree ` +
        `min ${Math.min(...degrees)} avg ${(degrees.reduce((a, b) => a + b, 0) / n).toFixed(1)} ` +
        `max ${Math.max(...degrees)}, diameter ${bench.diameter}; ${load()}`,
    )
    try {
      await measure(bench, records.batch(WARMUP))
      const { samples, lost } = await measureBatch(bench, records.batch(RECORDS))
      const s = summary(samples)
      const agree = rootsAgree(bench)
      console.log(
        `  ${samples.length} records: all nodes p50 ${f1(s.all50)} ms p99 ${f1(s.all99)} ms; ` +
          `local ack p50 ${f1(s.ack50)} ms p99 ${f1(s.ack99)} ms; lost ${lost}; state roots agree: ${agree}; ${load()}`,
      )
      rows.push(
        `| ${n} | ${bench.diameter} | ${samples.length} | ${f1(s.ack50)} / ${f1(s.ack99)} | ` +
          `${f1(s.all50)} / ${f1(s.all99)} | ${f1(s.after50)} / ${f1(s.after99)} | ` +
          `${(s.all50 / s.ack50).toFixed(1)}× / ${(s.all99 / s.ack99).toFixed(1)}× | ${lost} |`,
      )
    } finally {
      await bench.stop()
    }
  }
  console.log('')
  console.log(
    '| nodes | diameter | records | local ack p50 / p99 ms (reference) | all nodes p50 / p99 ms | ' +
      'gossip after ack p50 / p99 ms | ratio all / ack p50 / p99 | lost |',
  )
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |')
  for (const r of rows) console.log(r)
  console.log('target: 30 nodes, all nodes p99 < 250 ms')
}

// --- flood mode --------------------------------------------------------------------

type ToAttacker = { cmd: 'flood' } | { cmd: 'stop' }
type FromAttacker =
  | { msg: 'ready'; peerId: string }
  | { msg: 'stopped'; sent: number; delivered: number; seconds: number }

/** The attacker process: a raw gossipsub peer that publishes invalid bytes as fast as it can. */
async function attacker(victim: string, topic: string): Promise<void> {
  const send = (m: FromAttacker) => process.send!(m)
  const p2p = await createP2P({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: [victim],
    topic,
    validate: () => 'accept',
    onMessage: () => {},
    helia: false,
  })
  const victimId = victim.slice(victim.lastIndexOf('/') + 1)
  await until(() => p2p.subscribers().includes(victimId), 'the victim subscribed', 30_000)
  let flooding = false
  let stopping = false
  let sent = 0
  let delivered = 0
  let started = 0
  const flood = async () => {
    started = performance.now()
    while (!stopping) {
      const batch: Promise<{ delivered: number }>[] = []
      for (let j = 0; j < 100; j++) {
        // Distinct bytes each (content-hash message ids): a truncated CBOR map and a counter.
        const bytes = new Uint8Array(48)
        bytes[0] = 0xa9
        new DataView(bytes.buffer).setUint32(1, sent++)
        bytes.set(randomBytes(43), 5)
        batch.push(p2p.publish(bytes))
      }
      for (const r of await Promise.all(batch)) delivered += r.delivered
      await new Promise((r) => setImmediate(r))
    }
  }
  let running: Promise<void> | undefined
  process.on('message', async (m: ToAttacker) => {
    if (m.cmd === 'flood' && !flooding) {
      flooding = true
      running = flood()
    } else if (m.cmd === 'stop') {
      stopping = true
      await running
      const seconds = running ? (performance.now() - started) / 1000 : 0
      await p2p.stop()
      send({ msg: 'stopped', sent, delivered, seconds })
      process.disconnect()
    }
  })
  send({ msg: 'ready', peerId: p2p.peerId })
}

function nextMessage(child: ChildProcess, what: FromAttacker['msg']): Promise<FromAttacker> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the attacker did not answer '${what}'`)), 60_000)
    const onMessage = (m: FromAttacker) => {
      if (m.msg !== what) return
      clearTimeout(timer)
      child.off('message', onMessage)
      resolve(m)
    }
    child.on('message', onMessage)
    child.once('exit', (code) => reject(new Error(`the attacker exited (${code})`)))
  })
}

async function flood(): Promise<void> {
  const n = 5
  const { sim, records } = newSim('propagation-flood')
  const bench = await startGraph(sim, n, mulberry32(SEED + 1000))
  // The victim: the best-connected node, so honest traffic passes through it.
  const victimIndex = bench.neighbours.reduce(
    (best, s, i) => (s.size > bench.neighbours[best]!.size ? i : best),
    0,
  )
  const victim = bench.nodes[victimIndex]!
  console.log(
    `${n} nodes, diameter ${bench.diameter}; victim node ${victimIndex} (${bench.neighbours[victimIndex]!.size} ` +
      `neighbours); ${load()}`,
  )
  const child = fork(fileURLToPath(import.meta.url), [
    'attacker',
    victim.p2p.addresses()[0]!,
    topicFor(sim.federation.toString()),
  ])
  try {
    const ready = (await nextMessage(child, 'ready')) as Extract<FromAttacker, { msg: 'ready' }>
    await until(() => victim.p2p.subscribers().includes(ready.peerId), 'the attacker subscribed', 30_000)
    await measure(bench, records.batch(WARMUP))

    const quiet = await measureBatch(bench, records.batch(RECORDS))
    const q = summary(quiet.samples)
    console.log(
      `quiet:   all nodes p50 ${f1(q.all50)} ms p99 ${f1(q.all99)} ms; local ack p50 ${f1(q.ack50)} ms; ` +
        `lost ${quiet.lost}; ${load()}`,
    )
    const rejectsBefore = victim.store.counters.verdicts.get('unknown|reject') ?? 0
    child.send({ cmd: 'flood' } satisfies ToAttacker)
    // Let the flood start before the first honest record.
    await until(
      () => (victim.store.counters.verdicts.get('unknown|reject') ?? 0) > rejectsBefore,
      'the flood',
      10_000,
    )
    const flooded = await measureBatch(bench, records.batch(RECORDS))
    const scoreDuring = victim.p2p.score(ready.peerId)
    child.send({ cmd: 'stop' } satisfies ToAttacker)
    const done = (await nextMessage(child, 'stopped')) as Extract<FromAttacker, { msg: 'stopped' }>
    const f = summary(flooded.samples)
    const rejects = (victim.store.counters.verdicts.get('unknown|reject') ?? 0) - rejectsBefore
    console.log(
      `flooded: all nodes p50 ${f1(f.all50)} ms p99 ${f1(f.all99)} ms; local ack p50 ${f1(f.ack50)} ms; ` +
        `lost ${flooded.lost}; ${load()}`,
    )
    console.log(
      `attacker: ${done.sent} invalid messages in ${done.seconds.toFixed(1)} s ` +
        `(${Math.round(done.sent / Math.max(done.seconds, 1e-9))}/s, ${done.delivered} sent to the victim); ` +
        `the victim validated and rejected ${rejects}, then graylisted it (score ${f1(scoreDuring)})`,
    )
    console.log(`state roots agree: ${rootsAgree(bench)}`)
    console.log('')
    console.log('| phase | all nodes p50 ms | all nodes p99 ms | local ack p50 ms | lost |')
    console.log('| --- | --- | --- | --- | --- |')
    console.log(`| quiet | ${f1(q.all50)} | ${f1(q.all99)} | ${f1(q.ack50)} | ${quiet.lost} |`)
    console.log(`| flooded | ${f1(f.all50)} | ${f1(f.all99)} | ${f1(f.ack50)} | ${flooded.lost} |`)
    console.log(
      `| ratio | ${(f.all50 / q.all50).toFixed(2)}× | ${(f.all99 / q.all99).toFixed(2)}× | ` +
        `${(f.ack50 / q.ack50).toFixed(2)}× | |`,
    )
    console.log('target: flooded within 2× of quiet')
  } finally {
    if (child.connected) child.kill()
    await bench.stop()
  }
}

// --- main --------------------------------------------------------------------------

const args = process.argv.slice(2)
if (args[0] === 'attacker') {
  await attacker(args[1]!, args[2]!)
} else {
  const started = performance.now()
  console.log(`propagation bench; ${load()}; seed ${SEED}`)
  if (args[0] === 'flood') await flood()
  else await sizes(args.length > 0 ? args.map(Number) : [10, 30])
  console.log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s; ${load()}`)
  // Everything is stopped: the process exits by itself. If anything is still open, say what.
  setTimeout(() => {
    console.error('still running 10 s after the end:', process.getActiveResourcesInfo())
    process.exit(1)
  }, 10_000).unref()
}
