/**
 * State roots and lookup proofs (SPEC.md §11). The state root commits to the
 * governance head and to a Merkle map from `name@version` to
 * `{status, manifests, decision}`:
 *
 * - entries sorted by the UTF-8 bytes of their key;
 * - leaves of `MAP_FANOUT` (64) consecutive entries, the last the rest:
 *   `[0, [[key, value], …]]` (the empty map is the single leaf `[0, []]`);
 * - each level above groups `MAP_FANOUT` consecutive nodes:
 *   `[1, [[first key of the child, child CID], …]]`;
 * - the root block `{head, height, count, map}` names the head, its chain
 *   height, the number of entries and the top node of the map.
 *
 * A proof for a key is the root block and the blocks on the path to the
 * leaf that holds — or would hold — the key: O(log n) blocks. Because the
 * root is signed by stewards who build it canonically, the path alone
 * proves presence and absence.
 */
import { CID } from 'multiformats/cid'
import { compareBytes, equalBytes, utf8 } from './bytes.js'
import { decodeStrict, encode, type ScanLimits } from './cbor.js'
import { cidKey, cidOfBlock, compareCids } from './cid.js'
import type { Block } from './cidlist.js'
import { ok, type Result, reject } from './result.js'

export const MAP_FANOUT = 64

export type EntryStatus = 'ratified' | 'conflicted' | 'revoked' | 'proposed'
export const ENTRY_STATUSES: readonly EntryStatus[] = ['ratified', 'conflicted', 'revoked', 'proposed']

export interface MapValue {
  readonly status: EntryStatus
  /** Manifests behind the status, sorted by CID. */
  readonly manifests: readonly CID[]
  /** The ratifying proposal (ratified) or a revoking one (revoked); null otherwise. */
  readonly decision: CID | null
}

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

function encodeValue(v: MapValue): unknown {
  return { status: v.status, manifests: [...v.manifests].sort(compareCids), decision: v.decision }
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
    let pick = children[0]![1]
    for (const [first, child] of children) if (compareKeys(first, key) <= 0) pick = child
    cid = pick
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

function parseValue(v: unknown): MapValue | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined
  const o = v as Record<string, unknown>
  if (Object.keys(o).length !== 3) return undefined
  if (!ENTRY_STATUSES.includes(o.status as EntryStatus)) return undefined
  if (!Array.isArray(o.manifests) || o.manifests.some((m) => CID.asCID(m) === null)) return undefined
  if (o.decision !== null && CID.asCID(o.decision) === null) return undefined
  return {
    status: o.status as EntryStatus,
    manifests: o.manifests as CID[],
    decision: (o.decision as CID | null) ?? null,
  }
}

/**
 * Checks a proof: the blocks hash to the CIDs that name them, from `root`
 * down the path that `key` selects, and reads the value (or its absence).
 * Pure; never throws.
 */
export function verifyProof(
  root: CID,
  key: string,
  blocks: readonly Block[] | ReadonlyMap<string, Block> | ((cid: CID) => Uint8Array | undefined),
): Result<ProofResult> {
  let get: (cid: CID) => Uint8Array | undefined
  if (typeof blocks === 'function') get = blocks
  else {
    const byKey = blocks instanceof Map ? blocks : new Map((blocks as Block[]).map((b) => [cidKey(b.cid), b]))
    get = (cid) => byKey.get(cidKey(cid))?.bytes
  }
  const load = (cid: CID): Result<unknown> => {
    const bytes = get(cid)
    if (!bytes) return reject('proof-block-missing', `proof block ${cid} is missing`)
    if (!equalBytes(cidOfBlock(bytes).bytes, cid.bytes)) {
      return reject('proof-block-invalid', `block ${cid} does not match its CID`)
    }
    const d = decodeStrict(bytes, PROOF_SCAN)
    if (!d.ok) return reject('proof-block-invalid', `block ${cid}: ${d.message}`)
    return d
  }
  const r = load(root)
  if (!r.ok) return r
  const top = r.value as Record<string, unknown>
  const head = CID.asCID(top?.head)
  const map = CID.asCID(top?.map)
  if (
    !head ||
    !map ||
    !Number.isSafeInteger(top.height) ||
    !Number.isSafeInteger(top.count) ||
    Object.keys(top).length !== 4
  ) {
    return reject('proof-shape', 'the root block is not {head, height, count, map}')
  }
  const info = { head, height: top.height as number, count: top.count as number }
  let cid = map
  for (let depth = 0; depth < 8; depth++) {
    const n = load(cid)
    if (!n.ok) return n
    const node = n.value
    if (!Array.isArray(node) || node.length !== 2 || !Array.isArray(node[1]))
      return reject('proof-shape', 'a map node is [tag, items]')
    const items = node[1] as unknown[]
    if (node[0] === 0) {
      for (const item of items) {
        if (!Array.isArray(item) || item.length !== 2 || typeof item[0] !== 'string')
          return reject('proof-shape', 'a leaf entry is [key, value]')
        if (item[0] === key) {
          const value = parseValue(item[1])
          if (!value) return reject('proof-shape', `the value under ${key} is malformed`)
          return ok({ ...info, value })
        }
      }
      return ok({ ...info, value: null })
    }
    if (node[0] !== 1 || items.length === 0)
      return reject('proof-shape', 'a map node is a leaf or a non-empty branch')
    let pick: CID | undefined
    for (const item of items) {
      if (
        !Array.isArray(item) ||
        item.length !== 2 ||
        typeof item[0] !== 'string' ||
        CID.asCID(item[1]) === null
      ) {
        return reject('proof-shape', 'a branch entry is [first key, child CID]')
      }
      if (pick === undefined || compareKeys(item[0], key) <= 0) pick = CID.asCID(item[1])!
    }
    cid = pick!
  }
  return reject('proof-shape', 'the map is deeper than any honest map')
}
