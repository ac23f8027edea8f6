/**
 * Canonical CID lists (SPEC.md §6). Seals name the votes and attestations
 * they counted, and checkpoints the decisions they finalize, as the root of
 * a list stored in DAG-CBOR blocks. Two honest nodes holding the same list
 * must produce the same root, so the shape is fixed by the entries alone:
 *
 * - entries are sorted by the bytes of their CID, strictly increasing;
 *   an entry is a CID, or `[CID, text]` for a CID with a label (a
 *   checkpoint's `(proposal, outcome)`);
 * - leaves hold `FANOUT` (256) consecutive entries, the last one the rest:
 *   the block `[0, [entry, …]]`; the empty list is the single leaf `[0, []]`;
 * - each level above groups `FANOUT` consecutive nodes of the level below,
 *   the last group the rest: the block `[1, [child CID, …]]`;
 * - the root is the single node of the top level; `count` travels beside
 *   the root, so a reader knows the exact shape before it reads a block.
 */
import { CID } from 'multiformats/cid'
import { equalBytes } from './bytes.js'
import { decodeStrict, encode, type ScanLimits } from './cbor.js'
import { cidOfBlock, compareCids } from './cid.js'
import { LIMITS } from './limits.js'
import { ok, type Result, reject } from './result.js'
import type { CidList } from './types.js'

export const FANOUT = LIMITS.listFanout

export type ListEntry = CID | readonly [CID, string]

export interface Block {
  readonly cid: CID
  readonly bytes: Uint8Array
}

export interface BuiltList extends CidList {
  /** Every block of the list, root included, in no particular order. */
  readonly blocks: readonly Block[]
}

export function entryCid(e: ListEntry): CID {
  return Array.isArray(e) ? (e as readonly [CID, string])[0] : (e as CID)
}

function compareEntries(a: ListEntry, b: ListEntry): number {
  return compareCids(entryCid(a), entryCid(b))
}

function block(value: unknown): Block {
  const bytes = encode(value)
  return { cid: cidOfBlock(bytes), bytes }
}

/** Builds the canonical list of `entries` (sorted here; duplicates of a CID are an error). */
export function buildList(entries: readonly ListEntry[]): BuiltList {
  const sorted = [...entries].sort(compareEntries)
  for (let i = 1; i < sorted.length; i++) {
    if (compareEntries(sorted[i - 1]!, sorted[i]!) === 0)
      throw new TypeError('a CID list cannot hold one CID twice')
  }
  const blocks: Block[] = []
  let level: CID[] = []
  if (sorted.length === 0) {
    const leaf = block([0, []])
    blocks.push(leaf)
    level = [leaf.cid]
  }
  for (let i = 0; i < sorted.length; i += FANOUT) {
    const leaf = block([0, sorted.slice(i, i + FANOUT)])
    blocks.push(leaf)
    level.push(leaf.cid)
  }
  while (level.length > 1) {
    const next: CID[] = []
    for (let i = 0; i < level.length; i += FANOUT) {
      const branch = block([1, level.slice(i, i + FANOUT)])
      blocks.push(branch)
      next.push(branch.cid)
    }
    level = next
  }
  return { root: level[0]!, count: sorted.length, blocks }
}

/** The limits a list block is decoded under (strict DAG-CBOR, SPEC §6). */
export const LIST_SCAN: ScanLimits = {
  maxBytes: LIMITS.maxListBlockBytes,
  maxDepth: 4,
  maxStringBytes: 64,
  maxBytesLength: 128,
  maxCollectionItems: FANOUT,
}

/** Sizes of the nodes of each level, bottom (leaves, in entries) to top, for `count` entries. */
function shape(count: number): number[][] {
  const leaves: number[] = []
  if (count === 0) leaves.push(0)
  for (let i = 0; i < count; i += FANOUT) leaves.push(Math.min(FANOUT, count - i))
  const levels = [leaves]
  let width = leaves.length
  while (width > 1) {
    const sizes: number[] = []
    for (let i = 0; i < width; i += FANOUT) sizes.push(Math.min(FANOUT, width - i))
    levels.push(sizes)
    width = sizes.length
  }
  return levels
}

export type BlockSource = (cid: CID) => Uint8Array | undefined

/**
 * Reads and checks a canonical list: each block's hash, its exact shape for
 * `count`, strict entry order. Pure: blocks come from `getBlock`.
 */
export function readList(list: CidList, getBlock: BlockSource, labelled = false): Result<ListEntry[]> {
  if (!Number.isSafeInteger(list.count) || list.count < 0 || list.count > LIMITS.maxListEntries) {
    return reject('list-count', `a list holds 0 to ${LIMITS.maxListEntries} entries`)
  }
  const levels = shape(list.count)
  const out: ListEntry[] = []
  // Depth-first, left to right: `index[l]` is the next node expected at level l.
  const index = levels.map(() => 0)
  const visit = (cid: CID, level: number): Result<true> => {
    const bytes = getBlock(cid)
    if (bytes === undefined)
      return reject('list-block-missing', `list block ${cid.toString()} is not available`)
    if (!equalBytes(cidOfBlock(bytes).bytes, cid.bytes))
      return reject('list-block-invalid', `block ${cid.toString()} does not match its CID`)
    const decoded = decodeStrict(bytes, LIST_SCAN)
    if (!decoded.ok) return reject('list-block-invalid', `list block ${cid.toString()}: ${decoded.message}`)
    const node = decoded.value
    const expected = levels[level]![index[level]!]
    index[level]!++
    if (
      !Array.isArray(node) ||
      node.length !== 2 ||
      node[0] !== (level === 0 ? 0 : 1) ||
      !Array.isArray(node[1])
    ) {
      return reject('list-shape', `list block ${cid.toString()} is not a ${level === 0 ? 'leaf' : 'branch'}`)
    }
    const items = node[1] as unknown[]
    if (items.length !== expected)
      return reject('list-shape', `list block ${cid.toString()} holds ${items.length} items, not ${expected}`)
    if (level > 0) {
      for (const child of items) {
        const c = CID.asCID(child)
        if (c === null) return reject('list-shape', 'a branch holds something other than CIDs')
        const r = visit(c, level - 1)
        if (!r.ok) return r
      }
      return ok(true)
    }
    for (const item of items) {
      let entry: ListEntry
      if (labelled) {
        if (
          !Array.isArray(item) ||
          item.length !== 2 ||
          CID.asCID(item[0]) === null ||
          typeof item[1] !== 'string'
        ) {
          return reject('list-shape', 'a labelled list entry is [CID, text]')
        }
        entry = [CID.asCID(item[0])!, item[1]]
      } else {
        const c = CID.asCID(item)
        if (c === null) return reject('list-shape', 'a list entry is a CID')
        entry = c
      }
      const prev = out[out.length - 1]
      if (prev !== undefined && compareEntries(prev, entry) >= 0) {
        return reject('list-order', 'list entries must be sorted by CID bytes without repeats')
      }
      out.push(entry)
    }
    return ok(true)
  }
  const r = visit(list.root, levels.length - 1)
  if (!r.ok) return r
  return ok(out)
}
