/**
 * Benchmark: sync (`/allmende/sync/1.0.0`) between real nodes on 127.0.0.1.
 *
 *   npx tsx bench/sync.ts [records=100000]
 *
 * - catch-up: a new, empty node connects to one peer holding every record
 *   and syncs until it holds them all, each record verified and made durable
 *   as gossip would; against a reference measured in the same run: the same
 *   records ingested by a node straight from memory (`store.ingest`, 64 in
 *   flight: verify + log + fold, no network);
 * - bytes exchanged by one sync round between two nodes already in sync;
 * - bytes exchanged when 1% differs (1% of the records, at random, missing
 *   on one side), against the size of the missing records.
 */
import '../node/polyfill.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { initHome } from '../node/config.js'
import { nativeSigner } from '../node/ed25519-native.js'
import { type AllmendeNode, startNode } from '../node/index.js'
import { silentLogger } from '../node/log.js'
import { openRecordLog } from '../node/record-log.js'
import { type AnyVerified, stateRoot } from '../protocol/index.js'
import { prng } from '../test/support/prng.js'
import { rulesWith, type SimMember, Simulator } from '../test/support/simulator.js'

const TOTAL = Number(process.argv[2] ?? 100_000)
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
  name: 'sync bench',
  rules: rulesWith({ maxOpenProposalsPerAuthor: 1_000_000 }),
})
const all: AnyVerified[] = []
for (let i = 0; all.length < TOTAL; i++) {
  const m = sim.manifest('s1', i, { id: `m${i}`, name: `model-${i}`, version: '1.0.0' })
  const p = sim.proposal('s1', i + 1, {
    closesAt: 86_400_000,
    action: { type: 'ratify-model', manifest: m.cid },
    basis: sim.federation,
  })
  all.push(m, p)
  for (const v of members) all.push(sim.vote(v.name, i + 2, { proposal: p.cid, choice: 'yes' }))
}
all.length = TOTAL
console.log(`made ${all.length.toLocaleString('en')} records (${PROPOSALS} proposals)`)

const dir = await mkdtemp(join(tmpdir(), 'allmende-bench-sync-'))
const SYNC = { intervalMs: 0, onConnect: false, frameTimeoutMs: 30_000, sessionTimeoutMs: 600_000 }

/** A node home whose log already holds `records` (written directly: setup, not measured). */
async function home(name: string, records: readonly AnyVerified[]): Promise<AllmendeNode> {
  const h = join(dir, name)
  const config = await initHome(h, {
    genesis: sim.genesis,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    api: '127.0.0.1:0',
    logLevel: 'warn',
  })
  const log = await openRecordLog(join(h, 'records.log'))
  for (let i = 0; i < records.length; i += 4096)
    await log.appendMany(records.slice(i, i + 4096).map((r) => r.bytes))
  await log.close()
  return startNode({ home: h, config, genesis: sim.genesis, log: silentLogger, helia: false, sync: SYNC })
}

async function pool<T>(items: readonly T[], width: number, fn: (x: T) => Promise<unknown>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++]!)
    }),
  )
}

const full = await home('full', all)
const rootOf = (n: AllmendeNode) => stateRoot(n.store.fold.state()).toString()

// Reference: the same records ingested from memory by an empty node (then released, so
// that its heap does not weigh on what follows).
let ref: AllmendeNode | undefined = await home('reference', [])
let t0 = performance.now()
await pool(all, 64, (r) => ref!.store.ingest(r.bytes))
const refMs = performance.now() - t0
await ref.stop()
ref = undefined
;(globalThis as { gc?: () => void }).gc?.()

// Catch-up of an empty node from one peer.
const fresh = await home('fresh', [])
await fresh.p2p.dial(full.p2p.addresses()[0]!)
t0 = performance.now()
const catchUp = await fresh.sync!.syncWith(full.p2p.peerId)
const catchUpMs = performance.now() - t0
if (!catchUp.ok || fresh.store.fold.state().recordCount !== TOTAL + 1)
  throw new Error(`catch-up incomplete: ${JSON.stringify(catchUp)}`)
if (rootOf(fresh) !== rootOf(full)) throw new Error('state roots differ after catch-up')

// In sync: one round between the two.
const inSync = await fresh.sync!.syncWith(full.p2p.peerId)
const inSyncBytes = inSync.bytesSent + inSync.bytesReceived
await fresh.stop()

// 1% differs: a node holding 99% of the records (1% missing at random).
const random = prng(20261128)
const missing = new Set<number>()
while (missing.size < Math.round(TOTAL / 100)) missing.add(Math.floor(random() * TOTAL))
const partial = await home(
  'partial',
  all.filter((_, i) => !missing.has(i)),
)
const missingBytes = [...missing].reduce((n, i) => n + all[i]!.bytes.length, 0)
await partial.p2p.dial(full.p2p.addresses()[0]!)
const diff = await partial.sync!.syncWith(full.p2p.peerId)
const diffBytes = diff.bytesSent + diff.bytesReceived
if (!diff.ok || rootOf(partial) !== rootOf(full))
  throw new Error(`1% sync incomplete: ${JSON.stringify(diff)}`)
await partial.stop()
// Reference: the same records ingested from memory by an empty node.

await full.stop()
await rm(dir, { recursive: true, force: true })

const n = TOTAL.toLocaleString('en')
const kb = (b: number) => `${(b / 1024).toFixed(1)} KiB`
console.log('')
console.log('| measure | figure | reference (same run) | ratio |')
console.log('| --- | --- | --- | --- |')
console.log(
  `| catch-up of a new node, ${n} records, from one peer (${catchUp.rounds} rounds) | ${(catchUpMs / 1000).toFixed(1)} s | the same records ingested from memory: ${(refMs / 1000).toFixed(1)} s | ${(catchUpMs / refMs).toFixed(2)} |`,
)
console.log(
  `| bytes exchanged by one sync round, in sync (${n} records each) | ${inSyncBytes} B | target 2,048 B | ${(inSyncBytes / 2048).toFixed(2)} |`,
)
console.log(
  `| bytes exchanged when 1% differs (${missing.size} records missing, ${diff.rounds} rounds) | ${kb(diffBytes)} (reconciliation ${kb(diff.reconcileBytes)}) | the missing records: ${kb(missingBytes)} | ${(diffBytes / missingBytes).toFixed(2)} |`,
)
