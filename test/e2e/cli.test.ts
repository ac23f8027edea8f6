/** The real `allmende` binary: runs a node the way a user starts one, and fails in one clear line. */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initHome } from '../../node/config.js'
import { bin, nodeInitArgs } from '../support/cli.js'
import { postRecord, startDaemon } from '../support/daemon.js'
import { Simulator } from '../support/simulator.js'
import { until } from '../support/until.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'allmende-cli-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('allmende node start', () => {
  it('runs a node until SIGTERM and reports its API', async () => {
    const sim = new Simulator({
      members: ['a', 'b', 'c'].map((name) => ({ name, roles: ['steward', 'voter'], weight: 1 })),
      name: 'cli',
    })
    const home = join(dir, 'node')
    await initHome(home, { genesis: sim.genesis, api: '127.0.0.1:0' })
    const child = spawn(process.execPath, [bin, '--json', 'node', 'start', '--home', home], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const exit = new Promise<number | null>((resolve) => child.once('exit', resolve))
    const ready = await new Promise<{ api: string; peerId: string }>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => reject(new Error('no ready line within 60 s')), 60_000)
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        const line = out.split('\n').find((l) => l.includes('"ready":true'))
        if (line) {
          clearTimeout(timer)
          resolve(JSON.parse(line))
        }
      })
    })
    const status = (await (await fetch(`${ready.api}/status`)).json()) as {
      peerId: string
      federation: string
    }
    expect(status.peerId).toBe(ready.peerId)
    expect(status.federation).toBe(sim.federation.toString())
    child.kill('SIGTERM')
    expect(await exit).toBe(0)
  }, 90_000)

  it('a missing node home is one line and exit 1; an unknown command exit 2', () => {
    const missing = spawnSync(process.execPath, [bin, 'node', 'start', '--home', join(dir, 'nowhere')], {
      encoding: 'utf8',
    })
    expect(missing.status).toBe(1)
    expect(missing.stderr.trim().split('\n')).toHaveLength(1)
    expect(missing.stderr).toMatch(/^allmende: no node here: .*config\.json does not exist/)
    const usage = spawnSync(process.execPath, [bin, 'nope'], { encoding: 'utf8' })
    expect(usage.status).toBe(2)
  })
})

describe('allmende node init', () => {
  it('joins by federation id: fetches the genesis from a bootstrap peer, then catches up by sync', async () => {
    const sim = new Simulator({
      members: ['a', 'b', 'c'].map((name) => ({ name, roles: ['publisher', 'steward', 'voter'], weight: 1 })),
      name: 'join',
      base: Date.now(),
    })
    const first = join(dir, 'first')
    await initHome(first, { genesis: sim.genesis, api: '127.0.0.1:0' })
    const a = await startDaemon(first)
    try {
      const m = sim.manifest('a', 0, { id: 'j1', name: 'joined', version: '1.0.0' })
      expect(await postRecord(a.api, m.bytes)).toBe(201)
      // Only the id and a peer: the genesis comes over the network and is checked against the id.
      const home = join(dir, 'joined')
      const init = spawnSync(
        process.execPath,
        [bin, '--json', ...nodeInitArgs(sim.federation.toString(), home), '--bootstrap', a.addresses[0]!],
        { encoding: 'utf8' },
      )
      expect(init.stderr).toBe('')
      expect(init.status).toBe(0)
      expect(JSON.parse(init.stdout)).toMatchObject({
        federation: sim.federation.toString(),
        genesisFrom: a.peerId,
      })
      expect(
        Buffer.from(await readFile(join(home, 'genesis.cbor'))).equals(Buffer.from(sim.genesis.bytes)),
      ).toBe(true)
      const b = await startDaemon(home)
      try {
        await until(
          async () => (await (await fetch(`${b.api}/records/${m.cid}`)).status) === 200,
          'the manifest by sync',
        )
      } finally {
        await b.kill()
      }
      // An id nobody serves: one line, exit 1.
      const other = new Simulator({
        members: [{ name: 'x', roles: ['steward', 'voter'], weight: 1 }],
        name: 'other',
      })
      const refused = spawnSync(
        process.execPath,
        [
          bin,
          'node',
          'init',
          '--federation',
          other.federation.toString(),
          '--bootstrap',
          a.addresses[0]!,
          '--home',
          join(dir, 'refused'),
        ],
        { encoding: 'utf8' },
      )
      expect(refused.status).toBe(1)
      expect(refused.stderr.trim().split('\n')).toHaveLength(1)
      expect(refused.stderr).toMatch(/no bootstrap peer served the genesis/)
    } finally {
      await a.kill()
    }
  }, 90_000)
})
