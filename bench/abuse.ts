/**
 * Benchmark: honest work under abuse (the hostile-network issue). Not part of `npm test`:
 *
 *     npm run build && npx tsx bench/abuse.ts [records]     default 200 propagation records
 *     ATTACKS=sync|uploads|slow (comma-separated) runs only those attacks (default: all three)
 *
 * Five real nodes in this process (127.0.0.1 TCP, record logs on disk, fsync included), the
 * first of them (the victim) with its weights blockstore and upload route. An attacker process,
 * from its own loopback address (127.0.0.2, so the API's per-address caps see a stranger, as
 * they would on the internet), runs three attacks at once:
 *
 * - sync junk: a libp2p peer with a fresh identity and no member key opens
 *   `/allmende/sync/1.0.0` on the victim and pushes `blocks` frames of list-block-shaped CBOR
 *   (`[0, [CID…]]`, ~1 MiB a frame) as fast as the stream takes them, dialling again whenever
 *   it is hung up on;
 * - unauthenticated uploads: `POST /weights` with a publisher's public DID, a garbage
 *   signature and a body streamed as fast as the socket takes it, one after another;
 * - 200 slow bodies: `POST /records` connections that send their headers and 1 KiB of a 60 KB
 *   body, then one byte every 2 s; each closed one is opened again.
 *
 * Three phases measure the same honest work: records posted to the victim's API, 8 in flight
 * (ingest, records/s), and records posted one at a time round-robin over the nodes, each timed
 * until every node holds it (propagation p50/p99):
 *
 * - quiet: the attacker idle;
 * - control: the same attacks aimed at a sink node of the attacker's own (same software, same
 *   federation, not connected to the five), so this machine carries the same load;
 * - attacked: the attacks aimed at the victim.
 *
 * Disk: for every node, the growth of its home over the phase less what the honest records
 * account for (each record's bytes plus the log's 8-byte frame header, and the witness log's
 * lines for proposals and votes), split into the record log, the weights blockstore and
 * everything else. Targets: attacked propagation p99 ≤ 1.5× quiet, ingest ≥ 0.8× quiet, and the
 * attacker's net disk growth 0 bytes on every node. Both ratios are also printed against the
 * control.
 */
import '../node/polyfill.js'
import { type ChildProcess, fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { stat as fsStat, mkdtemp, readdir, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as dagCbor from '@ipld/dag-cbor'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { FILES, initHome } from '../node/config.js'
import { nativeSigner } from '../node/ed25519-native.js'
import { type AllmendeNode, startNode } from '../node/index.js'
import { silentLogger } from '../node/log.js'
import { createP2P, topicFor } from '../node/p2p.js'
import { MAX_FRAME_BYTES } from '../node/sync/frames.js'
import { encodeMessage } from '../node/sync/messages.js'
import { SYNC_PROTOCOL } from '../node/sync/service.js'
import { UPLOAD_HEADERS } from '../node/weights/http-contract.js'
import { type AnyVerified, stateRoot } from '../protocol/index.js'
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

const NODES = 5
const INGEST_RECORDS = 600
const INGEST_IN_FLIGHT = 8
const PROPAGATION_RECORDS = process.argv[2] === 'attacker' ? 0 : Number(process.argv[2] ?? 200)
const SLOW_BODIES = 200
const ATTACKER_ADDRESS = '127.0.0.2'
const RECORD_TIMEOUT_MS = 10_000

// --- the attacker process ---------------------------------------------------------

type ToAttacker =
  | { cmd: 'attack'; api: string; peer: string; federation: string; publisher: string }
  | { cmd: 'pause' }
  | { cmd: 'stop' }
interface AttackReport {
  seconds: number
  syncFrames: number
  syncBytes: number
  syncDials: number
  syncRefused: number
  uploads: number
  uploadBytes: number
  slowOpened: number
  slowOpenAtEnd: number
}
type FromAttacker =
  | { msg: 'ready'; sinkApi: string; sinkPeer: string }
  | ({ msg: 'paused' } & AttackReport)
  | { msg: 'stopped' }

/** A list-block-shaped leaf `[0, [CID…]]` of 250 CIDs, distinct per `n`. */
async function junkLeaf(n: number, seed: Uint8Array): Promise<Uint8Array> {
  const cids: CID[] = []
  for (let i = 0; i < 250; i++) {
    const d = new Uint8Array(seed)
    new DataView(d.buffer).setUint32(0, n)
    new DataView(d.buffer).setUint32(4, i)
    cids.push(CID.createV1(0x71, await sha256.digest(d)))
  }
  cids.sort((a, b) => Buffer.compare(a.bytes, b.bytes))
  return dagCbor.encode([0, cids])
}

interface Attack {
  stop: boolean
  report: AttackReport
  done: Promise<void>
}

async function attacker(sinkHome: string): Promise<void> {
  const send = (m: FromAttacker) => process.send!(m)
  const sink = await startNode({ home: sinkHome, log: silentLogger })
  const seed = randomBytes(32)
  let leafCounter = 0
  let current: Attack | undefined

  const start = (target: Extract<ToAttacker, { cmd: 'attack' }>): Attack => {
    const report: AttackReport = {
      seconds: 0,
      syncFrames: 0,
      syncBytes: 0,
      syncDials: 0,
      syncRefused: 0,
      uploads: 0,
      uploadBytes: 0,
      slowOpened: 0,
      slowOpenAtEnd: 0,
    }
    const attack: Attack = { stop: false, report, done: Promise.resolve() }
    const t0 = performance.now()
    const [host, port] = target.api.replace(/^http:\/\//, '').split(':') as [string, string]

    // 1. Sync junk from a stranger peer.
    const syncJunk = async () => {
      const p2p = await createP2P({
        listen: ['/ip4/127.0.0.1/tcp/0'],
        bootstrap: [],
        topic: topicFor(target.federation),
        validate: () => 'ignore',
        onMessage: () => {},
        helia: false,
      })
      try {
        while (!attack.stop) {
          report.syncDials++
          try {
            const stream = await p2p.libp2p.dialProtocol(multiaddr(target.peer), SYNC_PROTOCOL, {
              signal: AbortSignal.timeout(5_000),
            })
            const lp = lpStream(stream, { maxDataLength: MAX_FRAME_BYTES })
            while (!attack.stop) {
              const blocks: Uint8Array[] = []
              let size = 0
              while (size < MAX_FRAME_BYTES - 64 * 1024) {
                const b = await junkLeaf(leafCounter++, seed)
                blocks.push(b)
                size += b.length + 8
              }
              const frame = encodeMessage({ type: 'blocks', blocks })
              await lp.write(frame, { signal: AbortSignal.timeout(5_000) })
              report.syncFrames++
              report.syncBytes += frame.length
            }
            stream.abort(new Error('done'))
          } catch {
            report.syncRefused++
            await sleep(50)
          }
        }
      } finally {
        await p2p.stop().catch(() => {})
      }
    }

    // 2. Unauthenticated uploads streamed as fast as the socket takes them.
    const chunk = randomBytes(1024 * 1024)
    const uploads = async () => {
      while (!attack.stop) {
        report.uploads++
        await new Promise<void>((resolve) => {
          const headers: Record<string, string> = {
            'content-type': 'application/vnd.ipld.car',
            'transfer-encoding': 'chunked',
          }
          // Every header of a version-2 statement, filled as a real one would be: a publisher's
          // public DID, now, a size under maxModelBytes, a fresh nonce, this federation and node,
          // and a garbage signature, so the node gets as far as checking the signature.
          const values: Record<string, string> = {
            version: '2',
            author: target.publisher,
            at: String(Date.now()),
            signature: randomBytes(64).toString('base64'),
            size: String(64 * 1024 * 1024),
            nonce: randomBytes(16).toString('hex'),
            federation: target.federation,
            node: target.peer.slice(target.peer.lastIndexOf('/') + 1),
            peer: target.peer.slice(target.peer.lastIndexOf('/') + 1),
            root: 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy',
          }
          for (const [key, name] of Object.entries(UPLOAD_HEADERS))
            if (values[key]) headers[name] = values[key]
          const req = request({
            host,
            port: Number(port),
            method: 'POST',
            path: '/weights',
            localAddress: ATTACKER_ADDRESS,
            headers,
          })
          let ended = false
          const end = () => {
            if (ended) return
            ended = true
            req.destroy()
            resolve()
          }
          req.on('response', (res) => {
            res.resume()
            res.on('end', end)
            res.on('error', end)
          })
          req.on('error', end)
          req.on('close', end)
          const pump = () => {
            while (!ended && !attack.stop) {
              report.uploadBytes += chunk.length
              if (!req.write(chunk)) {
                req.once('drain', pump)
                return
              }
            }
            if (attack.stop) end()
          }
          pump()
        })
      }
    }

    // 3. Slow bodies, each reopened when the node closes it.
    const open = new Set<Socket>()
    const slow = async () => {
      const one = () => {
        if (attack.stop) return
        report.slowOpened++
        const s = connect({ host, port: Number(port), localAddress: ATTACKER_ADDRESS })
        open.add(s)
        let timer: NodeJS.Timeout | undefined
        s.on('connect', () => {
          s.write(
            `POST /records HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/cbor\r\n` +
              'Content-Length: 60000\r\n\r\n',
          )
          s.write(randomBytes(1024))
          timer = setInterval(() => s.write(Buffer.from([0xa5])), 2_000)
        })
        s.on('error', () => {})
        s.on('data', () => {})
        s.on('close', () => {
          clearInterval(timer)
          open.delete(s)
          if (!attack.stop) setTimeout(one, 100)
        })
      }
      for (let i = 0; i < SLOW_BODIES; i++) one()
      while (!attack.stop) await sleep(100)
      report.slowOpenAtEnd = open.size
      for (const s of open) s.destroy()
    }

    // ATTACKS=sync,uploads,slow (the default: all three) picks which run, to see what each costs.
    const chosen = new Set((process.env.ATTACKS ?? 'sync,uploads,slow').split(','))
    const running = [
      chosen.has('sync') ? syncJunk() : undefined,
      chosen.has('uploads') ? uploads() : undefined,
      chosen.has('slow') ? slow() : undefined,
    ]
    attack.done = Promise.allSettled(running).then(() => {
      report.seconds = (performance.now() - t0) / 1000
    })
    return attack
  }

  process.on('message', async (m: ToAttacker) => {
    if (m.cmd === 'attack') {
      current ??= start(m)
    } else if (m.cmd === 'pause') {
      const c = current
      current = undefined
      if (c) c.stop = true
      await c?.done
      send({ msg: 'paused', ...(c?.report ?? ({} as AttackReport)) })
    } else if (m.cmd === 'stop') {
      if (current) current.stop = true
      await current?.done
      await sink.stop()
      send({ msg: 'stopped' })
      process.disconnect()
    }
  })
  process.on('disconnect', () => process.exit(0))
  send({ msg: 'ready', sinkApi: sink.apiUrl, sinkPeer: sink.p2p.addresses()[0]! })
}

const attackerSays = <M extends FromAttacker['msg']>(child: ChildProcess, what: M) =>
  nextMessage<FromAttacker, M>(child, what, 120_000)

// --- the honest side ------------------------------------------------------------------

// Three stewards: the simulator's rules seal at 2, and a genesis read from disk must be well-formed.
const members = benchMembers([
  { name: 's2', roles: ['steward'], weight: 1 },
  { name: 's3', roles: ['steward'], weight: 1 },
])

interface Cluster {
  nodes: AllmendeNode[]
  homes: string[]
  /** Resolves with performance.now() when the last node holds the record. */
  arrival(r: AnyVerified): Promise<number>
  stop(): Promise<void>
}

async function startCluster(sim: Simulator, root: string): Promise<Cluster> {
  const nodes: AllmendeNode[] = []
  const homes: string[] = []
  const held = arrivals(NODES)
  // A ring with one chord per node: every node has 3–4 neighbours, diameter 2.
  const links = (i: number) => (i === 0 ? [] : i === 1 ? [0] : i === NODES - 1 ? [i - 1, 0, 1] : [i - 1, 0])
  for (let i = 0; i < NODES; i++) {
    const home = join(root, `node-${i}`)
    const config = await initHome(home, {
      genesis: sim.genesis,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: links(i).map((j) => nodes[j]!.p2p.addresses()[0]!),
      api: '127.0.0.1:0',
      logLevel: 'error',
    })
    // The victim (node 0) keeps weights, so its upload route is there to be abused.
    const node = await startNode({ home, config, genesis: sim.genesis, log: silentLogger, helia: i === 0 })
    nodes.push(node)
    homes.push(home)
    held.watch(node)
  }
  await until(
    () => nodes.every((n) => n.p2p.meshPeers().length >= 2 && n.p2p.subscribers().length >= 2),
    'the gossip mesh',
    60_000,
  )
  return {
    nodes,
    homes,
    arrival: held.arrival,
    stop: async () => {
      await Promise.allSettled(nodes.map((n) => n.stop()))
    },
  }
}

/** Records posted to one node, `INGEST_IN_FLIGHT` at a time: records per second acknowledged. */
async function ingestRate(node: AllmendeNode, records: readonly AnyVerified[]): Promise<number> {
  let next = 0
  const t0 = performance.now()
  const worker = async () => {
    while (next < records.length) {
      const r = records[next++]!
      const status = await post(node, r)
      if (status !== 201) throw new Error(`an honest record was refused: HTTP ${status}`)
    }
  }
  await Promise.all(Array.from({ length: INGEST_IN_FLIGHT }, worker))
  return records.length / ((performance.now() - t0) / 1000)
}

/** Records posted one at a time round-robin, each timed until every node holds it. */
async function propagation(cluster: Cluster, records: readonly AnyVerified[]) {
  const all: number[] = []
  let lost = 0
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!
    const everywhere = cluster.arrival(r)
    const t0 = performance.now()
    const status = await post(cluster.nodes[i % NODES]!, r)
    if (status !== 201) throw new Error(`an honest record was refused: HTTP ${status}`)
    let timer: NodeJS.Timeout | undefined
    const t = await Promise.race([
      everywhere,
      new Promise<number>((resolve) => {
        timer = setTimeout(() => resolve(Number.POSITIVE_INFINITY), RECORD_TIMEOUT_MS)
      }),
    ])
    clearTimeout(timer)
    if (!Number.isFinite(t)) lost++
    all.push(t - t0)
  }
  return { p50: pct(all, 0.5), p99: pct(all, 0.99), lost }
}

// --- disk accounting ----------------------------------------------------------------------

async function bytesUnder(path: string): Promise<number> {
  let total = 0
  let entries: import('node:fs').Dirent[]
  try {
    entries = await readdir(path, { withFileTypes: true })
  } catch {
    return 0
  }
  for (const e of entries) {
    const p = join(path, e.name)
    if (e.isDirectory()) total += await bytesUnder(p)
    else total += (await fsStat(p).catch(() => ({ size: 0 }))).size
  }
  return total
}

interface Disk {
  log: number
  witness: number
  blocks: number
  rest: number
}

async function diskOf(home: string): Promise<Disk> {
  const log = (await fsStat(join(home, FILES.log))).size
  const witness = (await fsStat(join(home, 'witness.log')).catch(() => ({ size: 0 }))).size
  const blocks = await bytesUnder(join(home, FILES.blocks))
  const all = await bytesUnder(home)
  return { log, witness, blocks, rest: all - log - witness - blocks }
}

/** Growth of each node's disk that the honest records of the phase do not account for. */
function unexplained(before: Disk, after: Disk, honest: readonly AnyVerified[], witnessLine: number) {
  const logHonest = honest.reduce((s, r) => s + 8 + r.bytes.length, 0)
  const witnessed = honest.filter((r) => r.record.kind === 'vote' || r.record.kind === 'proposal').length
  return {
    log: after.log - before.log - logHonest,
    witness: after.witness - before.witness - witnessed * witnessLine,
    blocks: after.blocks - before.blocks,
    rest: after.rest - before.rest,
  }
}

// --- phases -----------------------------------------------------------------------------

interface PhaseResult {
  name: string
  ingest: number
  p50: number
  p99: number
  lost: number
  attack?: AttackReport
  junk: ReturnType<typeof unexplained>[]
}

async function phase(
  name: string,
  cluster: Cluster,
  records: Records,
  child: ChildProcess,
  target: Extract<ToAttacker, { cmd: 'attack' }> | undefined,
  witnessLine: number,
): Promise<PhaseResult> {
  const ingestBatch = records.batch(INGEST_RECORDS)
  const propagationBatch = records.batch(PROPAGATION_RECORDS)
  // The unmeasured anchors go in first, and everywhere, before the disk is measured.
  for (const r of [...ingestBatch.setup, ...propagationBatch.setup]) {
    await post(cluster.nodes[0]!, r)
    await cluster.arrival(r)
  }
  const before = await Promise.all(cluster.homes.map(diskOf))
  if (target) {
    child.send(target satisfies ToAttacker)
    await sleep(2_000) // the attacks get going (slow bodies opened, first frames sent)
  }
  const ingest = await ingestRate(cluster.nodes[0]!, ingestBatch.measured)
  await Promise.all(ingestBatch.measured.map((r) => cluster.arrival(r)))
  const prop = await propagation(cluster, propagationBatch.measured)
  let attack: AttackReport | undefined
  if (target) {
    child.send({ cmd: 'pause' } satisfies ToAttacker)
    attack = await attackerSays(child, 'paused')
  }
  // Let whatever the attack left in flight settle (a node may still be closing sockets).
  await sleep(1_000)
  const after = await Promise.all(cluster.homes.map(diskOf))
  const honest = [...ingestBatch.measured, ...propagationBatch.measured]
  const junk = before.map((b, i) => unexplained(b, after[i]!, honest, witnessLine))
  const r: PhaseResult = { name, ingest, ...prop, ...(attack ? { attack } : {}), junk }
  const junkText = junk.map((j) => `${j.log}/${j.witness}/${j.blocks}/${j.rest}`).join(' ')
  console.log(
    `${name}: ingest ${f1(ingest)} records/s; propagation p50 ${f1(prop.p50)} ms p99 ${f1(prop.p99)} ms, lost ` +
      `${prop.lost}; unexplained disk growth per node (log/witness/blocks/rest bytes) ${junkText}` +
      (attack
        ? `; attacker over ${attack.seconds.toFixed(1)} s: ${attack.syncFrames} junk frames ` +
          `(${(attack.syncBytes / 2 ** 20).toFixed(0)} MiB, ${attack.syncDials} dials, ${attack.syncRefused} cut or ` +
          `refused), ${attack.uploads} uploads (${(attack.uploadBytes / 2 ** 20).toFixed(0)} MiB offered), ` +
          `${attack.slowOpened} slow bodies opened, ${attack.slowOpenAtEnd} open at the end`
        : '') +
      `; ${load()}`,
  )
  return r
}

/** Bytes one witness-log line takes, measured on the first node after the warm-up. */
async function witnessLineBytes(cluster: Cluster, records: Records): Promise<number> {
  const b = records.batch(2)
  for (const r of b.setup) {
    await post(cluster.nodes[0]!, r)
    await cluster.arrival(r)
  }
  const vote = b.measured[1]!
  const before = await diskOf(cluster.homes[0]!)
  await post(cluster.nodes[0]!, vote)
  await cluster.arrival(vote)
  await sleep(200)
  return (await diskOf(cluster.homes[0]!)).witness - before.witness
}

async function main(): Promise<void> {
  const started = performance.now()
  console.log(`abuse bench; ${load()}`)
  const sim = new Simulator({ members, base: Date.now(), name: 'abuse', signer: nativeSigner })
  const records = new Records(sim)
  const root = await mkdtemp(join(tmpdir(), 'allmende-abuse-'))
  const sinkHome = join(root, 'sink')
  await initHome(sinkHome, {
    genesis: sim.genesis,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: [],
    api: '127.0.0.1:0',
    logLevel: 'error',
  })
  const cluster = await startCluster(sim, root)
  const child = fork(fileURLToPath(import.meta.url), ['attacker', sinkHome])
  const stopAll = async () => {
    if (child.connected) child.kill()
    await cluster.stop()
    await rm(root, { recursive: true, force: true })
  }
  process.once('SIGINT', () => void stopAll().then(() => process.exit(130)))
  try {
    const ready = await attackerSays(child, 'ready')
    const victim = cluster.nodes[0]!
    const publisher = sim.did('a')
    const federation = sim.federation.toString()
    const witnessLine = await witnessLineBytes(cluster, records)
    // Warm-up: JIT, mesh, workers.
    const warm = records.batch(100)
    for (const r of warm.setup) await post(victim, r)
    await ingestRate(victim, warm.measured)

    const quiet = await phase('quiet   ', cluster, records, child, undefined, witnessLine)
    const control = await phase(
      'control ',
      cluster,
      records,
      child,
      { cmd: 'attack', api: ready.sinkApi, peer: ready.sinkPeer, federation, publisher },
      witnessLine,
    )
    const attacked = await phase(
      'attacked',
      cluster,
      records,
      child,
      { cmd: 'attack', api: victim.apiUrl, peer: victim.p2p.addresses()[0]!, federation, publisher },
      witnessLine,
    )
    const agree = new Set(cluster.nodes.map((n) => stateRoot(n.store.fold.state()).toString())).size === 1
    child.send({ cmd: 'stop' } satisfies ToAttacker)
    await attackerSays(child, 'stopped')

    const junkTotal = (p: PhaseResult) =>
      Math.max(...p.junk.map((j) => Math.max(0, j.log) + Math.max(0, j.witness) + Math.max(0, j.blocks)))
    console.log('')
    console.log(
      '| phase | ingest records/s | propagation p50 ms | p99 ms | lost | attacker disk growth, worst node (log+witness+blocks) |',
    )
    console.log('| --- | --- | --- | --- | --- | --- |')
    for (const p of [quiet, control, attacked])
      console.log(
        `| ${p.name.trim()} | ${f1(p.ingest)} | ${f1(p.p50)} | ${f1(p.p99)} | ${p.lost} | ${junkTotal(p)} B |`,
      )
    console.log(
      `| attacked / quiet | ${(attacked.ingest / quiet.ingest).toFixed(2)}× | ${(attacked.p50 / quiet.p50).toFixed(2)}× | ` +
        `${(attacked.p99 / quiet.p99).toFixed(2)}× | | |`,
    )
    console.log(
      `| attacked / control | ${(attacked.ingest / control.ingest).toFixed(2)}× | ${(attacked.p50 / control.p50).toFixed(2)}× | ` +
        `${(attacked.p99 / control.p99).toFixed(2)}× | | |`,
    )
    console.log(
      'targets: attacked p99 ≤ 1.5× quiet, ingest ≥ 0.8× quiet, attacker disk growth 0 B on every node',
    )
    console.log(
      `'rest' (Helia's datastore, peer store and other files) grew by ` +
        `${attacked.junk.map((j) => j.rest).join(' / ')} B per node while attacked, ` +
        `${quiet.junk.map((j) => j.rest).join(' / ')} B while quiet; state roots agree: ${agree}`,
    )
  } finally {
    await stopAll()
  }
  console.log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s; ${load()}`)
  setTimeout(() => {
    console.error('still running 10 s after the end:', process.getActiveResourcesInfo())
    process.exit(1)
  }, 10_000).unref()
}

const args = process.argv.slice(2)
if (args[0] === 'attacker') await attacker(args[1]!)
else await main()
