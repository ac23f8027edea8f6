/**
 * Properties of state roots and lookup proofs (SPEC.md §11.1).
 *
 * For random maps from `name@version` to well-formed entry values
 * (`{status, decision, manifests: [{cid, ratified, revoked, suspension,
 * taint}]}`, suspensions and taints among them) — sizes around the leaf and
 * branch boundaries (0, 1, 63, 64, 65, 4095, 4096, 4097) among the runs —
 * built with `buildStateRoot`:
 * - completeness: `proveKey` proves every key's value, and the absence of
 *   keys not in the map (value null);
 * - soundness: every altered proof fails — a block dropped, a byte flipped
 *   in any block, the proof checked under another root, or used for another
 *   key — and no accepted proof ever yields a value other than the map's;
 * - canonical shape: the same entries in any order give the same root.
 *
 * Each shape rule on its own, with a mutant that breaks only it, is in
 * stateroot-shape.test.ts; the entry layout in stateroot-entry.test.ts.
 *
 * A map is generated from a small spec (size, seed) by a seeded PRNG, so
 * fast-check can name a failing case compactly; keys are mostly
 * `m${i}@1.${j}.0`, with some non-ASCII ones (UTF-8 order differs from
 * UTF-16 order for astral characters, and the map is sorted by UTF-8 bytes).
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  type Block,
  type BuiltStateRoot,
  buildStateRoot,
  type CID,
  cidKey,
  cidOfBlock,
  encode,
  encodeValue,
  MAP_FANOUT,
  type ManifestEntry,
  type MapEntry,
  type MapValue,
  proveKey,
  verifyProof,
} from '../../../protocol/index.js'
import { prng } from '../../support/prng.js'

const RUNS = 200
const BOUNDARY_SIZES = [0, 1, 63, 64, 65, 4095, 4096, 4097] as const

/** Random CIDs, each the CID of a DAG-CBOR block. */
const POOL: readonly CID[] = Array.from({ length: 512 }, (_, i) => cidOfBlock(encode({ pool: i, salt: 'x' })))

const pick = <T>(rand: () => number, items: readonly T[]): T => items[Math.floor(rand() * items.length)]!

function shuffled<T>(items: readonly T[], rand: () => number): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

const TAINT_REASONS = ['base-revoked', 'base-suspended'] as const

function randomManifest(rand: () => number, cid: CID): ManifestEntry {
  return {
    cid,
    ratified: rand() < 0.6,
    revoked: rand() < 0.3,
    suspension: rand() < 0.8 ? null : { since: Math.floor(rand() * 1e12), until: 2e12 },
    taint: rand() < 0.8 ? null : { ancestor: pick(rand, POOL), reason: pick(rand, TAINT_REASONS) },
  }
}

/** A well-formed value: its status and decision agree with its manifests' flags (SPEC §11.1). */
function randomValue(rand: () => number): MapValue {
  const n = Math.floor(rand() * 4)
  const cids = new Map<string, CID>()
  for (let i = 0; i < n; i++) {
    const c = pick(rand, POOL)
    cids.set(cidKey(c), c)
  }
  const manifests = [...cids.values()].map((c) => randomManifest(rand, c))
  const live = manifests.filter((m) => m.ratified && !m.revoked).length
  const decision = pick(rand, POOL)
  if (live === 1) return { status: 'ratified', decision, manifests }
  if (live > 1) return { status: 'conflicted', decision: null, manifests }
  if (manifests.some((m) => m.revoked) && rand() < 0.7) return { status: 'revoked', decision, manifests }
  return { status: 'proposed', decision: null, manifests }
}

const KEY_STYLES: readonly ((i: number, j: number) => string)[] = [
  (i, j) => `m${i}@1.${j}.0`,
  (i, j) => `m${i}@1.${j}.0`,
  (i, j) => `m${i}@1.${j}.0`,
  (i, j) => `mödel-${i}@1.${j}.0`,
  (i, j) => `\u{1F999}${i}@1.${j}.0`, // astral: UTF-8 F0…, UTF-16 D8…
  (i, j) => `\uFF5E${i}@1.${j}.0`, // BMP above the surrogates: UTF-8 EF…, UTF-16 FF…
  (i, j) => `${i}@1.${j}.0-rc.${i % 7}`,
]

interface MapSpec {
  readonly size: number
  readonly seed: number
}

interface Built {
  readonly entries: MapEntry[]
  readonly truth: ReadonlyMap<string, MapValue>
  readonly head: CID
  readonly height: number
  readonly built: BuiltStateRoot
  readonly rand: () => number
}

function build(spec: MapSpec): Built {
  const rand = prng(spec.seed)
  const entries: MapEntry[] = []
  for (let j = 0; j < spec.size; j++) {
    const i = Math.floor(rand() * 1000)
    entries.push({ key: pick(rand, KEY_STYLES)(i, j), value: randomValue(rand) })
  }
  const head = pick(rand, POOL)
  const height = Math.floor(rand() * 50)
  return {
    entries,
    truth: new Map(entries.map((e) => [e.key, e.value])),
    head,
    height,
    built: buildStateRoot({ head, height, entries }),
    rand,
  }
}

/** Keys to check: all of a small map; of a large one the ends, the leaf boundaries and a sample. */
function sampleKeys(b: Built, count = 10): string[] {
  const keys = [...b.built.paths.keys()]
  if (keys.length <= count) return keys
  const sorted = [...keys].sort((x, y) => compareUtf8(x, y))
  const out = new Set<string>([sorted[0]!, sorted[sorted.length - 1]!])
  for (const i of [MAP_FANOUT - 1, MAP_FANOUT, MAP_FANOUT + 1, MAP_FANOUT * MAP_FANOUT])
    if (i < sorted.length) out.add(sorted[i]!)
  while (out.size < count) out.add(pick(b.rand, keys))
  return [...out]
}

const enc = new TextEncoder()
function compareUtf8(a: string, b: string): number {
  const x = enc.encode(a)
  const y = enc.encode(b)
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!
  return x.length - y.length
}

/** Keys certainly not in the map, before, between and after its keys. */
function absentKeys(b: Built): string[] {
  const keys = [...b.truth.keys()]
  const out = ['', 'zzz@9.9.9', '\u{10FFFF}']
  for (let i = 0; i < 2 && keys.length > 0; i++) {
    const k = pick(b.rand, keys)
    out.push(`${k}-x`, `${k.slice(0, -1)}`, `${k}\u0000`)
  }
  return out.filter((k) => !b.truth.has(k))
}

/** Equal values, whatever order the manifests were given in. */
function sameValue(a: MapValue | null | undefined, b: MapValue | null | undefined): boolean {
  if (!a || !b) return (a ?? null) === (b ?? null)
  const canonical = (v: MapValue) => cidOfBlock(encode(encodeValue(v))).toString()
  return canonical(a) === canonical(b)
}

/** Levels of branch nodes above the leaves of a map with `size` entries. */
function branchLevels(size: number): number {
  let width = Math.max(1, Math.ceil(size / MAP_FANOUT))
  let levels = 0
  while (width > 1) {
    width = Math.ceil(width / MAP_FANOUT)
    levels++
  }
  return levels
}

function leafOf(b: BuiltStateRoot, key: string): string {
  const path = b.paths.get(key)!
  return cidKey(path[path.length - 1]!)
}

/** The same map with one value changed (or, for the empty map, one entry added). */
function changedOne(b: Built): { entries: MapEntry[]; key: string } {
  if (b.entries.length === 0)
    return { entries: [{ key: 'm0@1.0.0', value: randomValue(b.rand) }], key: 'm0@1.0.0' }
  const i = Math.floor(b.rand() * b.entries.length)
  const old = b.entries[i]!
  let value = randomValue(b.rand)
  while (sameValue(value, old.value)) value = randomValue(b.rand)
  const entries = [...b.entries]
  entries[i] = { key: old.key, value }
  return { entries, key: old.key }
}

const sizeArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 200 }) },
  { weight: 1, arbitrary: fc.constantFrom(...BOUNDARY_SIZES, 127, 128, 129, 257) },
)
const specArb: fc.Arbitrary<MapSpec> = fc.record({
  size: sizeArb,
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
})
/** Every boundary size is run at least once, whatever the random sizes. */
const examples: [MapSpec][] = BOUNDARY_SIZES.map((size) => [{ size, seed: 1000 + size }])
const params = { numRuns: RUNS, examples }

describe('state root proofs', () => {
  it('prove every key’s value and every absent key’s absence', () => {
    fc.assert(
      fc.property(specArb, (spec) => {
        const b = build(spec)
        for (const k of sampleKeys(b)) {
          const proof = proveKey(b.built, k)
          // O(log n): the root block, the branches, the leaf.
          expect(proof.length).toBe(b.built.paths.get(k)!.length)
          expect(proof.length).toBe(2 + branchLevels(spec.size))
          const r = verifyProof(b.built.root, k, proof)
          expect(r.ok).toBe(true)
          if (!r.ok) return
          expect(sameValue(r.value.value, b.truth.get(k))).toBe(true)
          expect(r.value.head.equals(b.head)).toBe(true)
          expect(r.value.height).toBe(b.height)
          expect(r.value.count).toBe(spec.size)
        }
        for (const k of absentKeys(b)) {
          const r = verifyProof(b.built.root, k, proveKey(b.built, k))
          expect(r.ok).toBe(true)
          if (r.ok) expect(r.value.value).toBeNull()
        }
      }),
      params,
    )
  })

  it('give the same root for the same entries in any order', () => {
    fc.assert(
      fc.property(specArb, fc.integer(), (spec, shuffleSeed) => {
        const b = build(spec)
        const again = buildStateRoot({
          head: b.head,
          height: b.height,
          entries: shuffled(b.entries, prng(shuffleSeed)),
        })
        expect(again.root.equals(b.built.root)).toBe(true)
        // …and another head, height or value gives another root.
        expect(
          buildStateRoot({ head: b.head, height: b.height + 1, entries: b.entries }).root.equals(
            b.built.root,
          ),
        ).toBe(false)
        const changed = changedOne(b)
        expect(
          buildStateRoot({ head: b.head, height: b.height, entries: changed.entries }).root.equals(
            b.built.root,
          ),
        ).toBe(false)
      }),
      { numRuns: RUNS, examples: examples.map(([spec]): [MapSpec, number] => [spec, spec.size]) },
    )
  })

  it('refuse every altered proof, and never yield a value the map does not hold', () => {
    fc.assert(
      fc.property(specArb, (spec) => {
        const b = build(spec)
        const keys = sampleKeys(b, 3)
        const targets = keys.length > 0 ? keys : absentKeys(b).slice(0, 2)
        const changed = changedOne(b)
        const other = buildStateRoot({ head: b.head, height: b.height, entries: changed.entries })
        const otherTruth = new Map(changed.entries.map((e) => [e.key, e.value]))
        for (const k of targets) {
          const proof = proveKey(b.built, k)
          // A block dropped, whichever.
          for (let i = 0; i < proof.length; i++) {
            const r = verifyProof(
              b.built.root,
              k,
              proof.filter((_, j) => j !== i),
            )
            expect(r.ok).toBe(false)
            if (!r.ok) expect(r.code).toBe('proof-block-missing')
          }
          // A byte flipped in any block, anywhere in it.
          for (let i = 0; i < proof.length; i++) {
            const blk = proof[i]!
            const at = Math.floor(b.rand() * blk.bytes.length)
            const bytes = Uint8Array.from(blk.bytes)
            bytes[at]! ^= 1 << Math.floor(b.rand() * 8)
            const altered: Block[] = proof.map((x, j) => (j === i ? { cid: x.cid, bytes } : x))
            const r = verifyProof(b.built.root, k, altered)
            expect(r.ok).toBe(false)
            if (!r.ok) expect(r.code).toBe('proof-block-invalid')
          }
          // Under another root (a map that differs in one value): refused, or that map's own value.
          expect(other.root.equals(b.built.root)).toBe(false)
          const under = verifyProof(other.root, k, proof)
          expect(under.ok).toBe(false)
          const withRoot = verifyProof(other.root, k, [...proof, other.blocks.get(cidKey(other.root))!])
          if (withRoot.ok) expect(sameValue(withRoot.value.value, otherTruth.get(k))).toBe(true)
          const mixed = verifyProof(other.root, k, [...proof, ...proveKey(other, k)])
          expect(mixed.ok).toBe(true)
          if (mixed.ok) expect(sameValue(mixed.value.value, otherTruth.get(k))).toBe(true)
          // Used for another key: refused if that key lives in another leaf; its own value (or
          // absence) if it shares the leaf — never k's value.
          const others = [...absentKeys(b).slice(0, 2), ...sampleKeys(b, 4).filter((x) => x !== k)]
          for (const k2 of others) {
            const r = verifyProof(b.built.root, k2, proof)
            const sameLeaf = b.truth.has(k) && b.truth.has(k2) && leafOf(b.built, k) === leafOf(b.built, k2)
            if (b.truth.has(k2) && !sameLeaf) {
              expect(r.ok).toBe(false)
              if (!r.ok) expect(r.code).toBe('proof-block-missing')
            }
            if (r.ok) expect(sameValue(r.value.value, b.truth.get(k2) ?? null)).toBe(true)
          }
        }
      }),
      params,
    )
  })

  it('refuses a map with one key twice', () => {
    const value: MapValue = { status: 'proposed', manifests: [], decision: null }
    expect(() =>
      buildStateRoot({
        head: POOL[0]!,
        height: 0,
        entries: [
          { key: 'a@1.0.0', value },
          { key: 'a@1.0.0', value },
        ],
      }),
    ).toThrow(TypeError)
  })
})
