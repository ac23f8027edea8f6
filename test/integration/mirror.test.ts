/**
 * Mirrors (docs/adr/0028-mirrors-and-withholding.md): a federation of three steward nodes and two
 * non-steward nodes with `mirror: ratified` on 127.0.0.1, on one fake clock. After a ratification
 * both mirrors fetch the weights from a steward's gateway, verify them, pin them, record them as
 * held and serve them: a CAR from a mirror's gateway unpacked by the `ipfs-car` command gives the
 * model's bytes. A version made conflicted is withheld (451) on every gateway; a revoked one is
 * served until `unpinRevokedAfterMs` has run out, then unpinned and forgotten at the mirrors.
 *
 * One mirror reads `mirror` from its config.json; the other is switched on through the admin
 * route, which persists the setting. Every steward's replication report lists the mirrors as
 * holders from their own announcements, and drops them once they unpinned. A third node that
 * mirrors nothing pins a version by hand (`node pin`) and lets it go (`node unpin`).
 */
import { execFile } from 'node:child_process'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { FsBlockstore } from 'blockstore-fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { adminToken, initHome } from '../../node/config.js'
import { type AllmendeNode, startNode } from '../../node/index.js'
import { createLogger } from '../../node/log.js'
import type { DirectoryImport } from '../../node/weights/directory.js'
import { importDirectory } from '../../node/weights/directory.js'
import { verifyDag } from '../../node/weights/verify.js'
import type { Verified } from '../../protocol/index.js'
import {
  importWeights,
  type LogLine,
  ratification,
  SHORT_RULES,
  startOnFakeClock,
  viewOf,
  votesBy,
} from '../support/stewards.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { until } from '../support/until.js'

const KEY_PREFIX = 'allmende-mirror-test:'
const DELAY_MS = 20_000
const { sealGraceMs } = SHORT_RULES
const STEWARDS = ['s1', 's2', 's3', 's4', 's5']
const VOTERS = [...STEWARDS, 'v1']

const root = tempDirForFile('allmende-mirror-')
const run = promisify(execFile)

/** Whether `n` holds `model` whole: its pin, and every block checked against the manifest. */
async function holds(
  n: AllmendeNode,
  model: DirectoryImport,
): Promise<{ pinned: boolean; problems: string[] }> {
  const pinned = (await n.pins?.hasPin(model.root)) ?? false
  const store = new FsBlockstore(join(n.home, 'blocks'))
  await store.open()
  try {
    const check = await verifyDag(
      store,
      { weights: model.root, files: [...model.files], size: model.size },
      { maxModelBytes: model.size },
    )
    return { pinned, problems: check.problems.map((p) => p.code) }
  } finally {
    await store.close()
  }
}

async function admin(n: AllmendeNode, method: string, path: string, body?: unknown) {
  const res = await fetch(`${n.apiUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${(await adminToken(n.home)).trim()}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

/** The peer ids `n`'s replication report lists as holding `model` now. */
async function holdersAt(n: AllmendeNode, model: string): Promise<string[]> {
  const res = await fetch(`${n.apiUrl}/replication?model=${encodeURIComponent(model)}`)
  const body = (await res.json()) as { versions: { holders: { peer: string }[] }[] }
  return body.versions[0]!.holders.map((h) => h.peer).sort()
}

const peersOf = (nodes: AllmendeNode[]) => nodes.map((n) => n.p2p.peerId.toString()).sort()

const status = (n: AllmendeNode, model: string) => n.store.fold.state().models.get(model)?.status

/**
 * Three stewards holding both models, two mirrors (m1 mirrors from its config.json, m2 is
 * switched on through the admin route, which persists it) and p1, which mirrors nothing.
 * `cleanup` gets what stops each part as soon as it runs.
 */
async function startWorld(lines: LogLine[], started: AllmendeNode[], cleanup: (() => Promise<void>)[]) {
  const mainDir = join(root(), 'main')
  const twinDir = join(root(), 'twin')
  await generateModel(mainDir, { seed: 71, layers: 1, vocab: 256 })
  await generateModel(twinDir, { seed: 72, layers: 1, vocab: 256 })
  const main = await importDirectory(mainDir)
  const twin = await importDirectory(twinDir)
  const fed = await startOnFakeClock(
    { name: 'mirror', keyPrefix: KEY_PREFIX, stewards: STEWARDS, rules: { sealThreshold: 2 } },
    {
      root: root(),
      tag: 'mirror',
      names: ['s1', 's2', 's3'],
      helia: true,
      unpinRevokedAfterMs: DELAY_MS,
      retentionTickMs: 100,
    },
  )
  const { sim, clock, net } = fed
  cleanup.push(() => net.stop())
  cleanup.push(async () => void (await Promise.allSettled(started.map((m) => m.stop()))))
  for (const n of net.nodes) {
    expect((await importWeights(n, mainDir)).root).toBe(main.root.toString())
    expect((await importWeights(n, twinDir)).root).toBe(twin.root.toString())
  }
  // m1 and m2 mirror; p1 mirrors nothing and pins one version by hand (`node pin`).
  for (const name of ['m1', 'm2', 'p1']) {
    const home = join(root(), `mirror-${name}`)
    await initHome(home, {
      genesis: sim.genesis,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [net.nodes[0]!.p2p.addresses()[0]!],
      api: '127.0.0.1:0',
      gateways: [net.nodes[0]!.apiUrl],
      unpinRevokedAfterMs: DELAY_MS,
    })
    // m1 mirrors from its config file; m2 is switched on while it runs (below).
    if (name === 'm1') {
      const path = join(home, 'config.json')
      const config = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>
      await writeFile(path, JSON.stringify({ ...config, mirror: 'ratified' }))
    }
    started.push(
      await startNode({
        home,
        genesis: sim.genesis,
        clock: clock.fn,
        helia: true,
        sync: { intervalMs: 1_000 },
        retentionTickMs: 100,
        mirrorTickMs: 100,
        mirrorRetryMs: 0,
        log: createLogger({
          level: 'info',
          name,
          write: (line) => lines.push(JSON.parse(line) as LogLine),
        }),
      }),
    )
  }
  const [m1, m2, pinner] = started as [AllmendeNode, AllmendeNode, AllmendeNode]
  const turnedOn = await admin(m2, 'PUT', '/admin/config/mirror', { value: 'ratified' })
  expect(turnedOn).toMatchObject({
    status: 200,
    body: { key: 'mirror', value: 'ratified', previous: null },
  })
  expect(JSON.parse(await readFile(join(m2.home, 'config.json'), 'utf8')).mirror).toBe('ratified')
  return { ...fed, main, twin, mainDir, m1, m2, pinner, mirrors: [m1, m2], everyNode: [...net.nodes, m1, m2] }
}

// The phases run in order on one federation, each on what the one before left.
describe('two non-steward nodes mirroring ratified versions, and one pinning by hand', () => {
  const lines: LogLine[] = []
  const started: AllmendeNode[] = []
  const cleanup: (() => Promise<void>)[] = []
  let w: Awaited<ReturnType<typeof startWorld>>
  let mMain: Verified<'manifest'>
  let proposals: Verified<'proposal'>[]
  const mirrorPeers = () => peersOf(w.mirrors)

  beforeAll(async () => {
    w = await startWorld(lines, started, cleanup)
  }, 60_000)
  afterAll(async () => {
    for (const stop of cleanup.reverse()) await stop().catch(() => {})
  })

  it('while a ratification is open, a steward keeps the weights it must check', async () => {
    const { sim, net, at, main, twin } = w
    // open/base@1.0.0, and open/twin@1.0.0 twice (two manifests of the same weights), all closing together.
    at(100)
    mMain = sim.manifest('s1', 100, {
      id: 'main',
      name: 'open/base',
      version: '1.0.0',
      weights: main,
    })
    const twinManifest = (id: string) =>
      sim.manifest('s1', 100, { id, name: 'open/twin', version: '1.0.0', description: id, weights: twin })
    const [mTwin1, mTwin2] = [twinManifest('first'), twinManifest('second')]
    proposals = [mMain, mTwin1, mTwin2].map((m) => ratification(sim, 's1', 101, m.cid, 2_700))
    const votes = proposals.flatMap((p) => votesBy(sim, VOTERS, 110, p.cid, 'yes'))
    const records = [mMain, mTwin1, mTwin2, ...proposals, ...votes]
    sim.add(...records)
    await net.submitAll(records)
    await until(
      () => started.every((m) => records.every((r) => m.store.fold.has(r.cid))),
      'records at the mirrors',
    )
    // A steward keeps what an open ratification names: it checks those weights before it seals.
    expect(await admin(net.nodes[0]!, 'POST', '/admin/unpin', { model: 'open/base@1.0.0' })).toMatchObject({
      status: 409,
      body: { error: { code: 'weights-needed' } },
    })
  })

  it('once ratified, both mirrors fetch, verify, pin and serve them; every steward lists them as holders', async () => {
    const { net, at, main, twin, mainDir, m1, mirrors, everyNode } = w
    // The stewards seal the main version and the first twin, and defer the second twin.
    at(2_700 + sealGraceMs)
    await until(
      () =>
        everyNode.every(
          (n) => status(n, 'open/base@1.0.0') === 'ratified' && status(n, 'open/twin@1.0.0') === 'ratified',
        ),
      'both versions ratified everywhere',
      30_000,
    )
    // Both mirrors hold both versions, verified, pinned and recorded as held.
    await until(
      () => mirrors.every((m) => m.held?.get(main.root)?.complete && m.held?.get(twin.root)?.complete),
      'both mirrors holding both versions',
      45_000,
    )
    for (const m of mirrors) {
      expect(await holds(m, main)).toEqual({ pinned: true, problems: [] })
      expect(await holds(m, twin)).toEqual({ pinned: true, problems: [] })
    }
    // The stewards' weights checks recorded what they verified too.
    for (const n of net.nodes) expect(n.held?.get(main.root)?.complete).toBe(true)
    const fetched = lines.filter((l) => l.event === 'mirror-held' && l.root === main.root.toString())
    expect(fetched.map((l) => l.node).sort()).toEqual(['m1', 'm2'])

    // `node pin` of a version already held says so, with when it was verified.
    const pinMain = await admin(m1, 'POST', '/admin/pin', { model: 'open/base@1.0.0' })
    expect(pinMain).toMatchObject({
      status: 200,
      body: { status: 'held', weights: main.root.toString(), fetch: { result: 'ok' } },
    })
    expect(pinMain.body.verifiedAt).toBe(m1.held?.get(main.root)?.verifiedAt)

    // A CAR of the model from a mirror's gateway, unpacked by the ipfs-car command: the same bytes.
    for (const [i, m] of mirrors.entries()) {
      const res = await fetch(`${m.apiUrl}/ipfs/${main.root}?format=car`)
      expect(res.status).toBe(200)
      const car = join(root(), `main-${i}.car`)
      const out = join(root(), `unpacked-${i}`)
      await writeFile(car, Buffer.from(await res.arrayBuffer()))
      await run(join(process.cwd(), 'node_modules/.bin/ipfs-car'), ['unpack', car, '--output', out])
      const names = (await readdir(mainDir)).sort()
      expect((await readdir(out)).sort()).toEqual(names)
      for (const file of names)
        expect((await readFile(join(out, file))).equals(await readFile(join(mainDir, file)))).toBe(true)
    }
    const metrics = await (await fetch(`${m1.apiUrl}/metrics`)).text()
    expect(metrics).toMatch(/^allmende_weights_held_versions 2$/m)
    expect(metrics).toMatch(new RegExp(`^allmende_weights_held_bytes ${main.size + twin.size}$`, 'm'))
    expect(metrics).toMatch(/^allmende_mirror_fetches_total\{result="ok"\} 2$/m)
    const blocksFrom = (source: string) =>
      Number(
        new RegExp(`^allmende_weights_fetch_blocks_total\\{source="${source}"\\} (\\d+)$`, 'm').exec(
          metrics,
        )?.[1],
      )
    // Every block of the two versions came over the network (the mirror held none before).
    expect(blocksFrom('gateway') + blocksFrom('bitswap')).toBeGreaterThan(0)
    expect(blocksFrom('held')).toBe(0)

    // Each steward's replication report lists both mirrors as holders, from the holding
    // announcements their own fetches led to.
    for (const n of net.nodes)
      await until(
        async () => {
          const holders = await holdersAt(n, 'open/base@1.0.0')
          return mirrorPeers().every((peer) => holders.includes(peer))
        },
        'the mirrors listed as holders',
        30_000,
      )
    expect(await holdersAt(net.nodes[0]!, 'open/base@1.0.0')).toEqual(peersOf([...net.nodes, ...mirrors]))
  }, 90_000)

  it('a node that mirrors nothing pins a version by hand and lets it go', async () => {
    const { twin, m1, pinner } = w
    // p1 mirrors nothing: `node pin` fetches a version outside its policy (202), then says it is held (200).
    const pinTwinAt = () => admin(pinner, 'POST', '/admin/pin', { model: 'open/twin@1.0.0' })
    expect(pinner.held?.get(twin.root)).toBeUndefined()
    expect(await pinTwinAt()).toMatchObject({
      status: 202,
      body: { status: 'fetching', weights: twin.root.toString() },
    })
    const pinned = await until(
      async () => {
        const answer = await pinTwinAt()
        return answer.status === 200 ? answer : undefined
      },
      'p1 holding the twin',
      45_000,
    )
    expect(pinned?.body).toMatchObject({ status: 'held', fetch: { result: 'ok' } })
    expect(await holds(pinner, twin)).toEqual({ pinned: true, problems: [] })

    // A mirror keeps what its policy covers; p1 lets its pin go, and every block with it.
    expect(await admin(m1, 'POST', '/admin/unpin', { model: 'open/twin@1.0.0' })).toMatchObject({
      status: 409,
      body: { error: { code: 'version-mirrored' } },
    })
    const unpinned = await admin(pinner, 'POST', '/admin/unpin', { model: 'open/twin@1.0.0' })
    expect(unpinned).toMatchObject({
      status: 200,
      body: { status: 'unpinned', weights: twin.root.toString() },
    })
    expect(unpinned.body.deleted).toBe(unpinned.body.blocks)
    expect(unpinned.body.blocks).toBeGreaterThan(0)
    expect(pinner.held?.get(twin.root)).toBeUndefined()
    expect((await holds(pinner, twin)).pinned).toBe(false)
    expect((await fetch(`${pinner.apiUrl}/ipfs/${twin.root}?format=raw`)).status).toBe(404)
  }, 60_000)

  it('a conflicted version is withheld (451) on every gateway and kept pinned', async () => {
    const { sim, main, twin, m1, mirrors, everyNode } = w
    // Two more stewards make the second twin final-passed as well: open/twin@1.0.0 is conflicted.
    const [first, second] = [proposals[1]!, proposals[2]!].sort((a, b) =>
      Buffer.compare(a.cid.bytes, b.cid.bytes),
    )
    expect(viewOf(m1, first!.cid)?.phase).toBe('final-passed')
    const seals: Verified<'seal'>[] = ['s4', 's5'].map((by) =>
      sim.seal(by, 2_700 + sealGraceMs + 10, { proposal: second!.cid, weightsVerified: true }),
    )
    for (const n of everyNode)
      for (const seal of seals) await n.store.ingest(seal.bytes, [...sim.blocks.values()])
    await until(
      () => everyNode.every((n) => status(n, 'open/twin@1.0.0') === 'conflicted'),
      'twin conflicted',
    )
    for (const n of everyNode) {
      const withheld = await fetch(`${n.apiUrl}/ipfs/${twin.root}?format=raw`)
      expect(withheld.status).toBe(451)
      const body = (await withheld.json()) as { error: { code: string; message: string } }
      expect(body.error.code).toBe('version-withheld')
      expect(body.error.message).toContain('open/twin@1.0.0')
      expect((await fetch(`${n.apiUrl}/ipfs/${main.root}?format=raw`)).status).toBe(200)
    }
    // Withheld, not dropped: the mirrors keep the weights until the version is decided.
    for (const m of mirrors) expect(await holds(m, twin)).toEqual({ pinned: true, problems: [] })
    const pinTwin = await admin(m1, 'POST', '/admin/pin', { model: 'open/twin@1.0.0' })
    expect(pinTwin).toMatchObject({ status: 409, body: { error: { code: 'version-withheld' } } })
  }, 60_000)

  it('a revoked version is served until unpinRevokedAfterMs has run out, then unpinned and dropped from the reports', async () => {
    const { sim, net, at, main, mirrors, everyNode } = w
    // The main version revoked: still served until the delay has run out, then let go.
    at(4_000)
    const revoke = sim.proposal('s2', 4_000, {
      closesAt: 6_600,
      action: { type: 'revoke-model', manifest: mMain.cid, reason: 'withdrawn' },
      basis: sim.federation,
    })
    await net.submitAll([revoke, ...votesBy(sim, VOTERS, 4_010, revoke.cid, 'yes')])
    at(6_600 + sealGraceMs)
    await until(
      () => everyNode.every((n) => status(n, 'open/base@1.0.0') === 'revoked'),
      'main revoked everywhere',
    )
    at(6_600 + DELAY_MS - 1)
    for (const m of mirrors) {
      expect((await fetch(`${m.apiUrl}/ipfs/${main.root}?format=raw`)).status).toBe(200)
      expect(m.held?.get(main.root)?.complete).toBe(true)
    }
    at(6_600 + DELAY_MS)
    await until(
      () =>
        ['m1', 'm2'].every((node) =>
          lines.some(
            (l) => l.event === 'weights-unpinned' && l.node === node && l.root === main.root.toString(),
          ),
        ),
      'main unpinned at both mirrors',
    )
    for (const m of mirrors) {
      expect(m.held?.get(main.root)).toBeUndefined()
      expect((await holds(m, main)).pinned).toBe(false)
      expect((await fetch(`${m.apiUrl}/ipfs/${main.root}?format=raw`)).status).toBe(404)
    }
    // Unpinned, the mirrors withdrew their holding announcements: the stewards' reports drop them.
    for (const n of net.nodes)
      await until(
        async () => {
          const holders = await holdersAt(n, 'open/base@1.0.0')
          return mirrorPeers().every((peer) => !holders.includes(peer))
        },
        'the mirrors dropped as holders',
        30_000,
      )
    expect(lines.filter((l) => l.event === 'mirror-fetch-failed')).toEqual([])
  }, 60_000)
})
