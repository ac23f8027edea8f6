/**
 * The background scrub on real nodes (node/weights/scrub.ts; docs/adr/0031): three nodes on
 * 127.0.0.1 on a fake clock, all holding a model a manifest names; b has a's trustless gateway
 * configured, c has none (it asks the holders' announced gateways, and its peers over bitswap). A
 * leaf block file of b and one of c are overwritten on disk; once the scrub interval has run on the
 * fake clock, each scrubber finds its block, deletes it, marks the weights incomplete (not
 * announceable), fetches the block again from a peer, checks the weights against the manifest and
 * marks them verified (announceable) again. The log says so, and the Prometheus series count the damaged
 * block and the repair.
 *
 * And as the other nodes see it: c holds a ratified version that three stewards hold too, and is
 * listed as a holder by their `GET /replication?model=N@V`; it reaches them only through d, which
 * holds no weights, so once its block is damaged it has no source to repair from. Its withdrawal
 * reaches the stewards by gossip and they stop listing it; its repair fails; once it is connected
 * to a holder, the next repair fetches the block over bitswap and the stewards list c again.
 */
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FsBlockstore } from 'blockstore-fs'
import { describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { adminToken, initHome, type NodeConfig } from '../../node/config.js'
import { type AllmendeNode, startNode } from '../../node/index.js'
import { createLogger } from '../../node/log.js'
import { importDirectory } from '../../node/weights/directory.js'
import { REPAIR_RETRY_MS, SCRUB_INTERVAL_MS } from '../../node/weights/scrub.js'
import { verifyDag } from '../../node/weights/verify.js'
import { submit } from '../support/cluster.js'
import type { Simulator } from '../support/simulator.js'
import {
  type FakeClock,
  fakeClock,
  holdWeights,
  hourAligned,
  importWeights,
  type LogLine,
  ratification,
  SHORT_RULES,
  startOnFakeClock,
  stewardFederation,
  untilFinalPassed,
  votesBy,
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

/** A node of the federation that is no steward, on the shared fake clock, logging into `lines`. */
async function plainNode(
  name: string,
  parts: { sim: Simulator; clock: FakeClock; lines: LogLine[] },
  config: Partial<NodeConfig> & { bootstrap: string[] },
  helia: boolean,
): Promise<AllmendeNode> {
  // Beside the first test's homes of the same names.
  const home = join(root(), `listed-${name}`)
  const initial = await initHome(home, {
    genesis: parts.sim.genesis,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    api: '127.0.0.1:0',
    importRoots: [tmpdir()],
    ...config,
  })
  return startNode({
    home,
    config: initial,
    genesis: parts.sim.genesis,
    clock: parts.clock.fn,
    log: createLogger({ level: 'info', name, write: (l) => parts.lines.push(JSON.parse(l) as LogLine) }),
    helia,
    sync: { intervalMs: 1_000 },
    scrubIdleMs: 100,
  })
}

/** Sets a live config key on node `n` through its admin API. */
async function setLive(n: AllmendeNode, key: string, value: unknown): Promise<void> {
  const res = await fetch(`${n.apiUrl}/admin/config/${key}`, {
    method: 'PUT',
    headers: {
      authorization: `Bearer ${(await adminToken(n.home)).trim()}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ value }),
  })
  if (res.status !== 200) throw new Error(`${key} refused: ${res.status} ${await res.text()}`)
}

/** Whether `holder` is among the holders `n`'s `GET /replication?model=` lists for `model`. */
async function lists(n: AllmendeNode, model: string, holder: AllmendeNode): Promise<boolean> {
  const res = await fetch(`${n.apiUrl}/replication?model=${encodeURIComponent(model)}`)
  if (res.status !== 200) return false
  const report = (await res.json()) as { versions: { holders: { peer: string }[] }[] }
  return report.versions.some((v) => v.holders.some((h) => h.peer === holder.p2p.peerId))
}

async function untilListedBy(
  nodes: readonly AllmendeNode[],
  model: string,
  holder: AllmendeNode,
  listed: boolean,
) {
  await until(
    async () => (await Promise.all(nodes.map((n) => lists(n, model, holder)))).every((l) => l === listed),
    listed ? 'c listed as a holder by every steward' : 'c no longer listed by any steward',
    60_000,
  )
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

  it('withdraws a damaged version from the other nodes’ replication reports until it is repaired', async () => {
    const modelDir = join(root(), 'model-listed')
    await generateModel(modelDir, { seed: 29 })
    const weights = await importDirectory(modelDir)
    const model = 'listed@1.0.0'
    const { sim, clock, net, at } = await startOnFakeClock(
      { name: 'scrub-listed', keyPrefix: 'allmende-scrub-listed-test:' },
      { root: root(), tag: 'scrub-listed', helia: true, names: ['s1', 's2', 's3'] },
    )
    const lines: LogLine[] = []
    const event = (e: string) => lines.filter((l) => l.event === e && l.node === 'c')
    const others: AllmendeNode[] = []
    try {
      at(100)
      for (const n of net.nodes) {
        // No gateway in their holding announcements, whatever the default: c's only source will
        // be the bitswap peer it is given.
        await setLive(n, 'announceGateways', [])
        expect((await importWeights(n, modelDir)).root).toBe(weights.root.toString())
      }
      const manifest = sim.manifest('s1', 100, { id: 'listed', name: 'listed', version: '1.0.0', weights })
      const closesAt = 2_700
      const p = ratification(sim, 's1', 101, manifest.cid, closesAt)
      await net.submitAll([manifest, p, ...votesBy(sim, ['s1', 's2', 's3'], 110, p.cid, 'yes')])
      at(closesAt + SHORT_RULES.sealGraceMs)
      await untilFinalPassed(net.nodes, p.cid)
      const s1 = net.nodes[0]!

      // d holds no weights (no bitswap at all); c reaches the stewards only through it, and has no
      // gateway configured, and the stewards announce none: no repair source. c's
      // scrub is off until its block is damaged, so its first pass finds the damage.
      const d = await plainNode('d', { sim, clock, lines }, { bootstrap: [s1.p2p.addresses()[0]!] }, false)
      others.push(d)
      const c = await plainNode(
        'c',
        { sim, clock, lines },
        { bootstrap: [d.p2p.addresses()[0]!], scrubBytesPerSecond: 0 },
        true,
      )
      others.push(c)
      await until(() => c.store.fold.has(p.cid) && c.store.fold.has(manifest.cid), 'the ratification on c')
      await holdWeights([c], modelDir)
      expect(await c.weights!.pin(weights.root)).toBe(true)
      await c.held!.verified(weights.root, clock.now())
      await untilListedBy(net.nodes, model, c, true)

      const path = await blockFileOfSize(join(c.home, 'blocks'), 1024 * 1024)
      const damaged = await readFile(path)
      damaged[4_321]! ^= 0x5a
      await writeFile(path, damaged)
      await setLive(c, 'scrubBytesPerSecond', 32 * 1024 * 1024)

      // Found, withdrawn: the stewards learn it by gossip (through d) and stop listing c. With no
      // source, the repair fails and c stays unlisted.
      await until(() => event('weights-scrub-damaged').length > 0, 'the damage found on c', 60_000)
      await untilListedBy(net.nodes, model, c, false)
      expect(event('holding-withdrawn')).toContainEqual(
        expect.objectContaining({ weights: weights.root.toString() }),
      )
      await until(
        () => event('weights-scrub-repair-failed').length > 0,
        'the first repair failing on c',
        90_000,
      )
      expect(event('weights-scrub-repaired')).toEqual([])
      expect(c.held!.announceable(weights.root)).toBe(false)
      for (const n of net.nodes) expect(await lists(n, model, c)).toBe(false)

      // A source: c connects to s1, a holder; the repair tried again after its retry time fetches
      // the block over bitswap, the weights pass the manifest's check, and c is listed again.
      await c.p2p.dial(s1.p2p.addresses()[0]!)
      clock.set(clock.now() + REPAIR_RETRY_MS + 1)
      await until(() => event('weights-scrub-repaired').length > 0, 'the repair on c', 90_000)
      expect(event('weights-scrub-repaired')[0]).toMatchObject({
        root: weights.root.toString(),
        fromSources: 0,
        checked: true,
      })
      expect(c.held!.announceable(weights.root)).toBe(true)
      await untilListedBy(net.nodes, model, c, true)
      const store = new FsBlockstore(join(c.home, 'blocks'))
      await store.open()
      try {
        const check = await verifyDag(store, manifest.record.body, { maxModelBytes: weights.size })
        expect(check.problems).toEqual([])
      } finally {
        await store.close()
      }
    } finally {
      await Promise.allSettled(others.map((n) => n.stop()))
      await net.stop()
    }
  }, 240_000)
})
