/**
 * Canonical CID lists (protocol/cidlist.ts): the shape is a function of the
 * entries alone, reading checks every block, and each failure has its code.
 */
import type { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { encode } from '../../../protocol/cbor.js'
import { cidOfBlock, compareCids } from '../../../protocol/cid.js'
import {
  type Block,
  type BlockSource,
  type BuiltList,
  buildList,
  entryCid,
  FANOUT,
  type ListEntry,
  readList,
} from '../../../protocol/cidlist.js'
import { LIMITS } from '../../../protocol/limits.js'
import type { Result } from '../../../protocol/result.js'

/** `n` distinct record-style CIDs (the CIDs of the blocks encoding 0, 1, 2, …). */
function cids(n: number, offset = 0): CID[] {
  const out: CID[] = []
  for (let i = 0; i < n; i++) out.push(cidOfBlock(encode(offset + i)))
  return out
}

const MANY = cids(FANOUT * FANOUT + 1)
const sortedCids = (xs: readonly CID[]) => [...xs].sort(compareCids)
/** Hex of each CID's bytes: cheap to compare (CID#toString is base32 and slow on 65,537 CIDs). */
const ids = (xs: readonly ListEntry[]) => xs.map((e) => Buffer.from(entryCid(e).bytes).toString('hex'))

function store(blocks: readonly Block[]): Map<string, Uint8Array> {
  return new Map(blocks.map((x) => [x.cid.toString(), x.bytes]))
}

function source(list: BuiltList | readonly Block[]): BlockSource {
  const m = store(Array.isArray(list) ? list : (list as BuiltList).blocks)
  return (cid) => m.get(cid.toString())
}

/** Deterministic shuffle (xorshift), so a failure reproduces. */
function shuffled<T>(xs: readonly T[], seed = 12345): T[] {
  const out = [...xs]
  let s = seed
  for (let i = out.length - 1; i > 0; i--) {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    const j = (s >>> 0) % (i + 1)
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

function code<T>(r: Result<T>): string {
  return r.ok ? 'ok' : r.code
}

function block(value: unknown): Block {
  const bytes = encode(value)
  return { cid: cidOfBlock(bytes), bytes }
}

describe('buildList / readList round trip', () => {
  it.each([0, 1, 255, 256, 257, FANOUT * FANOUT + 1])('%i entries', (n) => {
    const entries = MANY.slice(0, n)
    const list = buildList(entries)
    expect(list.count).toBe(n)
    const leaves = Math.max(1, Math.ceil(n / FANOUT))
    const branches = leaves === 1 ? 0 : Math.ceil(leaves / FANOUT) + (leaves > FANOUT ? 1 : 0)
    expect(list.blocks).toHaveLength(leaves + branches)
    expect(list.blocks.some((x) => x.cid.equals(list.root))).toBe(true)
    const read = readList({ root: list.root, count: list.count }, source(list))
    expect(read.ok).toBe(true)
    if (!read.ok) return
    expect(read.value.every((e) => !Array.isArray(e))).toBe(true)
    expect(ids(read.value)).toEqual(ids(sortedCids(entries)))
  })

  it('the empty list is the single leaf [0, []]', () => {
    const list = buildList([])
    expect(list.blocks).toHaveLength(1)
    expect(list.root.equals(cidOfBlock(encode([0, []])))).toBe(true)
  })

  it('a list of up to 256 entries is one leaf; 257 adds a branch', () => {
    const one = buildList(MANY.slice(0, 256))
    expect(one.root.equals(cidOfBlock(encode([0, sortedCids(MANY.slice(0, 256))])))).toBe(true)
    const two = buildList(MANY.slice(0, 257))
    const sorted = sortedCids(MANY.slice(0, 257))
    const leafA = cidOfBlock(encode([0, sorted.slice(0, 256)]))
    const leafB = cidOfBlock(encode([0, sorted.slice(256)]))
    expect(two.root.equals(cidOfBlock(encode([1, [leafA, leafB]])))).toBe(true)
  })

  it('the root does not depend on the input order', () => {
    for (const n of [2, 257, 1000]) {
      const entries = MANY.slice(0, n)
      const a = buildList(entries)
      const b = buildList(shuffled(entries, n))
      const c = buildList([...entries].reverse())
      expect(b.root.equals(a.root)).toBe(true)
      expect(c.root.equals(a.root)).toBe(true)
      expect(new Set(b.blocks.map((x) => x.cid.toString()))).toEqual(
        new Set(a.blocks.map((x) => x.cid.toString())),
      )
    }
  })

  it('different entries give different roots', () => {
    expect(buildList(MANY.slice(0, 3)).root.equals(buildList(MANY.slice(1, 4)).root)).toBe(false)
  })

  it('refuses a CID twice', () => {
    expect(() => buildList([MANY[0]!, MANY[1]!, MANY[0]!])).toThrow(TypeError)
  })
})

describe('labelled lists', () => {
  const outcomes = ['passed', 'rejected', 'no-quorum']
  const entries: ListEntry[] = MANY.slice(0, 300).map((c, i) => [c, outcomes[i % 3]!] as const)

  it('round-trip with their labels, sorted by CID', () => {
    const list = buildList(shuffled(entries))
    const read = readList(list, source(list), true)
    expect(read.ok).toBe(true)
    if (!read.ok) return
    const expected = [...entries].sort((a, b) => compareCids(entryCid(a), entryCid(b)))
    expect(read.value.map((e) => [entryCid(e).toString(), (e as readonly [CID, string])[1]])).toEqual(
      expected.map((e) => [entryCid(e).toString(), (e as readonly [CID, string])[1]]),
    )
  })

  it('the label is part of the root', () => {
    const a = buildList([[MANY[0]!, 'passed']])
    const b = buildList([[MANY[0]!, 'rejected']])
    expect(a.root.equals(b.root)).toBe(false)
  })

  it('a labelled list read as a plain one, and the reverse, is list-shape', () => {
    const labelled = buildList(entries.slice(0, 5))
    expect(code(readList(labelled, source(labelled), false))).toBe('list-shape')
    const plain = buildList(MANY.slice(0, 5))
    expect(code(readList(plain, source(plain), true))).toBe('list-shape')
  })
})

describe('readList failures', () => {
  const list = buildList(MANY.slice(0, 600)) // three leaves under one branch

  it('list-block-missing: the root, or one leaf', () => {
    expect(code(readList(list, () => undefined))).toBe('list-block-missing')
    const leaf = list.blocks.find((x) => !x.cid.equals(list.root))!
    const without = list.blocks.filter((x) => x !== leaf)
    expect(code(readList(list, source(without)))).toBe('list-block-missing')
  })

  it('list-block-invalid: bytes that do not hash to the CID', () => {
    const other = buildList(MANY.slice(1000, 1001)).blocks[0]!.bytes
    expect(code(readList(list, () => other))).toBe('list-block-invalid')
    // One leaf swapped for another leaf's bytes
    const m = store(list.blocks)
    const leaves = list.blocks.filter((x) => !x.cid.equals(list.root))
    m.set(leaves[0]!.cid.toString(), leaves[1]!.bytes)
    expect(code(readList(list, (c) => m.get(c.toString())))).toBe('list-block-invalid')
  })

  it('list-block-invalid: a block that hashes right but is not strict DAG-CBOR', () => {
    const bytes = Uint8Array.from([0x82, 0x00, 0x98, 0x00]) // [0, []] with a non-minimal length
    const root = cidOfBlock(bytes)
    expect(code(readList({ root, count: 0 }, () => bytes))).toBe('list-block-invalid')
  })

  it('list-shape: a count that does not match the blocks', () => {
    const two = buildList(MANY.slice(0, 2))
    expect(code(readList({ root: two.root, count: 3 }, source(two)))).toBe('list-shape')
    expect(code(readList({ root: two.root, count: 1 }, source(two)))).toBe('list-shape')
    // A single leaf claimed to be a 257-entry list (which needs a branch on top)
    const full = buildList(MANY.slice(0, 256))
    expect(code(readList({ root: full.root, count: 257 }, source(full)))).toBe('list-shape')
    // A two-level list claimed to be a one-leaf list
    expect(code(readList({ root: list.root, count: 200 }, source(list)))).toBe('list-shape')
  })

  it('list-shape: blocks that are not [0, [...]] or [1, [...]]', () => {
    for (const value of [{ a: 1 }, [0], [2, []], [0, {}], [1, []], 'leaf', [0, [], 1]]) {
      const x = block(value)
      expect(code(readList({ root: x.cid, count: 0 }, source([x]))), JSON.stringify(value)).toBe('list-shape')
    }
    // A leaf holding something other than CIDs
    const x = block([0, [1, 2]])
    expect(code(readList({ root: x.cid, count: 2 }, source([x])))).toBe('list-shape')
    // A branch holding something other than CIDs
    const y = block([1, ['a', 'b']])
    expect(code(readList({ root: y.cid, count: 257 }, source([y])))).toBe('list-shape')
  })

  it('list-order: a hand-built unsorted leaf, or a repeated entry', () => {
    const [a, b] = sortedCids(MANY.slice(0, 2)) as [CID, CID]
    const unsorted = block([0, [b, a]])
    expect(code(readList({ root: unsorted.cid, count: 2 }, source([unsorted])))).toBe('list-order')
    const repeated = block([0, [a, a]])
    expect(code(readList({ root: repeated.cid, count: 2 }, source([repeated])))).toBe('list-order')
    // Each leaf sorted, but the leaves in the wrong order under the branch
    const sorted = sortedCids(MANY.slice(0, 257))
    const leafA = block([0, sorted.slice(0, 256)])
    const leafB = block([0, sorted.slice(256)])
    const swapped = block([1, [leafB.cid, leafA.cid]])
    const r = readList({ root: swapped.cid, count: 257 }, source([leafA, leafB, swapped]))
    // leafB (1 entry) sits where a 256-entry leaf is expected: the shape fails first
    expect(code(r)).toBe('list-shape')
    const sorted512 = sortedCids(MANY.slice(0, 512))
    const l1 = block([0, sorted512.slice(0, 256)])
    const l2 = block([0, sorted512.slice(256)])
    const swapped512 = block([1, [l2.cid, l1.cid]])
    expect(code(readList({ root: swapped512.cid, count: 512 }, source([l1, l2, swapped512])))).toBe(
      'list-order',
    )
  })

  it('list-count: negative, fractional or too large', () => {
    const empty = buildList([])
    for (const count of [-1, 1.5, Number.NaN, LIMITS.maxListEntries + 1, Number.POSITIVE_INFINITY]) {
      expect(code(readList({ root: empty.root, count }, source(empty))), String(count)).toBe('list-count')
    }
    expect(code(readList({ root: empty.root, count: 0 }, source(empty)))).toBe('ok')
  })
})
