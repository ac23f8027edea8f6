/**
 * The background scrub on real nodes (node/weights/scrub.ts; docs/adr/0031): two nodes on
 * 127.0.0.1 on a fake clock, both holding a model a manifest names; the second fetches from the
 * first one's trustless gateway. A leaf block file of the second node is overwritten on disk; once
 * the scrub interval has run on the fake clock, its scrubber finds the block, deletes it, marks
 * the weights incomplete (not announceable), fetches the block again from the first node, checks
 * the weights against the manifest and marks them verified (announceable) again. The log says so,
 * and the Prometheus series count the damaged block and the repair.
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
      for (const n of [a, b]) expect((await importWeights(n, modelDir)).root).toBe(weights.root.toString())
      clock.set(sim.base + 100)
      const manifest = sim.manifest('s1', 100, {
        id: 'scrubbed',
        name: 'scrubbed',
        version: '1.0.0',
        weights,
      })
      expect((await submit(a, manifest)).status).toBe(201)
      await until(() => b.store.fold.has(manifest.cid), 'the manifest on b')
      // Held whole and checked (what a mirror's fetch or a steward's check records).
      await b.held!.verified(weights.root, clock.now())
      const complete: boolean[] = []
      b.held!.onChange((r, entry) => {
        if (r.equals(weights.root) && entry) complete.push(entry.complete)
      })

      // A 1 MiB leaf of b's copy, overwritten with other bytes of the same length.
      const leafFile = await blockFileOfSize(join(b.home, 'blocks'), 1024 * 1024)
      const original = await readFile(leafFile)
      const damaged = Buffer.from(original)
      damaged[12_345]! ^= 0x5a
      await writeFile(leafFile, damaged)

      // Whether or not b scrubbed the weights before, they are due again once the interval has run.
      clock.set(clock.now() + SCRUB_INTERVAL_MS + 1)
      const event = (name: string) => lines.filter((l) => l.event === name && l.node === 'b')
      await until(
        () => event('weights-scrub-repaired').length > 0 || event('weights-scrub-repair-failed').length > 0,
        'the repair on b',
        60_000,
      )
      expect(event('weights-scrub-repair-failed')).toEqual([])
      expect(event('weights-scrub-damaged')).toEqual([
        expect.objectContaining({ root: weights.root.toString(), corrupt: 1, missing: 0 }),
      ])
      expect(event('weights-scrub-repaired')[0]).toMatchObject({
        root: weights.root.toString(),
        blocks: 1,
        fromSources: 1,
        checked: true,
      })

      // Incomplete from the damage until the repair's check passed; announceable again now.
      expect(complete.slice(complete.indexOf(false))).toEqual([false, true])
      expect(b.held!.announceable(weights.root)).toBe(true)
      expect(b.held!.get(weights.root)?.scrubbedAt).toBe(clock.now())
      expect(await readFile(leafFile)).toEqual(original)
      const store = new FsBlockstore(join(b.home, 'blocks'))
      await store.open()
      try {
        const check = await verifyDag(store, manifest.record.body, { maxModelBytes: weights.size })
        expect(check.problems).toEqual([])
      } finally {
        await store.close()
      }
      expect(await b.pins!.hasPin(weights.root)).toBe(true)

      const metrics = await (await fetch(`${b.apiUrl}/metrics`)).text()
      expect(metrics).toMatch(/allmende_scrub_damaged_blocks_total\{kind="corrupt"\} 1/)
      expect(metrics).toMatch(/allmende_scrub_repairs_total\{result="repaired"\} 1/)
      expect(metrics).toMatch(/allmende_scrub_bytes_total [1-9]/)
    } finally {
      await Promise.allSettled(nodes.map((n) => n.stop()))
    }
  }, 120_000)
})
