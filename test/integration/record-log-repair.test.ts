/**
 * A record log damaged on disk while its node was stopped (SECURITY.md V6:
 * one flipped bit early in records.log used to cut every frame after it).
 * Two real nodes on 127.0.0.1: the second one's log is damaged in several
 * places while it is stopped; on restart it keeps every intact frame, copies
 * the file as found aside, says what it lost, and gets the lost records back
 * from its peer by sync, to the same state root. And a second process cannot
 * open the log of a running node.
 */
import { execFileSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initHome, type NodeConfig } from '../../node/config.js'
import { type AllmendeNode, startNode } from '../../node/index.js'
import { createLogger, silentLogger } from '../../node/log.js'
import { type AnyVerified, stateRoot } from '../../protocol/index.js'
import { submit } from '../support/cluster.js'
import { rulesWith, Simulator } from '../support/simulator.js'
import { until } from '../support/until.js'

const voters = Array.from({ length: 6 }, (_, i) => `v${i}`)
const sim = new Simulator({
  members: [
    { name: 'a', roles: ['publisher', 'steward', 'voter'], weight: 1 },
    ...voters.map((name) => ({ name, roles: ['voter' as const], weight: 1 })),
  ],
  base: Date.now(),
  name: 'log-repair',
  rules: rulesWith({ maxOpenProposalsPerAuthor: 1000 }),
})

/** `n` records: manifests, proposals open for an hour, and votes on them. */
function records(n: number): AnyVerified[] {
  const out: AnyVerified[] = []
  for (let i = 0; out.length < n; i++) {
    const m = sim.manifest('a', i, { id: `repair-${i}`, name: `repair-model-${i}`, version: '1.0.0' })
    const p = sim.proposal('a', i + 1, {
      closesAt: 3_600_000,
      action: { type: 'ratify-model', manifest: m.cid },
      basis: sim.federation,
    })
    out.push(m, p)
    for (const v of ['a', ...voters]) out.push(sim.vote(v, i + 2, { proposal: p.cid, choice: 'yes' }))
  }
  return out.slice(0, n)
}

const RECORDS = 120
const SYNC = { intervalMs: 0, frameTimeoutMs: 2_000, sessionTimeoutMs: 30_000, banMs: 60_000 }
const rootOf = (n: AllmendeNode) => stateRoot(n.store.fold.state()).toString()
const recordCount = (n: AllmendeNode) => n.store.fold.state().recordCount

/** Start offsets and sizes of the frames of a whole record log. */
function frames(log: Buffer): { start: number; size: number }[] {
  const out: { start: number; size: number }[] = []
  for (let at = 8; at < log.length; at += 8 + log.readUInt32BE(at)) {
    out.push({ start: at, size: 8 + log.readUInt32BE(at) })
  }
  return out
}

/** A node whose structured log lines are kept, parsed, in `events`. */
interface Watched {
  node: AllmendeNode
  events: Record<string, unknown>[]
}

async function start(home: string, config: NodeConfig): Promise<Watched> {
  const events: Record<string, unknown>[] = []
  const log = createLogger({
    level: 'info',
    write: (line) => {
      events.push(JSON.parse(line) as Record<string, unknown>)
    },
  })
  const node = await startNode({ home, config, genesis: sim.genesis, log, helia: false, sync: SYNC })
  return { node, events }
}

describe('a node whose record log was damaged while it was stopped', () => {
  let root: string
  let a: AllmendeNode
  let b: Watched | undefined
  let bHome: string
  let bConfig: NodeConfig

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'allmende-log-repair-'))
    const aHome = join(root, 'a')
    const aConfig = await initHome(aHome, {
      genesis: sim.genesis,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      api: '127.0.0.1:0',
      logLevel: 'warn',
    })
    a = await startNode({
      home: aHome,
      config: aConfig,
      genesis: sim.genesis,
      log: silentLogger,
      helia: false,
      sync: SYNC,
    })
    bHome = join(root, 'b')
    bConfig = await initHome(bHome, {
      genesis: sim.genesis,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [a.p2p.addresses()[0]!],
      api: '127.0.0.1:0',
      logLevel: 'warn',
    })
    b = await start(bHome, bConfig)
  }, 60_000)

  afterAll(async () => {
    await b?.node.stop()
    await a?.stop()
    await rm(root, { recursive: true, force: true })
  })

  it('keeps every intact frame, copies the file aside, reports the loss, and syncs the lost records back', async () => {
    const first = b!.node
    await until(
      () => a.p2p.subscribers().length === 1 && first.p2p.subscribers().length === 1,
      'subscriptions',
    )
    for (const r of records(RECORDS)) expect((await submit(a, r)).status).toBe(201)
    await until(() => recordCount(first) === RECORDS + 1, 'the second node to hold every record', 30_000)
    const peerRoot = rootOf(a)
    expect(rootOf(first)).toBe(peerRoot)
    await first.stop()
    b = undefined

    // Damage in five places, as a failing disk would: a flipped payload bit early on, a flipped
    // CRC bit, a frame header overwritten, a flipped length bit (restored: nothing lost), and
    // another flipped payload bit.
    const path = join(bHome, 'records.log')
    const log = await readFile(path)
    const at = frames(log)
    expect(at).toHaveLength(RECORDS)
    const middle = (i: number) => at[i]!.start + 8 + Math.floor((at[i]!.size - 8) / 2)
    log[middle(1)] = log[middle(1)]! ^ 0x01
    log[at[5]!.start + 6] = log[at[5]!.start + 6]! ^ 0x20
    log.fill(0xee, at[20]!.start, at[20]!.start + 8)
    log[at[30]!.start + 2] = log[at[30]!.start + 2]! ^ 0x04
    log[middle(50)] = log[middle(50)]! ^ 0x80
    await writeFile(path, log)

    b = await start(bHome, bConfig)
    const repaired = b.events.find((e) => e.event === 'record-log-repaired')
    expect(repaired).toMatchObject({
      level: 'error',
      framesLost: 3,
      bytesSkipped: at[20]!.size,
      tailBytes: 0,
      recordsKept: RECORDS - 4,
      damagedCopy: `${path}.damaged-1`,
    })
    expect(String(repaired?.action)).toContain('fetched back from peers by the next sync')
    expect((await readFile(`${path}.damaged-1`)).equals(log)).toBe(true)
    // What the store rebuilt from its own log: every record but the four lost.
    expect(b.events.find((e) => e.event === 'record-log-replayed')).toMatchObject({ records: RECORDS - 4 })

    // The four come back from the peer by sync, and the two nodes agree again.
    const node = b.node
    await until(() => recordCount(node) === RECORDS + 1, 'the lost records to come back by sync', 30_000)
    expect(rootOf(node)).toBe(peerRoot)
    const taken = node
      .sync!.reports()
      .concat(a.sync!.reports())
      .reduce((sum, r) => sum + (r.ok ? r.taken : 0), 0)
    expect(taken).toBeGreaterThanOrEqual(4)
  }, 120_000)

  it('starts clean the next time, with every record and the same state root', async () => {
    const peerRoot = rootOf(a)
    await b!.node.stop()
    b = await start(bHome, bConfig)
    expect(b.events.filter((e) => String(e.event).startsWith('record-log-') && e.level !== 'info')).toEqual(
      [],
    )
    expect(b.events.find((e) => e.event === 'record-log-replayed')).toMatchObject({ records: RECORDS })
    expect(recordCount(b.node)).toBe(RECORDS + 1)
    expect(rootOf(b.node)).toBe(peerRoot)
  }, 60_000)

  it('a second process cannot open the log of a running node: record-log-locked, naming its pid', () => {
    const script = fileURLToPath(new URL('../support/record-log-writer.ts', import.meta.url))
    const out = execFileSync(
      process.execPath,
      ['--import', 'tsx', script, '--probe', join(bHome, 'records.log')],
      { cwd: fileURLToPath(new URL('../..', import.meta.url)), encoding: 'utf8', timeout: 60_000 },
    )
    const result = JSON.parse(out.trim()) as { ok: boolean; code?: string; message?: string }
    expect(result).toMatchObject({ ok: false, code: 'record-log-locked' })
    expect(result.message).toContain(`process ${process.pid}`)
  }, 60_000)
})
