/**
 * The scrub's decisions (node/weights/scrub.ts, scrub-pass.ts): what it does next, what a pass
 * finds in a DAG with a corrupt leaf, a corrupt node or a missing block, how a pass cut off
 * resumes from its cursor, and what the scrubber does with each finding — a clean pass marks the
 * root scrubbed clean; a damaged one deletes the damaged blocks, marks the root incomplete and
 * repairs it (verified again on success, tried again later on failure); a root unpinned while it
 * was read is left alone.
 */
import { createHash } from 'node:crypto'
import * as dagPb from '@ipld/dag-pb'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import type { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { silentLogger } from '../../../../node/log.js'
import { HeldVersions } from '../../../../node/weights/held-versions.js'
import { unixfsRoot } from '../../../../node/weights/profile.js'
import { RootLedger } from '../../../../node/weights/root-ledger.js'
import { createScrubber, planScrub, SCRUB_INTERVAL_MS } from '../../../../node/weights/scrub.js'
import { type BlockVerdict, type PassBlocks, scrubPass } from '../../../../node/weights/scrub-pass.js'
import { type RateClock, TokenBucket } from '../../../../node/weights/scrub-rate.js'
import type { RepairOutcome } from '../../../../node/weights/scrub-repair.js'

const MiB = 1024 * 1024
const DAY = 24 * 60 * 60 * 1000

/** Bytes that are the same on every run: `n` bytes from a seed. */
function bytesOf(seed: string, n: number): Uint8Array {
  const out = new Uint8Array(n)
  let block = createHash('sha256').update(seed).digest()
  for (let i = 0; i < n; i += 32) {
    out.set(block.subarray(0, Math.min(32, n - i)), i)
    block = createHash('sha256').update(block).digest()
  }
  return out
}

async function* chunks(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes
}

/** A model of two files (2.5 MiB and 1.5 MiB: file nodes with 1 MiB leaves) in a memory blockstore. */
async function model(): Promise<{ store: MemoryBlockstore; root: CID; blocks: CID[] }> {
  const store = new MemoryBlockstore()
  const entries = [
    { path: 'a.bin', content: chunks(bytesOf('a', 2.5 * MiB)) },
    { path: 'b.bin', content: chunks(bytesOf('b', 1.5 * MiB)) },
  ]
  const root = await unixfsRoot(entries, store)
  // Walked from the root (a memory blockstore lists blocks by multihash, without their codec).
  const blocks: CID[] = []
  const stack = [root]
  while (stack.length > 0) {
    const cid = stack.pop()!
    blocks.push(cid)
    if (cid.code === dagPb.code) stack.push(...dagPb.decode(await read(store, cid)).Links.map((l) => l.Hash))
  }
  return { store, root, blocks }
}

async function read(store: MemoryBlockstore, cid: CID): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const p of store.get(cid)) parts.push(p)
  return Buffer.concat(parts)
}

/** Reads blocks of a memory blockstore, as ScrubBlocks reads the node's. */
function memoryBlocks(store: MemoryBlockstore, reads: string[] = []): PassBlocks {
  const get = async (cid: CID) => ((await store.has(cid)) ? await read(store, cid) : undefined)
  return {
    node: (cid) => get(cid),
    async leaf(cid): Promise<BlockVerdict> {
      reads.push(cid.toString())
      const bytes = await get(cid)
      if (!bytes) return 'missing'
      const digest = createHash('sha256').update(bytes).digest()
      return Buffer.compare(digest, cid.multihash.digest) === 0 ? 'ok' : 'damaged'
    },
  }
}

const instant: RateClock = { now: () => 0, sleep: async () => {} }
const unlimited = () => new TokenBucket(() => Number.MAX_SAFE_INTEGER, instant)
const signal = new AbortController().signal

async function corrupt(store: MemoryBlockstore, cid: CID): Promise<void> {
  const bytes = await read(store, cid)
  const changed = new Uint8Array(bytes)
  changed[changed.length >> 1]! ^= 0xff
  await store.put(cid, changed)
}

describe('a scrub pass', () => {
  it('reads every block of a whole DAG once and finds nothing', async () => {
    const { store, root, blocks } = await model()
    const result = await scrubPass({ root, blocks: memoryBlocks(store), bucket: unlimited(), signal })
    expect(result.blocks).toBe(blocks.length)
    expect(result.damaged).toEqual([])
    expect(result.missing).toEqual([])
    expect(result.bytes).toBeGreaterThanOrEqual(4 * MiB)
  })

  it('finds a corrupt leaf, a missing leaf, and a corrupt node (not walked below)', async () => {
    const { store, root, blocks } = await model()
    const leaves = blocks.filter((c) => c.code === 0x55)
    const nodes = blocks.filter((c) => c.code === 0x70 && !c.equals(root))
    await corrupt(store, leaves[0]!)
    await store.delete(leaves[1]!)
    const result = await scrubPass({ root, blocks: memoryBlocks(store), bucket: unlimited(), signal })
    expect(result.damaged.map(String)).toContain(leaves[0]!.toString())
    expect(result.missing.map(String)).toEqual([leaves[1]!.toString()])

    const { store: store2, root: root2 } = await model()
    await corrupt(store2, nodes[0]!)
    const reads: string[] = []
    const second = await scrubPass({
      root: root2,
      blocks: memoryBlocks(store2, reads),
      bucket: unlimited(),
      signal,
    })
    expect(second.damaged.map(String)).toEqual([nodes[0]!.toString()])
    // The leaves under the damaged file node are not read (its links cannot be trusted).
    expect(reads.length).toBeLessThan(leaves.length)
  })

  it('resumes after its cursor: the leaves before it are not read again', async () => {
    const { store, root, blocks } = await model()
    const cursors: number[] = []
    await scrubPass({
      root,
      blocks: memoryBlocks(store),
      bucket: unlimited(),
      signal,
      window: 1,
      onProgress: (done) => cursors.push(done),
    })
    const cut = cursors[Math.floor(cursors.length / 2)]!
    const reads: string[] = []
    const resumed = await scrubPass({
      root,
      blocks: memoryBlocks(store, reads),
      bucket: unlimited(),
      signal,
      skip: cut,
    })
    expect(resumed.blocks).toBe(blocks.length)
    const allReads: string[] = []
    await scrubPass({ root, blocks: memoryBlocks(store, allReads), bucket: unlimited(), signal })
    expect(reads.length).toBeGreaterThan(0)
    expect(reads.length).toBeLessThan(allReads.length)
    expect(allReads.slice(allReads.length - reads.length)).toEqual(reads)
  })

  it('pays every byte to the bucket before it reads it', async () => {
    const { store, root } = await model()
    let now = 0
    const clock: RateClock = { now: () => now, sleep: async (ms) => void (now += ms) }
    const result = await scrubPass({
      root,
      blocks: memoryBlocks(store),
      bucket: new TokenBucket(() => MiB, clock),
      signal,
    })
    // 4 MiB and its nodes at 1 MiB/s, the first second's worth at once.
    expect(now).toBeGreaterThanOrEqual(((result.bytes - 2 * MiB) * 1000) / MiB)
  })
})

describe('what the scrub does next', () => {
  const roots = async () => {
    const a = (await model()).root
    const store = new MemoryBlockstore()
    const b = await unixfsRoot([{ path: 'x', content: chunks(bytesOf('x', 10)) }], store)
    const c = await unixfsRoot([{ path: 'y', content: chunks(bytesOf('y', 10)) }], store)
    return [a, b, c] as const
  }
  const base = {
    cursor: undefined,
    incomplete: () => false,
    retryAt: new Map<string, number>(),
    intervalMs: SCRUB_INTERVAL_MS,
  }

  it('a never-scrubbed root before one scrubbed long ago, oldest pin first; none due within the interval', async () => {
    const [a, b, c] = await roots()
    const now = 100 * DAY
    const times = new Map([
      [a.toString(), { pinnedAt: 0, scrubbedAt: now - 8 * DAY }],
      [b.toString(), { pinnedAt: 5, scrubbedAt: null }],
      [c.toString(), { pinnedAt: 1, scrubbedAt: null }],
    ])
    const plan = (t: typeof times) =>
      planScrub({ ...base, pinned: [a, b, c], times: (r) => t.get(r.toString()), now })
    expect(plan(times)).toEqual({ work: { kind: 'scrub', root: c, skip: 0 }, due: 3 })
    times.set(c.toString(), { pinnedAt: 1, scrubbedAt: now })
    times.set(b.toString(), { pinnedAt: 5, scrubbedAt: now - 1 })
    expect(plan(times)).toEqual({ work: { kind: 'scrub', root: a, skip: 0 }, due: 1 })
    times.set(a.toString(), { pinnedAt: 0, scrubbedAt: now - SCRUB_INTERVAL_MS + 1 })
    expect(plan(times)).toEqual({ work: undefined, due: 0 })
  })

  it('a due repair first, then the pass a stop cut off; a failed repair waits for its retry time', async () => {
    const [a, b, c] = await roots()
    const times = (r: CID) => ({ pinnedAt: r.equals(a) ? 0 : 1, scrubbedAt: null })
    const input = { ...base, pinned: [a, b, c], times, now: 1000, cursor: { root: b, blocks: 7 } }
    expect(planScrub({ ...input, incomplete: (r) => r.equals(c) }).work).toEqual({ kind: 'repair', root: c })
    expect(planScrub(input).work).toEqual({ kind: 'scrub', root: b, skip: 7 })
    const retryAt = new Map([[c.toString(), 2000]])
    expect(planScrub({ ...input, retryAt }).work).toEqual({ kind: 'scrub', root: b, skip: 7 })
    expect(planScrub({ ...input, retryAt, now: 2000 }).work).toEqual({ kind: 'repair', root: c })
    // A cursor of a root no longer pinned is passed over.
    expect(planScrub({ ...input, pinned: [a, c] }).work).toEqual({ kind: 'scrub', root: a, skip: 0 })
  })
})

describe('the scrubber', () => {
  async function setup(options: { repair?: RepairOutcome; pinned?: () => boolean } = {}) {
    const { store, root, blocks } = await model()
    const datastore = new MemoryDatastore()
    const held = await HeldVersions.open(datastore)
    const ledger = await RootLedger.open(datastore)
    await held.verified(root, 1)
    const changes: (boolean | undefined)[] = []
    held.onChange((_, entry) => changes.push(entry?.complete))
    const deleted: string[] = []
    const repairs: { root: CID; damaged: readonly CID[] }[] = []
    const lines: { event: string; fields: Record<string, unknown> }[] = []
    const log = {
      ...silentLogger,
      info: (event: string, fields: Record<string, unknown>) => lines.push({ event, fields }),
      warn: (event: string, fields: Record<string, unknown>) => lines.push({ event, fields }),
    }
    let now = 10 * DAY
    const scrubber = createScrubber({
      pinnedRoots: async () => [root],
      hasPin: async () => options.pinned?.() ?? true,
      ledger,
      held,
      blocks: memoryBlocks(store),
      deleteBlock: async (cid) => {
        deleted.push(cid.toString())
        await store.delete(cid)
      },
      bucket: unlimited(),
      repair: async (r, damaged) => {
        repairs.push({ root: r, damaged })
        return options.repair ?? { ok: true, fromSources: damaged.length, fetched: 0, checked: true }
      },
      clock: () => now,
      log,
    })
    return {
      store,
      root,
      blocks,
      held,
      ledger,
      changes,
      deleted,
      repairs,
      lines,
      scrubber,
      setNow: (t: number) => void (now = t),
    }
  }

  it('marks a clean pass scrubbed, and has nothing to do until the interval has run', async () => {
    const s = await setup()
    expect(await s.scrubber.step(signal)).toBe('scrubbed')
    expect(s.held.get(s.root)).toMatchObject({ scrubbedAt: 10 * DAY, complete: true })
    expect(s.ledger.get(s.root)).toMatchObject({ pinnedAt: 10 * DAY, scrubbedAt: 10 * DAY })
    expect(s.lines.map((l) => l.event)).toEqual(['weights-scrubbed'])
    expect(await s.scrubber.step(signal)).toBe('idle')
    s.setNow(10 * DAY + SCRUB_INTERVAL_MS)
    expect(await s.scrubber.step(signal)).toBe('scrubbed')
  })

  it('deletes a damaged block, marks the root incomplete, repairs it and marks it verified again', async () => {
    const s = await setup()
    const leaf = s.blocks.find((c) => c.code === 0x55)!
    await corrupt(s.store, leaf)
    expect(await s.scrubber.step(signal)).toBe('scrubbed')
    expect(s.deleted).toEqual([leaf.toString()])
    expect(s.repairs.map((r) => r.damaged.map(String))).toEqual([[leaf.toString()]])
    // Incomplete from the damage until the repair's check passed.
    expect(s.changes).toEqual([false, true])
    expect(s.held.announceable(s.root)).toBe(true)
    expect(s.lines.map((l) => l.event)).toEqual(['weights-scrub-damaged', 'weights-scrub-repaired'])
    expect(s.lines[0]!.fields).toMatchObject({ corrupt: 1, missing: 0 })
  })

  it('keeps a root whose repair failed incomplete, and tries again after the retry time', async () => {
    const error = Object.assign(new Error('no source had it'), { code: 'block-unavailable' })
    const s = await setup({ repair: { ok: false, error: error as never } })
    await s.store.delete(s.blocks.find((c) => c.code === 0x55)!)
    await s.scrubber.step(signal)
    expect(s.held.announceable(s.root)).toBe(false)
    expect(s.lines.map((l) => l.event)).toEqual(['weights-scrub-damaged', 'weights-scrub-repair-failed'])
    expect(await s.scrubber.step(signal)).toBe('idle')
    s.setNow(10 * DAY + 5 * 60 * 1000)
    expect(await s.scrubber.step(signal)).toBe('repaired')
    expect(s.repairs).toHaveLength(2)
  })

  it('leaves a root unpinned while it was read alone: no delete, no repair, no mark', async () => {
    const s = await setup({ pinned: () => false })
    await s.store.delete(s.blocks.find((c) => c.code === 0x55)!)
    await s.scrubber.step(signal)
    expect(s.deleted).toEqual([])
    expect(s.repairs).toEqual([])
    expect(s.changes).toEqual([])
    expect(s.ledger.cursor()).toBeUndefined()
  })

  it('stops at an abort with its cursor written, and the next scrubber resumes the pass there', async () => {
    const { store, root } = await model()
    const datastore = new MemoryDatastore()
    const held = await HeldVersions.open(datastore)
    await held.verified(root, 1)
    const stop = new AbortController()
    let leaves = 0
    const reads: string[] = []
    const inner = memoryBlocks(store, reads)
    const stopping: PassBlocks = {
      node: inner.node,
      async leaf(cid, size, s) {
        // The last leaf: the four before it are read (or being read) when the node stops.
        if (++leaves === 5) stop.abort(new Error('stopped'))
        s.throwIfAborted()
        return inner.leaf(cid, size, s)
      },
    }
    const scrubber = (ledger: RootLedger, blocks: PassBlocks) =>
      createScrubber({
        pinnedRoots: async () => [root],
        hasPin: async () => true,
        ledger,
        held,
        blocks,
        deleteBlock: async () => {},
        bucket: unlimited(),
        repair: async () => ({ ok: true, fromSources: 0, fetched: 0, checked: true }),
        clock: () => 5,
        cursorEveryBlocks: 1,
        log: silentLogger,
      })
    const first = await RootLedger.open(datastore)
    await expect(scrubber(first, stopping).step(stop.signal)).rejects.toThrow('stopped')
    const cursor = first.cursor()
    expect(cursor?.root.equals(root)).toBe(true)
    expect(cursor!.blocks).toBeGreaterThan(0)
    expect(held.get(root)?.scrubbedAt).toBeNull()

    // As after a restart: the ledger read back from the datastore.
    const again = await RootLedger.open(datastore)
    expect(again.cursor()?.blocks).toBe(cursor!.blocks)
    const resumedReads: string[] = []
    expect(await scrubber(again, memoryBlocks(store, resumedReads)).step(signal)).toBe('scrubbed')
    expect(resumedReads.length).toBeGreaterThan(0)
    expect(resumedReads.length).toBeLessThan(5)
    expect(again.cursor()).toBeUndefined()
    expect(held.get(root)).toMatchObject({ scrubbedAt: 5, complete: true })
  })
})
