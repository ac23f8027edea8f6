/**
 * The shape rules of state-root proofs (SPEC.md §11.1): for each rule, a map that breaks only
 * that rule — its blocks re-encoded and the CIDs above them fixed, so every block still matches
 * its CID and every other rule still holds — is refused with `proof-shape` (or
 * `proof-block-invalid` for a block named by another kind of CID). Honest maps of the sizes at
 * the leaf and branch boundaries verify for present and absent keys.
 */
import type { MultihashDigest } from 'multiformats/hashes/interface'
import { sha512 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import {
  type Block,
  type BuiltStateRoot,
  buildStateRoot,
  CID,
  cidOfBlock,
  decodeStrict,
  encode,
  MAP_FANOUT,
  type MapEntry,
  type MapValue,
  plainManifestEntry,
  proveKey,
  RAW_CODE,
  verifyProof,
} from '../../../protocol/index.js'

const HEAD = cidOfBlock(encode({ head: 'of the chain' }))
const MANIFEST = cidOfBlock(encode({ manifest: 1 }))
const DECISION = cidOfBlock(encode({ decision: 1 }))
const VALUE: MapValue = {
  status: 'ratified',
  decision: DECISION,
  manifests: [plainManifestEntry(MANIFEST, true, false)],
}
const ENCODED_VALUE = {
  status: 'ratified',
  decision: DECISION,
  manifests: [{ cid: MANIFEST, ratified: true, revoked: false, suspension: null, taint: null }],
}

/** The i-th key: fixed width, so key order is index order. */
const keyAt = (i: number): string => `m${String(i).padStart(7, '0')}@1.0.0`

function entries(size: number): MapEntry[] {
  return Array.from({ length: size }, (_, i) => ({ key: keyAt(i), value: VALUE }))
}

function honest(size: number): BuiltStateRoot {
  return buildStateRoot({ head: HEAD, height: 3, entries: entries(size) })
}

const blockOf = (value: unknown): Block => {
  const bytes = encode(value)
  return { cid: cidOfBlock(bytes), bytes }
}

const decoded = (b: Block): unknown => {
  const d = decodeStrict(b.bytes, {
    maxBytes: 1 << 24,
    maxDepth: 16,
    maxStringBytes: 4096,
    maxBytesLength: 4096,
    maxCollectionItems: 1 << 16,
  })
  if (!d.ok) throw new Error(d.message)
  return d.value
}

type Item = [string, unknown]
type Node = [number, Item[]]
type Root = { head: CID; height: number; count: number; map: unknown }

/** A proof rebuilt: its blocks, root first, and the root CID. */
interface Proof {
  readonly root: CID
  readonly blocks: Block[]
}

/**
 * The proof of `key` in `built` with `edit` applied to its decoded blocks (root first), then
 * re-encoded bottom-up, each parent's link to the old child replaced by the new child's CID.
 * The map's other blocks come along, so a lookup the edit sends elsewhere finds its blocks.
 */
function edited(built: BuiltStateRoot, key: string, edit: (root: Root, nodes: Node[]) => void): Proof {
  const path = proveKey(built, key)
  const root = decoded(path[0]!) as Root
  const nodes = path.slice(1).map((b) => decoded(b) as Node)
  edit(root, nodes)
  const blocks: Block[] = []
  let childOld: CID | undefined
  let childNew: CID | undefined
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i]!
    if (childOld && childNew) {
      for (const item of node[1]) if (CID.asCID(item[1])?.equals(childOld)) item[1] = childNew
    }
    const b = blockOf(node)
    blocks.unshift(b)
    childOld = path[i + 1]!.cid
    childNew = b.cid
  }
  if (childOld && childNew && CID.asCID(root.map)?.equals(childOld)) root.map = childNew
  const rootBlock = blockOf(root)
  return { root: rootBlock.cid, blocks: [rootBlock, ...blocks, ...built.blocks.values()] }
}

/** A whole map assembled by hand: leaves of the given items, branches grouping the given counts. */
function assembled(leaves: Item[][], groups: number[][], count: number): Proof & { all: Block[] } {
  const all: Block[] = []
  let level = leaves.map((items) => {
    const b = blockOf([0, items])
    all.push(b)
    return { cid: b.cid, first: items[0]?.[0] ?? '' }
  })
  for (const sizes of groups) {
    const next: typeof level = []
    let at = 0
    for (const size of sizes) {
      const children = level.slice(at, at + size)
      at += size
      const b = blockOf([1, children.map((c) => [c.first, c.cid])])
      all.push(b)
      next.push({ cid: b.cid, first: children[0]!.first })
    }
    level = next
  }
  const rootBlock = blockOf({ head: HEAD, height: 3, count, map: level[0]!.cid })
  all.push(rootBlock)
  return { root: rootBlock.cid, blocks: all, all }
}

const items = (from: number, to: number): Item[] =>
  Array.from({ length: to - from }, (_, i) => [keyAt(from + i), ENCODED_VALUE])

function refused(proof: Proof, key: string, code = 'proof-shape', message?: RegExp): void {
  const r = verifyProof(proof.root, key, proof.blocks)
  expect(r.ok, `${key} should be refused`).toBe(false)
  if (r.ok) return
  expect(r.code).toBe(code)
  if (message) expect(r.message).toMatch(message)
}

function accepted(proof: Proof, key: string): MapValue | null {
  const r = verifyProof(proof.root, key, proof.blocks)
  expect(r.ok, r.ok ? '' : r.message).toBe(true)
  return r.ok ? r.value.value : null
}

describe('honest maps at the boundaries verify for present and absent keys', () => {
  const sizes = [0, 1, 63, 64, 65, 4095, 4096, 4097]
  for (const size of sizes) {
    it(`${size} entries`, () => {
      const built = honest(size)
      const present = [0, 62, 63, 64, 4094, 4095, 4096, size - 1].filter((i) => i >= 0 && i < size)
      for (const i of present) {
        const r = verifyProof(built.root, keyAt(i), proveKey(built, keyAt(i)))
        expect(r.ok && r.value.count).toBe(size)
        expect(r.ok && r.value.value?.status).toBe('ratified')
      }
      // Below every key (the first child), between two keys, after every key.
      for (const key of ['', `${keyAt(0)}\u0000`, `${keyAt(63)}x`, '\u{10FFFF}']) {
        const r = verifyProof(built.root, key, proveKey(built, key))
        expect(r.ok).toBe(true)
        if (r.ok) expect(r.value.value).toBeNull()
      }
    })
  }

  it('64³ + 1 entries: four levels', () => {
    const size = MAP_FANOUT ** 3 + 1
    const built = honest(size)
    for (const i of [0, MAP_FANOUT ** 2 - 1, MAP_FANOUT ** 2, MAP_FANOUT ** 3 - 1, MAP_FANOUT ** 3]) {
      const proof = proveKey(built, keyAt(i))
      expect(proof.length).toBe(5)
      const r = verifyProof(built.root, keyAt(i), proof)
      expect(r.ok && r.value.value?.status).toBe('ratified')
    }
    const after = `${keyAt(MAP_FANOUT ** 3)}x`
    const r = verifyProof(built.root, after, proveKey(built, after))
    expect(r.ok && r.value.value).toBeNull()
  })
})

describe('the root block names its top map node by a CID link', () => {
  it('a root block carrying its top map node inline is refused', () => {
    const inline = blockOf({ head: HEAD, height: 3, count: 1, map: [0, items(0, 1)] })
    refused({ root: inline.cid, blocks: [inline] }, keyAt(0), 'proof-shape', /CID link/)
  })

  it('a root block with another key, or without map, is refused', () => {
    const leaf = blockOf([0, items(0, 1)])
    for (const fields of [
      { head: HEAD, height: 3, count: 1, map: leaf.cid, extra: 1 },
      { head: HEAD, height: 3, count: 1 },
      { head: HEAD, height: 3, count: -1, map: leaf.cid },
      { head: 'x', height: 3, count: 1, map: leaf.cid },
    ]) {
      const root = blockOf(fields)
      refused({ root: root.cid, blocks: [root, leaf] }, keyAt(0))
    }
  })
})

describe('count agrees with the path', () => {
  it('2 said, 1 present', () => {
    const proof = edited(honest(1), keyAt(0), (root) => {
      root.count = 2
    })
    refused(proof, keyAt(0), 'proof-shape', /count implies 2 items/)
    refused(proof, keyAt(5))
  })

  it('129 said, 65 present', () => {
    for (const key of [keyAt(0), keyAt(64), keyAt(200)]) {
      const proof = edited(honest(65), key, (root) => {
        root.count = 129
      })
      refused(proof, key, 'proof-shape', /count implies 3 items/)
    }
  })

  it('every other miscount is refused: fewer said, or another number of levels', () => {
    for (const [size, said] of [
      [1, 0],
      [64, 63],
      [64, 65],
      [65, 64],
      [4097, 4096],
      [4096, 4097],
    ] as const) {
      const proof = edited(honest(size), keyAt(size - 1), (root) => {
        root.count = said
      })
      refused(proof, keyAt(size - 1))
    }
  })

  it('a branch above a map that fits one leaf, and one leaf holding more than 64, are refused', () => {
    const tall = assembled([items(0, 64)], [[1]], 64)
    refused(tall, keyAt(0), 'proof-shape', /implies a leaf/)
    const flat = assembled([items(0, 65)], [], 65)
    refused(flat, keyAt(0), 'proof-shape', /implies a branch/)
  })

  it('a node before the last of its level holds exactly 64; the last the rest', () => {
    // 65 entries cut 63 + 2: every key still in its place, but not the canonical cut.
    const cut = assembled([items(0, 63), items(63, 65)], [[2]], 65)
    refused(cut, keyAt(0), 'proof-shape', /64 items/)
    refused(cut, keyAt(64), 'proof-shape', /1 items/)
    // 4097 entries: leaf 63 holds 1 and leaf 64 holds 64 — the leaf's index comes from the picks above it.
    const leaves = Array.from({ length: 63 }, (_, i) => items(64 * i, 64 * i + 64))
    leaves.push(items(4032, 4033), items(4033, 4097))
    const late = assembled(leaves, [[64, 1], [2]], 4097)
    expect(accepted(late, keyAt(0))?.status).toBe('ratified')
    refused(late, keyAt(4032), 'proof-shape', /64 items/)
    refused(late, keyAt(4096), 'proof-shape', /1 items/)
    // 4097 entries with the leaves grouped 63 + 2 under the branches.
    const honestLeaves = Array.from({ length: 65 }, (_, i) => items(64 * i, Math.min(64 * i + 64, 4097)))
    const grouped = assembled(honestLeaves, [[63, 2], [2]], 4097)
    refused(grouped, keyAt(0), 'proof-shape', /64 items/)
    refused(grouped, keyAt(4096), 'proof-shape', /1 items/)
  })

  it('the empty map is count 0 and the single leaf [0, []]', () => {
    expect(accepted(assembled([[]], [], 0), keyAt(0))).toBeNull()
    refused(assembled([items(0, 1)], [], 0), keyAt(0), 'proof-shape', /0 items/)
    refused(assembled([[]], [[1]], 0), keyAt(0), 'proof-shape', /implies a leaf/)
    const emptyBranch = blockOf([1, []])
    const root = blockOf({ head: HEAD, height: 3, count: 0, map: emptyBranch.cid })
    refused({ root: root.cid, blocks: [root, emptyBranch] }, keyAt(0))
  })
})

describe('keys are strictly increasing inside a node', () => {
  it('two leaf keys swapped', () => {
    const proof = edited(honest(10), keyAt(3), (_, nodes) => {
      const leaf = nodes[0]![1]
      ;[leaf[3], leaf[4]] = [leaf[4]!, leaf[3]!]
    })
    refused(proof, keyAt(3), 'proof-shape', /strictly increasing/)
  })

  it('one leaf key twice', () => {
    const proof = edited(honest(10), keyAt(3), (_, nodes) => {
      nodes[0]![1][4]![0] = keyAt(3)
    })
    refused(proof, keyAt(3), 'proof-shape', /strictly increasing/)
  })

  it('two branch entries swapped (not the picked one)', () => {
    const proof = edited(honest(64 * 3), keyAt(0), (_, nodes) => {
      const branch = nodes[0]![1]
      ;[branch[1], branch[2]] = [branch[2]!, branch[1]!]
    })
    refused(proof, keyAt(0), 'proof-shape', /strictly increasing/)
  })
})

describe("a branch's key for a child equals that child's first key", () => {
  it('a branch naming a smaller first key for its first child', () => {
    const proof = edited(honest(65), keyAt(0), (_, nodes) => {
      nodes[0]![1][0]![0] = ''
    })
    refused(proof, keyAt(0), 'proof-shape', /first key/)
  })

  it('a branch naming a smaller first key for a later child', () => {
    const between = `${keyAt(63)}x`
    for (const key of [keyAt(64), `${keyAt(64)}\u0000`, `${between}y`]) {
      const proof = edited(honest(65), key, (_, nodes) => {
        nodes[0]![1][1]![0] = between
      })
      refused(proof, key, 'proof-shape', /first key/)
    }
  })

  it('a branch naming a larger first key for a child', () => {
    const proof = edited(honest(129), keyAt(100), (_, nodes) => {
      nodes[0]![1][1]![0] = keyAt(65)
    })
    refused(proof, keyAt(100), 'proof-shape', /first key/)
  })
})

describe("every key in a node lies within its parent entry's bounds", () => {
  it("a leaf key at or beyond the parent's next entry", () => {
    for (const last of [keyAt(64), `${keyAt(64)}x`]) {
      const proof = edited(honest(65), keyAt(0), (_, nodes) => {
        nodes[1]![1][63]![0] = last
      })
      refused(proof, keyAt(0), 'proof-shape', /beyond its parent's next entry/)
    }
  })

  it("the last child's bound is its parent's own bound", () => {
    // Leaf 63 is the last child of the first level-1 branch: its bound is the root's next entry.
    const proof = edited(honest(4097), keyAt(4032), (_, nodes) => {
      nodes[2]![1][63]![0] = `${keyAt(4096)}x`
    })
    refused(proof, keyAt(4032), 'proof-shape', /beyond its parent's next entry/)
    // The same leaf holding a key below the next entry but above its own keys is fine.
    const fine = edited(honest(4097), keyAt(4032), (_, nodes) => {
      nodes[2]![1][63]![0] = `${keyAt(4095)}x`
    })
    expect(accepted(fine, keyAt(4032))?.status).toBe('ratified')
  })
})

describe('proof blocks are CIDv1 dag-cbor sha2-256', () => {
  it('a map node named by a raw-codec CID over the same bytes', () => {
    const built = honest(1)
    const [rootBlock, leaf] = proveKey(built, keyAt(0)) as [Block, Block]
    const raw = CID.createV1(RAW_CODE, leaf.cid.multihash)
    const root = blockOf({ ...(decoded(rootBlock) as Root), map: raw })
    refused(
      { root: root.cid, blocks: [root, { cid: raw, bytes: leaf.bytes }] },
      keyAt(0),
      'proof-block-invalid',
      /CIDv1 dag-cbor sha2-256/,
    )
  })

  it('a child named by a sha2-512 CID', async () => {
    const built = honest(65)
    const path = proveKey(built, keyAt(0))
    const leaf = path[2]!
    const long = CID.createV1(0x71, await sha512.digest(leaf.bytes))
    const proof = edited(built, keyAt(0), (_, nodes) => {
      nodes[0]![1][0]![1] = long
    })
    refused(
      { root: proof.root, blocks: [...proof.blocks, { cid: long, bytes: leaf.bytes }] },
      keyAt(0),
      'proof-block-invalid',
    )
  })

  it('a root named by a CIDv0', () => {
    const built = honest(1)
    const path = proveKey(built, keyAt(0))
    const v0 = CID.createV0(path[0]!.cid.multihash as MultihashDigest<0x12>) as unknown as CID
    refused(
      { root: v0, blocks: [{ cid: v0, bytes: path[0]!.bytes }, path[1]!] },
      keyAt(0),
      'proof-block-invalid',
    )
  })
})

describe('the mutants are otherwise intact', () => {
  it('an edit that changes nothing verifies', () => {
    for (const size of [1, 65, 4097]) {
      const proof = edited(honest(size), keyAt(size - 1), () => {})
      expect(proof.root.equals(honest(size).root)).toBe(true)
      expect(accepted(proof, keyAt(size - 1))?.status).toBe('ratified')
    }
  })
})
