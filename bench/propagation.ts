/**
 * Benchmark: gossip propagation between real nodes. Not part of `npm test`:
 *
 *     npx tsx bench/propagation.ts [sizes…]     default: 10 30
 *     npx tsx bench/propagation.ts flood [rate]     rate: flood messages/s, default unbounded
 *
 * Sizes mode: for each N, N real nodes in this process (127.0.0.1 TCP,
 * `helia: false`, record logs in a temp directory, fsync included), joined
 * in a random connected graph: node i bootstraps to BOOTSTRAP_PEERS random
 * earlier nodes (average degree ≈ 4; SEED=… picks another graph). Once every
 * mesh has formed, RECORDS records (manifests and votes) are submitted one at
 * a time through the HTTP API, round-robin over the nodes, each once the
 * previous one is everywhere; each one is timed from the request until every
 * node holds it (each node's fold is hooked, so the time is that of the
 * node's first `fold.add` of the record, after its fsync). The reference,
 * measured on the same submissions: the API round trip to the local
 * acknowledgement (decode + verify + durable write + fold on the origin).
 * The ratio shows what gossip adds. Target: p99 < 250 ms for 30 nodes.
 *
 * Flood mode: 5 nodes; an attacker process (raw node/p2p.ts peers) connects
 * to the best-connected node (the victim) and stays quiet while honest
 * latency is measured ("quiet"); then it floods invalid messages at a sink
 * peer of its own, not at the cluster ("control": the same load on this
 * machine minus the victim's work); then it floods the victim ("flooded").
 * Target: flooded p50/p99 within 2× of quiet. All five nodes share this
 * process's event loop, so whatever the victim spends on the flood slows
 * every node here: an upper bound on what separate processes would see.
 */
import '../node/polyfill.js'
import { type ChildProcess, fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { initHome } from '../node/config.js'
import { nativeSigner } from '../node/ed25519-native.js'
import { type AllmendeNode, startNode } from '../node/index.js'
import { silentLogger } from '../node/log.js'
import { createP2P, topicFor } from '../node/p2p.js'
import { type AnyVerified, stateRoot } from '../protocol/index.js'
import { prng as mulberry32 } from '../test/support/prng.js'
import { Simulator } from '../test/support/simulator.js'
import {
  arrivals,
  benchMembers,
  f1,
  load,
  nextMessage,
  pct,
  post,
  Records,
  sleep,
  until,
} from './gossip-support.js'

const RECORDS = 200
const WARMUP = 20
const BOOTSTRAP_PEERS = 2
const RECORD_TIMEOUT_MS = 10_000
const MESH_TIMEOUT_MS = 60_000
/** gossipsub's D_lo: below it a node grafts more mesh peers at each heartbeat. */
const MESH_LOW = 4
const SEED = Number(process.env.SEED ?? 1)

// --- the federation ------------------------------------------------------------------

const members = benchMembers()

/** A batch as one list: the anchor manifest and proposal first (`measureBatch` leaves them unmeasured). */
const batchOf = (records: Records, count: number): AnyVerified[] => {
  const b = records.batch(count)
  return [...b.setup, ...b.measured]
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
  const held = arrivals(n)
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
      held.watch(node)
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
    arrival: held.arrival,
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
      await measure(bench, batchOf(records, WARMUP))
      const { samples, lost } = await measureBatch(bench, batchOf(records, RECORDS))
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

type Target = 'victim' | 'sink'
type ToAttacker = { cmd: 'flood'; target: Target; rate: number } | { cmd: 'pause' } | { cmd: 'stop' }
interface FloodReport {
  sent: number
  delivered: number
  seconds: number
  /** CPU time of the attacker process over the flood, as a share of one core. */
  cpu: number
}
type FromAttacker = { msg: 'ready'; peerId: string } | ({ msg: 'paused' } & FloodReport) | { msg: 'stopped' }

/**
 * The attacker process: a raw gossipsub peer connected to the victim, and a
 * second one connected only to a sink (a peer in this same process whose
 * validator rejects everything, as the victim's does). Flooding the sink
 * costs this machine what flooding the victim costs it, minus the victim's
 * own work: it is the control.
 */
async function attacker(victim: string, topic: string): Promise<void> {
  const send = (m: FromAttacker) => process.send!(m)
  const base = { listen: ['/ip4/127.0.0.1/tcp/0'], topic, onMessage: () => {}, helia: false }
  const sink = await createP2P({ ...base, bootstrap: [], validate: () => 'reject' })
  const publishers = {
    victim: await createP2P({ ...base, bootstrap: [victim], validate: () => 'accept' }),
    sink: await createP2P({ ...base, bootstrap: [sink.addresses()[0]!], validate: () => 'accept' }),
  }
  const victimId = victim.slice(victim.lastIndexOf('/') + 1)
  await until(() => publishers.victim.subscribers().includes(victimId), 'the victim subscribed', 30_000)
  await until(() => publishers.sink.subscribers().includes(sink.peerId), 'the sink subscribed', 30_000)
  let counter = 0
  let current: { stop: boolean; done: Promise<FloodReport> } | undefined
  const flood = (target: Target, rate: number) => {
    const p2p = publishers[target]
    const state = { stop: false, done: Promise.resolve({} as FloodReport) }
    state.done = (async () => {
      const t0 = performance.now()
      const cpu0 = process.cpuUsage()
      let sent = 0
      let delivered = 0
      while (!state.stop) {
        const batch: Promise<{ delivered: number }>[] = []
        for (let j = 0; j < 100; j++) {
          // Distinct bytes each (content-hash message ids): a truncated CBOR map and a counter.
          const bytes = new Uint8Array(48)
          bytes[0] = 0xa9
          new DataView(bytes.buffer).setUint32(1, counter++)
          bytes.set(randomBytes(43), 5)
          batch.push(p2p.publish(bytes))
        }
        sent += batch.length
        for (const r of await Promise.all(batch)) delivered += r.delivered
        // With a rate cap, wait until the schedule catches up; else just let I/O run.
        const ahead = rate > 0 ? (sent / rate) * 1000 - (performance.now() - t0) : 0
        await (ahead > 1 ? sleep(ahead) : new Promise((r) => setImmediate(r)))
      }
      const seconds = (performance.now() - t0) / 1000
      const used = process.cpuUsage(cpu0)
      return { sent, delivered, seconds, cpu: (used.user + used.system) / 1e6 / seconds }
    })()
    return state
  }
  process.on('message', async (m: ToAttacker) => {
    if (m.cmd === 'flood') {
      current ??= flood(m.target, m.rate)
    } else if (m.cmd === 'pause') {
      const c = current
      current = undefined
      if (c) c.stop = true
      send({ msg: 'paused', ...(c ? await c.done : { sent: 0, delivered: 0, seconds: 0, cpu: 0 }) })
    } else if (m.cmd === 'stop') {
      if (current) current.stop = true
      await current?.done
      await Promise.allSettled([publishers.victim.stop(), publishers.sink.stop(), sink.stop()])
      send({ msg: 'stopped' })
      process.disconnect()
    }
  })
  // Orphaned (the bench died or was stopped): exit rather than flood on.
  process.on('disconnect', () => process.exit(0))
  send({ msg: 'ready', peerId: publishers.victim.peerId })
}

const attackerSays = <M extends FromAttacker['msg']>(child: ChildProcess, what: M) =>
  nextMessage<FromAttacker, M>(child, what, 60_000)

interface Phase {
  name: string
  s: ReturnType<typeof summary>
  lost: number
  /** This process (all five nodes): CPU as a share of one core, event-loop delay p99 in ms. */
  cpu: number
  loopP99: number
  flood?: FloodReport
}

async function phase(
  name: string,
  bench: Bench,
  records: Records,
  child: ChildProcess,
  attack?: { target: Target; rate: number },
): Promise<Phase> {
  if (attack) {
    child.send({ cmd: 'flood', ...attack } satisfies ToAttacker)
    await sleep(500) // let the flood get going (and the attacker be graylisted) before the first record
  }
  const loop = monitorEventLoopDelay({ resolution: 5 })
  loop.enable()
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  const { samples, lost } = await measureBatch(bench, batchOf(records, RECORDS))
  const used = process.cpuUsage(cpu0)
  const cpu = (used.user + used.system) / 1000 / (performance.now() - t0)
  loop.disable()
  let flood: FloodReport | undefined
  if (attack) {
    child.send({ cmd: 'pause' } satisfies ToAttacker)
    flood = await attackerSays(child, 'paused')
  }
  const p: Phase = {
    name,
    s: summary(samples),
    lost,
    cpu,
    loopP99: loop.percentile(99) / 1e6,
    ...(flood ? { flood } : {}),
  }
  console.log(
    `${name}: all nodes p50 ${f1(p.s.all50)} ms p99 ${f1(p.s.all99)} ms; local ack p50 ${f1(p.s.ack50)} ms; ` +
      `lost ${lost}; nodes' process CPU ${(cpu * 100).toFixed(0)}%, event-loop delay p99 ${f1(p.loopP99)} ms` +
      (flood
        ? `; attacker sent ${flood.sent} in ${flood.seconds.toFixed(1)} s ` +
          `(${Math.round(flood.sent / flood.seconds)}/s, CPU ${(flood.cpu * 100).toFixed(0)}%)`
        : '') +
      `; ${load()}`,
  )
  return p
}

async function flood(rate: number): Promise<void> {
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
      `neighbours); flood rate ${rate > 0 ? `${rate}/s` : 'unbounded'}; ${load()}`,
  )
  const child = fork(fileURLToPath(import.meta.url), [
    'attacker',
    victim.p2p.addresses()[0]!,
    topicFor(sim.federation.toString()),
  ])
  try {
    const ready = await attackerSays(child, 'ready')
    await until(() => victim.p2p.subscribers().includes(ready.peerId), 'the attacker subscribed', 30_000)
    await measureBatch(bench, batchOf(records, WARMUP))

    const rejects = () => victim.store.counters.verdicts.get('unknown|reject') ?? 0
    const quiet = await phase('quiet  ', bench, records, child)
    const control = await phase('control', bench, records, child, { target: 'sink', rate })
    const before = rejects()
    const flooded = await phase('flooded', bench, records, child, { target: 'victim', rate })
    console.log(
      `the victim validated and rejected ${rejects() - before} of the ${flooded.flood!.sent} flood messages, ` +
        `then dropped the rest unread (attacker graylisted, score ${f1(victim.p2p.score(ready.peerId))}); ` +
        `state roots agree: ${rootsAgree(bench)}`,
    )
    child.send({ cmd: 'stop' } satisfies ToAttacker)
    await attackerSays(child, 'stopped')

    const row = (p: Phase) =>
      `| ${p.name.trim()} | ${f1(p.s.all50)} | ${f1(p.s.all99)} | ${f1(p.s.ack50)} | ` +
      `${(p.cpu * 100).toFixed(0)}% | ${f1(p.loopP99)} | ` +
      `${p.flood ? `${Math.round(p.flood.sent / p.flood.seconds)}/s` : ''} | ${p.lost} |`
    const ratio = (a: Phase, b: Phase, label: string) =>
      `| ${label} | ${(a.s.all50 / b.s.all50).toFixed(2)}× | ${(a.s.all99 / b.s.all99).toFixed(2)}× | ` +
      `${(a.s.ack50 / b.s.ack50).toFixed(2)}× | | | | |`
    console.log('')
    console.log(
      '| phase | all nodes p50 ms | all nodes p99 ms | local ack p50 ms | nodes CPU | loop delay p99 ms | flood | lost |',
    )
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- |')
    for (const p of [quiet, control, flooded]) console.log(row(p))
    console.log(ratio(flooded, quiet, 'flooded / quiet'))
    console.log(ratio(flooded, control, 'flooded / control'))
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
  if (args[0] === 'flood') await flood(Number(args[1] ?? 0))
  else await sizes(args.length > 0 ? args.map(Number) : [10, 30])
  console.log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s; ${load()}`)
  // Everything is stopped: the process exits by itself. If anything is still open, say what.
  setTimeout(() => {
    console.error('still running 10 s after the end:', process.getActiveResourcesInfo())
    process.exit(1)
  }, 10_000).unref()
}
