/**
 * Clean-up of weights nobody ratified (node/weights/cleanup.ts; docs/adr/0031): three steward
 * nodes on 127.0.0.1 on a fake clock, each holding two uploads: A, which is ratified, and B, which
 * no manifest names and which shares every file of A but one. With `unratifiedRetentionMs` set
 * live to 30 s, `POST /admin/gc {dryRun: true}` lists nothing until 30 s after B was first seen
 * pinned, then B alone with the bytes only it holds; `allmende node gc --dry-run` (the built CLI)
 * lists the same; `node gc` lets B go — its own blocks deleted, the shared ones kept — and A,
 * ratified, is never listed however long the clock runs. And with no operator at all: the nodes'
 * own clean-up timer (every 100 ms here) lets B go once its retention has run, not a tick before,
 * and keeps A, its pin and its blocks, through many more ticks far past the retention.
 */
import { randomBytes } from 'node:crypto'
import { cp, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { FsBlockstore } from 'blockstore-fs'
import { describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import type { GcAnswer } from '../../node/api/gc.js'
import { adminToken } from '../../node/config.js'
import type { AllmendeNode } from '../../node/node.js'
import { type DirectoryImport, importDirectory } from '../../node/weights/directory.js'
import { verifyDag } from '../../node/weights/verify.js'
import { runCli } from '../support/cli.js'
import {
  importWeights,
  ratification,
  SHORT_RULES,
  startOnFakeClock,
  untilFinalPassed,
  votesBy,
} from '../support/stewards.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { until } from '../support/until.js'

const RETENTION_MS = 30_000
const root = tempDirForFile('allmende-cleanup-')

async function admin(n: AllmendeNode, method: string, path: string, body: unknown) {
  const res = await fetch(`${n.apiUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${(await adminToken(n.home)).trim()}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify(body),
  })
  const answer = await res.json()
  if (res.status !== 200) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(answer)}`)
  return answer
}

const gc = (n: AllmendeNode, dryRun: boolean) =>
  admin(n, 'POST', '/admin/gc', { dryRun }) as Promise<GcAnswer>

/** The problems `verifyDag` finds in node `n`'s copy of `model` (none: held whole). */
async function problems(n: AllmendeNode, model: DirectoryImport): Promise<string[]> {
  const store = new FsBlockstore(join(n.home, 'blocks'))
  await store.open()
  try {
    const check = await verifyDag(
      store,
      { weights: model.root, files: [...model.files], size: model.size },
      { maxModelBytes: model.size },
    )
    return check.problems.map((p) => p.code)
  } finally {
    await store.close()
  }
}

/** A home for the CLI naming node `n`'s API as it listens (its config says port 0) and its token. */
async function cliHome(n: AllmendeNode, dir: string): Promise<string> {
  const config = JSON.parse(await readFile(join(n.home, 'config.json'), 'utf8'))
  const home = join(dir, 'cli-node-home')
  await cp(n.home, home, {
    recursive: true,
    filter: (p) => !p.includes('blocks') && !p.includes('datastore'),
  })
  await writeFile(join(home, 'config.json'), JSON.stringify({ ...config, api: new URL(n.apiUrl).host }))
  return home
}

/** Node `n`'s clean-up runs ended so far (`allmende_cleanup_runs_total{result="ok"}`). */
async function cleanupRuns(n: AllmendeNode): Promise<number> {
  const text = await (await fetch(`${n.apiUrl}/metrics`)).text()
  return Number(/allmende_cleanup_runs_total\{result="ok"\} (\d+)/.exec(text)?.[1] ?? 0)
}

/** Waits until every node's clean-up timer has ended `runs` more runs, all begun after this call. */
async function untilMoreRuns(nodes: readonly AllmendeNode[], runs: number): Promise<void> {
  const before = await Promise.all(nodes.map(cleanupRuns))
  // One more than asked: the run under way at the call may have looked before it.
  const after = async () =>
    (await Promise.all(nodes.map(cleanupRuns))).every((r, i) => r >= before[i]! + runs + 1)
  await until(after, `${runs} more clean-up runs on every node`, 30_000)
}

/** Two uploads in `dir`: A, and B with every file of A and one more (`extra.bin`, its bytes). */
async function twoUploads(dir: string) {
  const dirA = join(dir, 'model-a')
  await generateModel(dirA, { seed: 61, layers: 1, vocab: 256 })
  const dirB = join(dir, 'model-b')
  await cp(dirA, dirB, { recursive: true })
  await writeFile(join(dirB, 'extra.bin'), randomBytes(3 * 1024 * 1024 + 17))
  return {
    dirA,
    dirB,
    a: await importDirectory(dirA),
    b: await importDirectory(dirB),
    extraBytes: (await stat(join(dirB, 'extra.bin'))).size,
  }
}

describe('clean-up of uploads nobody ratified', () => {
  it('lets an unratified upload go after the retention, keeps what a ratified one shares, and never collects the ratified one', async () => {
    const { dirA, dirB, a, b, extraBytes } = await twoUploads(root())

    const { sim, net, at } = await startOnFakeClock(
      { name: 'cleanup', keyPrefix: 'allmende-cleanup-test:' },
      { root: root(), tag: 'cleanup', helia: true, names: ['s1', 's2', 's3'] },
    )
    try {
      at(100)
      for (const n of net.nodes) {
        await admin(n, 'PUT', '/admin/config/unratifiedRetentionMs', { value: RETENTION_MS })
        expect(await importWeights(n, dirA)).toMatchObject({ root: a.root.toString(), pinned: true })
        expect(await importWeights(n, dirB)).toMatchObject({ root: b.root.toString(), pinned: true })
        // The first look records when each root was seen pinned: now.
        expect((await gc(n, true)).roots).toEqual([])
      }
      const manifest = sim.manifest('s1', 100, { id: 'a', name: 'kept', version: '1.0.0', weights: a })
      const closesAt = 2_700
      const p = ratification(sim, 's1', 101, manifest.cid, closesAt)
      await net.submitAll([manifest, p, ...votesBy(sim, ['s1', 's2', 's3'], 110, p.cid, 'yes')])
      at(closesAt + SHORT_RULES.sealGraceMs)
      await untilFinalPassed(net.nodes, p.cid)

      at(100 + RETENTION_MS - 1)
      for (const n of net.nodes) expect((await gc(n, true)).roots).toEqual([])

      at(100 + RETENTION_MS)
      for (const n of net.nodes) {
        const listed = await gc(n, true)
        expect(listed.dryRun).toBe(true)
        expect(listed.roots.map((r) => [r.root, r.why])).toEqual([[b.root.toString(), 'no-manifest']])
        // Only B's own blocks: its extra file and its directory node, not the files it shares with A.
        expect(listed.roots[0]!.bytes).toBeGreaterThanOrEqual(extraBytes)
        expect(listed.roots[0]!.bytes).toBeLessThan(extraBytes + 64 * 1024)
        expect(listed.totalBytes).toBe(listed.roots[0]!.bytes)
      }

      // The same through the built CLI, as an operator runs it.
      const home = await cliHome(net.nodes[0]!, root())
      const text = await runCli(['node', 'gc', '--dry-run', '--home', home], { cwd: root(), home: root() })
      expect(text.code, text.stderr).toBe(0)
      expect(text.stdout).toContain(b.root.toString())
      expect(text.stdout).toContain('no-manifest')
      const json = (
        await runCli(['--json', 'node', 'gc', '--dry-run', '--home', home], { cwd: root(), home: root() })
      ).json<GcAnswer>()
      expect(json.roots.map((r) => r.root)).toEqual([b.root.toString()])
      expect(json.totalBytes).toBe(json.roots[0]!.bytes)

      for (const n of net.nodes) {
        const collected = await gc(n, false)
        expect(collected.roots.map((r) => r.root)).toEqual([b.root.toString()])
        expect(await n.pins!.hasPin(b.root)).toBe(false)
        expect(await n.pins!.hasPin(a.root)).toBe(true)
        expect(await problems(n, a)).toEqual([])
        expect(await problems(n, b)).toContain('block-missing')
        expect((await gc(n, true)).roots).toEqual([])
      }
      expect(net.events('weights-unpinned', { reason: 'no-manifest', root: b.root.toString() })).toHaveLength(
        3,
      )

      // Ratified: never due, however long the clock runs.
      at(100 + 10 * RETENTION_MS)
      for (const n of net.nodes) expect((await gc(n, true)).roots).toEqual([])
    } finally {
      await net.stop()
    }
  }, 120_000)

  it('lets the unratified upload go by its own timer once the retention has run, and keeps the ratified one tick after tick', async () => {
    const { dirA, dirB, a, b } = await twoUploads(join(root(), 'timer'))
    const { sim, net, at } = await startOnFakeClock(
      { name: 'cleanup-timer', keyPrefix: 'allmende-cleanup-timer-test:' },
      { root: root(), tag: 'cleanup-timer', helia: true, names: ['s1', 's2', 's3'], cleanupTickMs: 100 },
    )
    try {
      at(100)
      for (const n of net.nodes) {
        await admin(n, 'PUT', '/admin/config/unratifiedRetentionMs', { value: RETENTION_MS })
        expect(await importWeights(n, dirA)).toMatchObject({ root: a.root.toString(), pinned: true })
        expect(await importWeights(n, dirB)).toMatchObject({ root: b.root.toString(), pinned: true })
      }
      // A run begun after the imports has seen both pinned at 100: their retention counts from there.
      await untilMoreRuns(net.nodes, 1)
      const manifest = sim.manifest('s1', 100, { id: 'a', name: 'kept', version: '1.0.0', weights: a })
      const closesAt = 2_700
      const p = ratification(sim, 's1', 101, manifest.cid, closesAt)
      await net.submitAll([manifest, p, ...votesBy(sim, ['s1', 's2', 's3'], 110, p.cid, 'yes')])
      at(closesAt + SHORT_RULES.sealGraceMs)
      await untilFinalPassed(net.nodes, p.cid)

      // A millisecond before B's retention runs out, tick after tick: nothing goes.
      at(100 + RETENTION_MS - 1)
      await untilMoreRuns(net.nodes, 3)
      expect(net.events('weights-unpinned')).toEqual([])
      for (const n of net.nodes) expect(await n.pins!.hasPin(b.root)).toBe(true)

      // Once it has run, every node's timer lets B go — nobody asks.
      at(100 + RETENTION_MS)
      await until(
        () => net.events('weights-unpinned', { reason: 'no-manifest', root: b.root.toString() }).length === 3,
        'B let go by every node',
        30_000,
      )
      for (const n of net.nodes) {
        expect(await n.pins!.hasPin(b.root)).toBe(false)
        expect(await problems(n, b)).toContain('block-missing')
      }

      // Ratified: far past the retention, many ticks later, A's pin and every block are there.
      at(100 + 10 * RETENTION_MS)
      await untilMoreRuns(net.nodes, 5)
      for (const n of net.nodes) {
        expect(await n.pins!.hasPin(a.root)).toBe(true)
        expect(await problems(n, a)).toEqual([])
      }
      expect(net.events('weights-unpinned').map((l) => l.root)).toEqual([
        b.root.toString(),
        b.root.toString(),
        b.root.toString(),
      ])
    } finally {
      await net.stop()
    }
  }, 120_000)
})
