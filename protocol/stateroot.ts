/**
 * State roots and lookup proofs (SPEC.md §11.1). The state root
 * commits to the governance head and to a Merkle map from `name@version` to
 * the entry value of `stateroot-entry.ts`:
 *
 * - entries sorted by the UTF-8 bytes of their key;
 * - leaves of `MAP_FANOUT` (64) consecutive entries, the last the rest:
 *   `[0, [[key, value], …]]` (the empty map is the single leaf `[0, []]`);
 * - each level above groups `MAP_FANOUT` consecutive nodes:
 *   `[1, [[first key of the child, child CID], …]]`;
 * - the root block `{head, height, count, map}` names the head, its chain
 *   height, the number of entries and, by a CID link, the top node of the map.
 *
 * A proof for a key is the root block and the blocks on the path to the
 * leaf that holds — or would hold — the key: O(log n) blocks. The path alone
 * proves presence and absence only because every node on it is checked to
 * be the node the canonical builder would make: `count` fixes how many
 * levels there are and how many items each node holds, and keys fix which
 * node a key can be in. `verifyProof` checks each of these rules in turn.
 */
import { CID } from 'multiformats/cid'
import { compareBytes, equalBytes, utf8 } from './bytes.js'
import { decodeStrict, encode, type ScanLimits } from './cbor.js'
import { cidKey, cidOfBlock, isRecordCid } from './cid.js'
import type { Block } from './cidlist.js'
import { ok, type Result, reject } from './result.js'
import { encodeValue, type MapValue, parseValue } from './stateroot-entry.js'

export * from './stateroot-entry.js'

export const MAP_FANOUT = 64

export interface MapEntry {
  readonly key: string
  readonly value: MapValue
}

export interface StateRootInput {
  readonly head: CID
  readonly height: number
  readonly entries: readonly MapEntry[]
}

export interface BuiltStateRoot {
  readonly root: CID
  /** Every block, by CID key. */
  readonly blocks: ReadonlyMap<string, Block>
  /** For each key, the CIDs of the blocks on its path, root first. */
  readonly paths: ReadonlyMap<string, readonly CID[]>
}

function block(value: unknown): Block {
  const bytes = encode(value)
  return { cid: cidOfBlock(bytes), bytes }
}

function compareKeys(a: string, b: string): number {
  return compareBytes(utf8.encode(a), utf8.encode(b))
}

/** Builds the state root and remembers each key's path for `prove`. */
export function buildStateRoot(input: StateRootInput): BuiltStateRoot {
  const entries = [...input.entries].sort((a, b) => compareKeys(a.key, b.key))
  for (let i = 1; i < entries.length; i++) {
    if (entries[i - 1]!.key === entries[i]!.key)
      throw new TypeError(`key ${entries[i]!.key} twice in a state map`)
  }
  const blocks = new Map<string, Block>()
  const keep = (b: Block) => blocks.set(cidKey(b.cid), b)
  // Each node: its block CID, its first key, and the keys beneath it.
  type Node = { cid: CID; first: string; keys: string[] }
  let level: Node[] = []
  if (entries.length === 0) {
    const leaf = block([0, []])
    keep(leaf)
    level = [{ cid: leaf.cid, first: '', keys: [] }]
  }
  for (let i = 0; i < entries.length; i += MAP_FANOUT) {
    const chunk = entries.slice(i, i + MAP_FANOUT)
    const leaf = block([0, chunk.map((e) => [e.key, encodeValue(e.value)])])
    keep(leaf)
    level.push({ cid: leaf.cid, first: chunk[0]!.key, keys: chunk.map((e) => e.key) })
  }
  const paths = new Map<string, CID[]>()
  for (const n of level) for (const k of n.keys) paths.set(k, [n.cid])
  while (level.length > 1) {
    const next: Node[] = []
    for (let i = 0; i < level.length; i += MAP_FANOUT) {
      const chunk = level.slice(i, i + MAP_FANOUT)
      const branch = block([1, chunk.map((n) => [n.first, n.cid])])
      keep(branch)
      const keys = chunk.flatMap((n) => n.keys)
      for (const k of keys) paths.get(k)!.unshift(branch.cid)
      next.push({ cid: branch.cid, first: chunk[0]!.first, keys })
    }
    level = next
  }
  const root = block({ head: input.head, height: input.height, count: entries.length, map: level[0]!.cid })
  keep(root)
  for (const p of paths.values()) p.unshift(root.cid)
  return { root: root.cid, blocks, paths }
}

/** The blocks proving the value (or absence) of `key` under `built.root`. */
export function proveKey(built: BuiltStateRoot, key: string): Block[] {
  const out: Block[] = [built.blocks.get(cidKey(built.root))!]
  const rootValue = decodeStrict(out[0]!.bytes, PROOF_SCAN)
  let cid = ((rootValue.ok ? rootValue.value : {}) as { map: CID }).map
  for (;;) {
    const b = built.blocks.get(cidKey(cid))!
    out.push(b)
    const node = (decodeStrict(b.bytes, PROOF_SCAN) as { ok: true; value: [number, unknown[]] }).value
    if (node[0] === 0) return out
    const children = node[1] as [string, CID][]
    cid =
      children[
        pickChild(
          children.map(([first]) => first),
          key,
        )
      ]![1]
  }
}

const PROOF_SCAN: ScanLimits = {
  maxBytes: 1024 * 1024,
  maxDepth: 8,
  maxStringBytes: 1024,
  maxBytesLength: 128,
  maxCollectionItems: 4096,
}

export interface RootInfo {
  readonly head: CID
  readonly height: number
  readonly count: number
}

export interface ProofResult extends RootInfo {
  /** The value under the key, or null when the map proves it absent. */
  readonly value: MapValue | null
}

type BlockGetter = (cid: CID) => Uint8Array | undefined

function blockGetter(blocks: readonly Block[] | ReadonlyMap<string, Block> | BlockGetter): BlockGetter {
  if (typeof blocks === 'function') return blocks
  const byKey = blocks instanceof Map ? blocks : new Map((blocks as Block[]).map((b) => [cidKey(b.cid), b]))
  return (cid) => byKey.get(cidKey(cid))?.bytes
}

/** A proof block: named by a CIDv1 dag-cbor sha2-256, present, hashing to its CID, strict DAG-CBOR. */
function loadBlock(get: BlockGetter, cid: CID): Result<unknown> {
  if (!isRecordCid(cid)) return reject('proof-block-invalid', `${cid} is not a CIDv1 dag-cbor sha2-256`)
  const bytes = get(cid)
  if (!bytes) return reject('proof-block-missing', `proof block ${cid} is missing`)
  if (!equalBytes(cidOfBlock(bytes).bytes, cid.bytes))
    return reject('proof-block-invalid', `block ${cid} does not match its CID`)
  const decoded = decodeStrict(bytes, PROOF_SCAN)
  if (!decoded.ok) return reject('proof-block-invalid', `block ${cid}: ${decoded.message}`)
  return decoded
}

function isCount(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0
}

/** The root block is exactly `{head, height, count, map}`, and `map` is a CID link. */
function parseRootBlock(v: unknown): Result<RootInfo & { readonly map: CID }> {
  const top = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>
  const head = CID.asCID(top.head)
  if (
    !head ||
    !isCount(top.height) ||
    !isCount(top.count) ||
    Object.keys(top).length !== 4 ||
    !('map' in top)
  )
    return reject('proof-shape', 'the root block is not {head, height, count, map}')
  const map = CID.asCID(top.map)
  if (!map) return reject('proof-shape', 'the root block names its top map node by a CID link, not inline')
  return ok({ head, height: top.height, count: top.count, map })
}

/** How many items the nodes of each level hold in all (level 0: the leaves), and how many nodes. */
interface MapShape {
  readonly items: readonly number[]
  readonly nodes: readonly number[]
}

function mapShape(count: number): MapShape {
  const items = [count]
  const nodes = [Math.max(1, Math.ceil(count / MAP_FANOUT))]
  while (nodes[nodes.length - 1]! > 1) {
    items.push(nodes[nodes.length - 1]!)
    nodes.push(Math.ceil(items[items.length - 1]! / MAP_FANOUT))
  }
  return { items, nodes }
}

/** A decoded map node: its keys, and per key a value (leaf) or a child CID (branch). */
interface MapNode {
  readonly keys: readonly string[]
  readonly values: readonly unknown[]
  readonly children: readonly CID[]
}

/** `[0, [[key, value], …]]` at level 0, `[1, [[key, CID], …]]` above: the levels `count` implies. */
function parseNode(v: unknown, level: number): Result<MapNode> {
  if (!Array.isArray(v) || v.length !== 2 || (v[0] !== 0 && v[0] !== 1) || !Array.isArray(v[1]))
    return reject('proof-shape', 'a map node is [0, items] or [1, items]')
  if (v[0] !== (level === 0 ? 0 : 1))
    return reject('proof-shape', `count implies a ${level === 0 ? 'leaf' : 'branch'} at this depth`)
  const keys: string[] = []
  const values: unknown[] = []
  const children: CID[] = []
  for (const item of v[1] as unknown[]) {
    if (!Array.isArray(item) || item.length !== 2 || typeof item[0] !== 'string')
      return reject('proof-shape', 'a map node item is [key, value] or [first key, child CID]')
    keys.push(item[0])
    if (level === 0) values.push(item[1])
    else {
      const child = CID.asCID(item[1])
      if (!child) return reject('proof-shape', 'a branch item is [first key, child CID]')
      children.push(child)
    }
  }
  return ok({ keys, values, children })
}

/** Node `index` of `level` holds 64 items unless it is the level's last node, which holds the rest. */
function countAgreesWithNode(node: MapNode, shape: MapShape, level: number, index: number): Result<true> {
  const last = shape.nodes[level]! - 1
  const expected = index < last ? MAP_FANOUT : shape.items[level]! - MAP_FANOUT * last
  if (node.keys.length !== expected)
    return reject('proof-shape', `count implies ${expected} items in this node, not ${node.keys.length}`)
  return ok(true)
}

function keysIncreasing(node: MapNode): Result<true> {
  for (let i = 1; i < node.keys.length; i++) {
    if (compareKeys(node.keys[i - 1]!, node.keys[i]!) >= 0)
      return reject('proof-shape', 'the keys of a map node are not strictly increasing')
  }
  return ok(true)
}

/** The key range the parent's entry gives a node: ≥ its key, < the next entry's key (or the parent's bound). */
interface Bounds {
  readonly lower?: string
  readonly upper?: string
}

function firstKeyIsParentKey(node: MapNode, bounds: Bounds): Result<true> {
  if (bounds.lower !== undefined && node.keys[0] !== bounds.lower)
    return reject('proof-shape', 'a branch names another first key than its child holds')
  return ok(true)
}

// With the first key equal to the lower bound and keys increasing, only the upper bound can
// still fail here; the lower one is checked anyway so each rule stands on its own.
function keysWithinBounds(node: MapNode, bounds: Bounds): Result<true> {
  for (const key of node.keys) {
    if (bounds.lower !== undefined && compareKeys(key, bounds.lower) < 0)
      return reject('proof-shape', 'a map node holds a key below its parent entry')
    if (bounds.upper !== undefined && compareKeys(key, bounds.upper) >= 0)
      return reject('proof-shape', "a map node holds a key at or beyond its parent's next entry")
  }
  return ok(true)
}

/** The last child whose first key is ≤ `key`; the first child when `key` is below them all. */
function pickChild(firstKeys: readonly string[], key: string): number {
  let pick = 0
  for (let i = 1; i < firstKeys.length; i++) if (compareKeys(firstKeys[i]!, key) <= 0) pick = i
  return pick
}

function childBounds(node: MapNode, pick: number, bounds: Bounds): Bounds {
  const upper = pick + 1 < node.keys.length ? node.keys[pick + 1] : bounds.upper
  return upper === undefined ? { lower: node.keys[pick]! } : { lower: node.keys[pick]!, upper }
}

/** Every shape rule for one node on the path. */
function checkNode(
  node: MapNode,
  shape: MapShape,
  level: number,
  index: number,
  bounds: Bounds,
): Result<true> {
  const checks = [
    () => countAgreesWithNode(node, shape, level, index),
    () => keysIncreasing(node),
    () => firstKeyIsParentKey(node, bounds),
    () => keysWithinBounds(node, bounds),
  ]
  for (const check of checks) {
    const r = check()
    if (!r.ok) return r
  }
  return ok(true)
}

function readLeaf(node: MapNode, key: string): Result<MapValue | null> {
  const at = node.keys.indexOf(key)
  if (at < 0) return ok(null)
  const parsed = parseValue(node.values[at])
  if ('problem' in parsed)
    return reject('proof-shape', `the value under ${key} is malformed: ${parsed.problem}`)
  return ok(parsed.value)
}

/**
 * Checks a proof: the blocks hash to the CIDs that name them, from `root`
 * down the path that `key` selects, every node has the shape the canonical
 * builder gives a map of `count` entries, and reads the value (or its
 * absence). Pure; never throws.
 */
export function verifyProof(
  root: CID,
  key: string,
  blocks: readonly Block[] | ReadonlyMap<string, Block> | BlockGetter,
): Result<ProofResult> {
  const get = blockGetter(blocks)
  const top = loadBlock(get, root)
  if (!top.ok) return top
  const info = parseRootBlock(top.value)
  if (!info.ok) return info
  const { head, height, count, map } = info.value
  const shape = mapShape(count)
  let bounds: Bounds = {}
  let index = 0
  let cid = map
  for (let level = shape.nodes.length - 1; ; level--) {
    const loaded = loadBlock(get, cid)
    if (!loaded.ok) return loaded
    const node = parseNode(loaded.value, level)
    if (!node.ok) return node
    const checked = checkNode(node.value, shape, level, index, bounds)
    if (!checked.ok) return checked
    if (level === 0) {
      const value = readLeaf(node.value, key)
      return value.ok ? ok({ head, height, count, value: value.value }) : value
    }
    const pick = pickChild(node.value.keys, key)
    bounds = childBounds(node.value, pick, bounds)
    index = index * MAP_FANOUT + pick
    cid = node.value.children[pick]!
  }
}
