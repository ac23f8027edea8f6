/**
 * Where a block sits in a canonical CID list (SPEC.md §6), and whether given
 * bytes fit there. The record store keeps a list block only at a position
 * that a held seal or checkpoint names: the list's root (its `{root, count}`)
 * or, below an admitted branch, one of the branch's children. `count` fixes
 * the whole shape before any block is read, so a position says exactly what
 * the block there must be: a leaf `[0, [entry × n]]` or a branch
 * `[1, [child CID × n]]`, with `n` known.
 *
 * Why this exists beside protocol/cidlist.ts (which reads a whole list): the
 * store meets a list's blocks one at a time, from the network, in any order,
 * and must decide for each one alone whether it is named. Entries of a leaf
 * are not looked at here (their order is `readList`'s business once the list
 * is complete); a branch's children must be CIDs, since they name the next
 * blocks.
 */
import { CID } from 'multiformats/cid'
import { decodeStrict } from '../../protocol/cbor.js'
import { LIST_SCAN } from '../../protocol/cidlist.js'
import { LIMITS } from '../../protocol/limits.js'

const FANOUT = LIMITS.listFanout

/** A node of the list of `count` entries: `level` 0 holds the leaves; `index` counts from the left. */
export interface ListPosition {
  readonly count: number
  readonly level: number
  readonly index: number
}

/** Nodes on `level` of the list of `count` entries. */
function width(count: number, level: number): number {
  let w = Math.max(1, Math.ceil(count / FANOUT))
  for (let l = 0; l < level; l++) w = Math.ceil(w / FANOUT)
  return w
}

/** The root's position in the list of `count` entries, or undefined for a count no list can have. */
export function rootPosition(count: number): ListPosition | undefined {
  if (!Number.isSafeInteger(count) || count < 0 || count > LIMITS.maxListEntries) return undefined
  let level = 0
  for (let w = Math.max(1, Math.ceil(count / FANOUT)); w > 1; w = Math.ceil(w / FANOUT)) level++
  return { count, level, index: 0 }
}

/** How many items the node at `p` holds: entries for a leaf, children for a branch. */
export function itemsAt(p: ListPosition): number {
  const below = p.level === 0 ? p.count : width(p.count, p.level - 1)
  return Math.max(0, Math.min(FANOUT, below - p.index * FANOUT))
}

/** The position of the `j`-th child of the branch at `p`. */
export function childPosition(p: ListPosition, j: number): ListPosition {
  return { count: p.count, level: p.level - 1, index: p.index * FANOUT + j }
}

/**
 * The children named by `bytes` if they are exactly the block the position calls for (strict
 * DAG-CBOR within the list limits, the right tag, the right number of items, CIDs in a branch);
 * an empty array for a fitting leaf; undefined if the bytes do not fit.
 */
export function fitAt(bytes: Uint8Array, p: ListPosition): CID[] | undefined {
  const decoded = decodeStrict(bytes, LIST_SCAN)
  if (!decoded.ok) return undefined
  const node = decoded.value
  if (!Array.isArray(node) || node.length !== 2 || node[0] !== (p.level === 0 ? 0 : 1)) return undefined
  const items = node[1]
  if (!Array.isArray(items) || items.length !== itemsAt(p)) return undefined
  if (p.level === 0) return []
  const children: CID[] = []
  for (const item of items) {
    const c = CID.asCID(item)
    if (c === null) return undefined
    children.push(c)
  }
  return children
}
