/**
 * Benchmark: one node's ingest rate, memory and restart time (issue: the
 * federation node).
 *
 *   npx tsx bench/node.ts [records=100000]
 *
 * - votes ingested per second by one node: verify + durable log + apply,
 *   64 submissions in flight (the API's own path, `store.ingest`), against a
 *   reference measured in the same run: decode + verify of the same records
 *   alone (no log, no fold);
 * - the same through HTTP (`POST /records`), 64 clients;
 * - RSS with 100,000 records held;
 * - restart to serving: a fresh daemon process on the same home, from spawn
 *   to its "ready" line, against a reference: the same process start on an
 *   empty home.
 */
import '../node/polyfill.js'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { initHome } from '../node/config.js'
import { fastEd25519, nativeSigner } from '../node/ed25519-native.js'
import { startNode } from '../node/index.js'
import { silentLogger } from '../node/log.js'
import { type AnyVerified, decodeRecord, stateRoot } from '../protocol/index.js'
import { rulesWith, type SimMember, Simulator } from '../test/support/simulator.js'

const TOTAL = Number(process.argv[2] ?? 100_000)
const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const VOTERS = 100
const PROPOSALS = Math.ceil(TOTAL / (VOTERS + 2))

const members: SimMember[] = [
  { name: 's1', roles: ['publisher', 'steward', 'voter'], weight: 1 },
  { name: 's2', roles: ['steward', 'voter'], weight: 1 },
  { name: 's3', roles: ['steward', 'voter'], weight: 1 },
  ...Array.from(
    { length: VOTERS - 3 },
    (_, i) => ({ name: `v${i}`, roles: ['voter'], weight: 1 }) as SimMember,
  ),
]
const sim = new Simulator({
  members,
  base: Date.now(),
  signer: nativeSigner,
  name: 'node bench',
  rules: rulesWith({
    maxOpenProposalsPerAuthor: 1_000_000,
    actions: { '*': { quorum: [1, 2], threshold: [1, 2], requiredAttestations: [] } },
  }),
})
const names = members.map((m) => m.name)
const setup: AnyVerified[] = []
const votes: AnyVerified[] = []
for (let i = 0; i < PROPOSALS; i++) {
  const m = sim.manifest('s1', i, { id: `m${i}`, name: `model-${i}`, version: '1.0.0' })
  const p = sim.proposal('s1', i + 1, {
    closesAt: 86_400_000,
    action: { type: 'ratify-model', manifest: m.cid },
    basis: sim.federation,
  })
  setup.push(m, p)
  for (const v of names) votes.push(sim.vote(v, i + 2, { proposal: p.cid, choice: 'yes' }))
}
const all = [...setup, ...votes].slice(0, TOTAL)
console.log(`made ${all.length} records (${PROPOSALS} proposals, ${votes.length} votes)`)

async function pool<T>(items: readonly T[], width: number, fn: (x: T) => Promise<unknown>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++]!)
    }),
  )
}

const dir = await mkdtemp(join(tmpdir(), 'allmende-bench-node-'))
const home = join(dir, 'node')
const config = await initHome(home, { genesis: sim.genesis, api: '127.0.0.1:0', logLevel: 'warn' })

// 64 HTTP clients from one address: above the default per-address cap, which is sized for strangers.
const node = await startNode({
  home,
  config: { ...config, apiMaxConnectionsPerAddress: 128 },
  genesis: sim.genesis,
  log: silentLogger,
  helia: false,
})
// Setup records (manifests, proposals) first, then votes: the measured part.
await pool(setup, 64, (r) => node.store.ingest(r.bytes))

// Reference, in the same process state: decode + verify alone (the node's own hash and backend).
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest()
const sample = votes.slice(0, 20_000)
let t0 = performance.now()
for (const v of sample)
  if (!decodeRecord(v.bytes, { federation: sim.federation, ed25519: fastEd25519, sha256 }).ok)
    throw new Error('bad vote')
const verifyRate = sample.length / ((performance.now() - t0) / 1000)
const storeVotes = votes.slice(0, Math.min(votes.length, TOTAL - setup.length) / 2)
t0 = performance.now()
await pool(storeVotes, 64, async (r) => {
  const res = await node.store.ingest(r.bytes)
  if (res.verdict !== 'accept') throw new Error(`vote not taken: ${res.code}`)
})
const ingestRate = storeVotes.length / ((performance.now() - t0) / 1000)

const httpVotes = votes.slice(storeVotes.length, TOTAL - setup.length)
t0 = performance.now()
await pool(httpVotes, 64, async (r) => {
  const res = await fetch(`${node.apiUrl}/records`, {
    method: 'POST',
    headers: { 'content-type': 'application/cbor' },
    body: Buffer.from(r.bytes),
  })
  await res.arrayBuffer()
  if (res.status !== 201) throw new Error(`HTTP ${res.status}`)
})
const httpRate = httpVotes.length / ((performance.now() - t0) / 1000)
const state = node.store.fold.state()
const rootBefore = stateRoot(state).toString()
;(globalThis as { gc?: () => void }).gc?.()
const rss = process.memoryUsage().rss / 2 ** 20
const heap = process.memoryUsage().heapUsed / 2 ** 20
const held = state.recordCount
await node.stop()

// Restart: a daemon process on the full home vs on an empty one.
// The real binary (`allmende node start`), as a user starts a node; `npm run build` first.
if (!existsSync(join(root, 'dist/allmende.mjs'))) throw new Error('run `npm run build` first')
const daemon = [join(root, 'bin/allmende.js'), '--json', 'node', 'start', '--home']
async function timeStart(h: string): Promise<{ ms: number; api: string; rss: number }> {
  const started = performance.now()
  const child = spawn(process.execPath, [...daemon, h], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] })
  const api = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      const line = out.split('\n').find((l) => l.includes('"ready":true'))
      if (line) resolve(JSON.parse(line).api)
    })
    child.once('exit', (code) => reject(new Error(`daemon exited ${code}`)))
  })
  const ms = performance.now() - started
  const st = (await (await fetch(`${api}/state`)).json()) as { stateRoot: string }
  const metrics = await (await fetch(`${api}/metrics`)).text()
  const rssBytes = Number(/^process_resident_memory_bytes (\d+)/m.exec(metrics)?.[1] ?? Number.NaN)
  child.kill('SIGTERM')
  await new Promise((r) => child.once('exit', r))
  return { ms, api: st.stateRoot, rss: rssBytes / 2 ** 20 }
}
const empty = join(dir, 'empty')
await initHome(empty, { genesis: sim.genesis, api: '127.0.0.1:0', logLevel: 'warn' })
const emptyStart = await timeStart(empty)
const fullStart = await timeStart(home)
await rm(dir, { recursive: true, force: true })

console.log('')
console.log('| measure | figure | reference (same run) | ratio |')
console.log('| --- | --- | --- | --- |')
console.log(
  `| votes ingested by one node (verify + fsync'd log + apply), 64 in flight | ${Math.round(ingestRate).toLocaleString('en')}/s | decode + verify alone: ${Math.round(verifyRate).toLocaleString('en')}/s | ${(ingestRate / verifyRate).toFixed(2)} |`,
)
console.log(
  `| the same through HTTP POST /records, 64 clients | ${Math.round(httpRate).toLocaleString('en')}/s | store path ${Math.round(ingestRate).toLocaleString('en')}/s | ${(httpRate / ingestRate).toFixed(2)} |`,
)
console.log(
  `| node RSS with ${held.toLocaleString('en')} records (the restarted daemon) | ${fullStart.rss.toFixed(0)} MB | empty node: ${emptyStart.rss.toFixed(0)} MB | +${(fullStart.rss - emptyStart.rss).toFixed(0)} MB |`,
)
console.log(
  `| (this bench process, holding the records twice: as made and in its node) | ${rss.toFixed(0)} MB (heap ${heap.toFixed(0)} MB) | | |`,
)
console.log(
  `| restart to serving, ${held.toLocaleString('en')} records (process spawn → ready) | ${fullStart.ms.toFixed(0)} ms | empty node: ${emptyStart.ms.toFixed(0)} ms | +${(fullStart.ms - emptyStart.ms).toFixed(0)} ms |`,
)
console.log('')
console.log(`state root after restart equals before: ${fullStart.api === rootBefore}`)
if (fullStart.api !== rootBefore) process.exit(1)
