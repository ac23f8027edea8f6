/**
 * Durability with real processes: a node killed with SIGKILL in the middle of
 * a burst of API submissions restarts with every record it acknowledged.
 * (SIGKILL leaves the page cache intact, so this shows acknowledge-after-
 * write ordering; fsync before acknowledging is the record log's contract,
 * tested there.) Also: a log with a torn tail starts, drops only the tail and
 * says so; a graceful restart gives the identical state root.
 */
import { appendFile, mkdtemp, readFile, rm, stat, truncate } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initHome } from '../../node/config.js'
import type { AnyVerified } from '../../protocol/index.js'
import { burstThenKill, type Daemon, holds, postRecord, startDaemon } from '../support/daemon.js'
import { Simulator } from '../support/simulator.js'

const sim = new Simulator({
  members: [
    { name: 'a', roles: ['publisher', 'steward', 'voter'], weight: 1 },
    { name: 'b', roles: ['steward', 'voter'], weight: 1 },
    { name: 'c', roles: ['steward', 'voter'], weight: 1 },
  ],
  base: Date.now(),
  name: 'crash',
})

let root: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'allmende-crash-'))
})
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

async function newHome(name: string): Promise<string> {
  const home = join(root, name)
  await initHome(home, {
    genesis: sim.genesis,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    api: '127.0.0.1:0',
    logLevel: 'info',
  })
  return home
}

const post = (api: string, r: AnyVerified) => postRecord(api, r.bytes)
const held = (api: string, r: AnyVerified) => holds(api, r.cid)

// Proposals are cheap distinct records: a's own ingest limit is maxOpenProposalsPerAuthor (100),
// so each round uses votes on one proposal by many... simpler: manifests, which have no ingest limit.
let serial = 0
function records(n: number): AnyVerified[] {
  return Array.from({ length: n }, () => {
    serial++
    return sim.manifest('a', serial, { id: `m${serial}`, name: 'burst', version: `1.0.${serial}` })
  })
}

describe('a node killed during a burst keeps every acknowledged record', () => {
  it('20 times SIGKILL at a random point of a burst', async () => {
    const home = await newHome('kill')
    const acked: AnyVerified[] = []
    // Each start checks everything acknowledged before the previous kill.
    for (let round = 0; round <= 20; round++) {
      const d = await startDaemon(home)
      try {
        for (const r of acked)
          expect(await held(d.api, r), `after kill ${round}: acknowledged ${r.cid} lost`).toBe(true)
      } catch (e) {
        await d.kill('SIGKILL')
        throw e
      }
      if (round === 20) {
        expect(await d.kill('SIGTERM')).toBe(0)
        break
      }
      // The kill comes after a random number of acknowledgements, while other submissions are in flight.
      acked.push(...(await burstThenKill(d, records(120), 3 + Math.floor(Math.random() * 80))))
    }
    expect(acked.length).toBeGreaterThan(20)
  }, 600_000)
})

describe('restart and recovery', () => {
  let d: Daemon | undefined
  afterAll(async () => {
    await d?.kill('SIGKILL')
  })

  it('a graceful restart gives the identical state root', async () => {
    const home = await newHome('restart')
    d = await startDaemon(home)
    for (const r of records(30)) expect(await post(d.api, r)).toBe(201)
    const before = (await (await fetch(`${d.api}/state`)).json()) as { stateRoot: string; records: number }
    expect(await d.kill('SIGTERM')).toBe(0)
    d = await startDaemon(home)
    const after = (await (await fetch(`${d.api}/state`)).json()) as { stateRoot: string; records: number }
    expect(after).toEqual(before)
    await d.kill('SIGTERM')
  }, 120_000)

  it('a torn tail is dropped, said in the log, and nothing else is lost', async () => {
    const home = await newHome('torn')
    d = await startDaemon(home)
    const kept = records(10)
    for (const r of kept) expect(await post(d.api, r)).toBe(201)
    await d.kill('SIGTERM')
    const log = join(home, 'records.log')
    const size = (await stat(log)).size
    // Half of a frame at the end, as a crash during a write would leave it.
    const tail = (await readFile(log)).subarray(size - 40)
    await appendFile(log, tail.subarray(0, 25))
    d = await startDaemon(home)
    expect(d.stderr()).toContain('record-log-truncated')
    for (const r of kept) expect(await held(d.api, r)).toBe(true)
    await d.kill('SIGTERM')
    // A cut inside the last record: that record goes, the others stay.
    await truncate(log, (await stat(log)).size - 7)
    d = await startDaemon(home)
    expect(d.stderr()).toContain('record-log-truncated')
    for (const r of kept.slice(0, -1)) expect(await held(d.api, r)).toBe(true)
    expect(await held(d.api, kept.at(-1)!)).toBe(false)
    await d.kill('SIGTERM')
  }, 120_000)
})
