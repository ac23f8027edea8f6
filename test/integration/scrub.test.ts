/**
 * The background scrub on real nodes (node/weights/scrub.ts; docs/adr/0031): three nodes on
 * 127.0.0.1 on a fake clock, all holding a model a manifest names; b has a's trustless gateway
 * configured, c has none (it asks the holders' announced gateways, and its peers over bitswap). A
 * leaf block file of b and one of c are overwritten on disk; once the scrub interval has run on the
 * fake clock, each scrubber finds its block, deletes it, marks the weights incomplete (not
 * announceable), fetches the block again from a peer, checks the weights against the manifest and
 * marks them verified (announceable) again. The log says so, and the Prometheus series count the damaged
 * block and the repair.
 */
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FsBlockstore } from 'blockstore-fs'
import { describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { initHome } from '../../node/config.js'
import { type AllmendeNode, startNode } from '../../node/index.js'
import { createLogger } from '../../node/log.js'
import { importDirectory } from '../../node/weights/directory.js'
import { SCRUB_INTERVAL_MS } from '../../node/weights/scrub.js'
import { verifyDag } from '../../node/weights/verify.js'
import { submit } from '../support/cluster.js'
import {
  fakeClock,
  hourAligned,
  importWeights,
  type LogLine,
  stewardFederation,
} from '../support/stewards.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { until } from '../support/until.js'

const root = tempDirForFile('allmende-scrub-')

/** The first block file of exactly `size` bytes under a node's blocks directory. */
async function blockFileOfSize(blocksDir: string, size: number): Promise<string> {
  for (const shard of await readdir(blocksDir)) {
    for (const name of await readdir(join(blocksDir, shard)).catch(() => [] as string[])) {
      const path = join(blocksDir, shard, name)
      if (name.endsWith('.data') && (await stat(path)).size === size) return path
    }
  }
  throw new Error(`no block file of ${size} bytes in ${blocksDir}`)
}

describe('the scrubber', () => {
  it('finds a damaged held block and repairs it from a peer; the weights are not announceable meanwhile', async () => {
    const modelDir = join(root(), 'model')
    await generateModel(modelDir, { seed: 23 })
    const weights = await importDirectory(modelDir)

    const sim = stewardFederation({ name: 'scrub', keyPrefix: 'allmende-scrub-test:', base: hourAligned() })
    const clock = fakeClock(sim.base)
    const lines: LogLine[] = []
    const nodes: AllmendeNode[] = []
    const start = async (name: string, gateways: string[], bootstrap: string[]) => {
      const home = join(root(), name)
      const config = await initHome(home, {
        genesis: sim.genesis,
        listen: ['/ip4/127.0.0.1/tcp/0'],
        bootstrap,
        api: '127.0.0.1:0',
        importRoots: [tmpdir()],
        gateways,
      })
      const node = await startNode({
        home,
        config,
        genesis: sim.genesis,
        clock: clock.fn,
        log: createLogger({ level: 'info', name, write: (l) => lines.push(JSON.parse(l) as LogLine) }),
        sync: { intervalMs: 1_000 },
        scrubIdleMs: 100,
      })
      nodes.push(node)
      return node
    }
    try {
      const a = await start('a', [], [])
      const b = await start('b', [a.apiUrl], [a.p2p.addresses()[0]!])
      const c = await start('c', [], [a.p2p.addresses()[0]!])
      for (const n of [a, b, c]) expect((await importWeights(n, modelDir)).root).toBe(weights.root.toString())
      clock.set(sim.base + 100)
      const manifest = sim.manifest('s1', 100, {
        id: 'scrubbed',
        name: 'scrubbed',
        version: '1.0.0',
        weights,
      })
      expect((await submit(a, manifest)).status).toBe(201)
      await until(
        () => b.store.fold.has(manifest.cid) && c.store.fold.has(manifest.cid),
        'the manifest on b and c',
      )
      const complete = new Map<AllmendeNode, boolean[]>()
      const originals = new Map<AllmendeNode, { path: string; bytes: Buffer }>()
      for (const n of [b, c]) {
        // Held whole and checked (what a mirror's fetch or a steward's check records).
        await n.held!.verified(weights.root, clock.now())
        const seen: boolean[] = []
        complete.set(n, seen)
        n.held!.onChange((r, entry) => {
          if (r.equals(weights.root) && entry) seen.push(entry.complete)
        })
        // A 1 MiB leaf of its copy, overwritten with other bytes of the same length.
        const path = await blockFileOfSize(join(n.home, 'blocks'), 1024 * 1024)
        const bytes = await readFile(path)
        originals.set(n, { path, bytes })
        const damaged = Buffer.from(bytes)
        damaged[12_345]! ^= 0x5a
        await writeFile(path, damaged)
      }

      // A scrub may have found the damage already (never scrubbed, they were due at once); if it
      // passed over them before the damage, they are due again once the interval has run.
      const damagedAt = clock.now()
      clock.set(damagedAt + SCRUB_INTERVAL_MS + 1)
      for (const [name, n] of [
        ['b', b],
        ['c', c],
      ] as const) {
        const event = (e: string) => lines.filter((l) => l.event === e && l.node === name)
        await until(
          () => event('weights-scrub-repaired').length > 0 || event('weights-scrub-repair-failed').length > 0,
          `the repair on ${name}`,
          90_000,
        )
        expect(event('weights-scrub-repair-failed')).toEqual([])
        expect(event('weights-scrub-damaged')).toEqual([
          expect.objectContaining({ root: weights.root.toString(), corrupt: 1, missing: 0 }),
        ])
        const repaired = event('weights-scrub-repaired')[0]!
        expect(repaired).toMatchObject({ root: weights.root.toString(), blocks: 1, checked: true })
        // b took the block from a's gateway, its configured source. c has none configured: it took
        // it from a holder's announced gateway (b's, once b announces again) or over bitswap.
        if (name === 'b') expect(repaired).toMatchObject({ fromSources: 1, fetched: 0 })
        else expect(Number(repaired.fromSources) + Number(repaired.fetched)).toBe(1)

        // Incomplete from the damage until the repair's check passed; announceable again now.
        const seen = complete.get(n)!
        expect(seen.slice(seen.indexOf(false))).toEqual([false, true])
        expect(n.held!.announceable(weights.root)).toBe(true)
        expect(n.held!.get(weights.root)?.scrubbedAt).toBeGreaterThanOrEqual(damagedAt)
        const { path, bytes } = originals.get(n)!
        expect((await readFile(path)).equals(bytes)).toBe(true)
        const store = new FsBlockstore(join(n.home, 'blocks'))
        await store.open()
        try {
          const check = await verifyDag(store, manifest.record.body, { maxModelBytes: weights.size })
          expect(check.problems).toEqual([])
        } finally {
          await store.close()
        }
        expect(await n.pins!.hasPin(weights.root)).toBe(true)

        const metrics = await (await fetch(`${n.apiUrl}/metrics`)).text()
        expect(metrics).toMatch(/allmende_scrub_damaged_blocks_total\{kind="corrupt"\} 1/)
        expect(metrics).toMatch(/allmende_scrub_repairs_total\{result="repaired"\} 1/)
        expect(metrics).toMatch(/allmende_scrub_bytes_total [1-9]/)
      }
    } finally {
      await Promise.allSettled(nodes.map((n) => n.stop()))
    }
  }, 120_000)
})
