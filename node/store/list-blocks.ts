/**
 * The list blocks held, and the ones held records name but that have not come yet (SPEC.md §6,
 * ADR 0005). A list block is kept only where a held seal or checkpoint names it: as the root of
 * one of its lists (`votes`, `attestations`, `finalized`), or as a child of a kept branch, and only
 * if it is exactly the block that position calls for (`count` fixes the shape;
 * sync/list-shape.ts). This holds wherever blocks enter (sent along with a record, or on their
 * own in sync), so a block nobody names is never written, never in the ids, never served.
 */
import { type AnyVerified, blockKey, cidKey, LIMITS } from '../../protocol/index.js'
import { nativeSha256 } from '../sha256.js'
import { childPosition, fitAt, type ListPosition, rootPosition } from '../sync/list-shape.js'
import type { HeldIds } from './held-ids.js'
import type { BlocksTaken, KeyedBlocks } from './types.js'

/** Named blocks found among candidates (admitted) and named positions nothing filled (missing). */
export interface ListFill {
  readonly admitted: Map<string, Uint8Array>
  readonly missing: Map<string, ListPosition>
}

/** What `offer` makes of blocks offered on their own: the fill, and the counts for `BlocksTaken`. */
export interface Offer extends Omit<BlocksTaken, 'taken'> {
  readonly fill: ListFill
}

export interface ListBlocks {
  get(key: string): Uint8Array | undefined
  has(key: string): boolean
  /** Whether a held seal or checkpoint names the block under `key` and it is not held yet. */
  wants(key: string): boolean
  /** A number that changes whenever a held record comes to name a list block not held. */
  namingGeneration(): number
  readonly size: number
  /**
   * Follows named positions from `starts` down through held blocks and `candidates`: the
   * candidates that are exactly the block their position calls for, and the named positions
   * nothing fills yet. Held blocks passed through are added to `reached`.
   */
  follow(
    starts: Iterable<readonly [string, ListPosition]>,
    candidates: KeyedBlocks,
    reached?: Set<string>,
  ): ListFill
  /** Blocks offered on their own (sync): which named positions they fill, and what is refused. */
  offer(candidates: readonly Uint8Array[] | KeyedBlocks): Offer
  /** Writes the admitted blocks (and a record after them), marked as being written meanwhile. */
  write(fill: ListFill, record?: Uint8Array): Promise<void>
  /** After the admitted blocks are durable: holds them, and remembers what is still named. */
  commit(fill: ListFill): void
  /** Candidates by key; blocks of no possible list size are left out (refused by the caller). */
  keyed(candidates: readonly Uint8Array[] | KeyedBlocks): KeyedBlocks
  /** A block read back from the log at start: held, but not in the ids until `keepOnly` says. */
  restore(key: string, bytes: Uint8Array): void
  /** Keeps the restored blocks in `reached` (adding their ids) and drops the rest from memory. */
  keepOnly(reached: ReadonlySet<string>): { readonly dropped: number; readonly bytes: number }
}

export const NO_BLOCKS: KeyedBlocks = new Map()

export function countOf(blocks: readonly Uint8Array[] | KeyedBlocks): number {
  return Array.isArray(blocks) ? blocks.length : (blocks as KeyedBlocks).size
}

/** Whether a block's size is one no list block can have. */
function outOfSize(block: Uint8Array): boolean {
  return block.length === 0 || block.length > LIMITS.maxListBlockBytes
}

/** The roots of a seal's or checkpoint's lists, with their positions; none for other records. */
export function listRoots(v: AnyVerified): [string, ListPosition][] {
  const r = v.record
  const lists =
    r.kind === 'seal'
      ? [r.body.votes, r.body.attestations]
      : r.kind === 'checkpoint'
        ? [r.body.finalized]
        : []
  const out: [string, ListPosition][] = []
  for (const list of lists) {
    const p = rootPosition(list.count)
    if (p) out.push([cidKey(list.root), p])
  }
  return out
}

export function emptyFill(): ListFill {
  return { admitted: new Map(), missing: new Map() }
}

/** What is held and under way, as `follow` and `offer` read it. */
interface HeldBlocks {
  readonly blocks: ReadonlyMap<string, Uint8Array>
  /** List blocks a held seal or checkpoint names that are not here yet, by key: where each goes. */
  readonly named: ReadonlyMap<string, ListPosition>
  /** Keys of list blocks being written now (two seals may share a block, e.g. the empty list). */
  readonly writing: ReadonlySet<string>
}

// Levels only go down, so this ends; it reads each block at most once per start.
function follow(
  held: HeldBlocks,
  starts: Iterable<readonly [string, ListPosition]>,
  candidates: KeyedBlocks,
  reached?: Set<string>,
): ListFill {
  const fill = emptyFill()
  const visit = (key: string, p: ListPosition): void => {
    if (fill.admitted.has(key) || held.writing.has(key)) return
    const kept = held.blocks.get(key)
    if (kept !== undefined) {
      reached?.add(key)
      // A held leaf names nothing; a held branch may name blocks still to come.
      if (p.level === 0) return
    }
    const bytes = kept ?? candidates.get(key)
    if (bytes === undefined) {
      fill.missing.set(key, p)
      return
    }
    const children = fitAt(bytes, p)
    if (children === undefined) {
      if (kept === undefined) fill.missing.set(key, p)
      return
    }
    // A compact copy: a view would pin the whole network frame it came in.
    if (kept === undefined) fill.admitted.set(key, Uint8Array.prototype.slice.call(bytes))
    for (let j = 0; j < children.length; j++) visit(cidKey(children[j]!), childPosition(p, j))
  }
  for (const [key, p] of starts) visit(key, p)
  return fill
}

/** Candidates by key; blocks of no possible list size are left out. */
function keyed(candidates: readonly Uint8Array[] | KeyedBlocks): KeyedBlocks {
  if (!Array.isArray(candidates)) return candidates as KeyedBlocks
  const out = new Map<string, Uint8Array>()
  for (const b of candidates as readonly Uint8Array[]) {
    if (outOfSize(b)) continue
    out.set(blockKey(b, nativeSha256), b)
  }
  return out
}

/** Blocks offered on their own start only at named positions; held ones are duplicates. */
function offer(held: HeldBlocks, candidates: readonly Uint8Array[] | KeyedBlocks): Offer {
  const pool = keyed(candidates)
  const inHand = (key: string) => held.blocks.has(key) || held.writing.has(key)
  let duplicates = 0
  const starts: [string, ListPosition][] = []
  for (const key of pool.keys()) {
    if (inHand(key)) {
      duplicates++
      continue
    }
    const p = held.named.get(key)
    if (p) starts.push([key, p])
  }
  const fill = follow(held, starts, pool)
  let refusedBytes = 0
  for (const [key, bytes] of pool) if (!fill.admitted.has(key) && !inHand(key)) refusedBytes += bytes.length
  if (Array.isArray(candidates))
    for (const b of candidates as readonly Uint8Array[]) if (outOfSize(b)) refusedBytes += b.length
  const refused = countOf(candidates) - duplicates - fill.admitted.size
  return { fill, duplicates, refused, refusedBytes }
}

export function createListBlocks(parts: {
  ids: HeldIds
  /** Appends frames to the record log, durable when it resolves. */
  append: (frames: Uint8Array[]) => Promise<unknown>
}): ListBlocks {
  const { ids, append } = parts
  const held = {
    blocks: new Map<string, Uint8Array>(),
    named: new Map<string, ListPosition>(),
    writing: new Set<string>(),
  }
  const { blocks, named, writing } = held
  /** Changes whenever a block not held becomes named: blocks refused before may be named now. */
  let namingGeneration = 0
  return {
    get: (key) => blocks.get(key),
    has: (key) => blocks.has(key),
    wants: (key) => named.has(key),
    namingGeneration: () => namingGeneration,
    get size() {
      return blocks.size
    },
    follow: (starts, candidates, reached) => follow(held, starts, candidates, reached),
    offer: (candidates) => offer(held, candidates),
    keyed,
    async write(fill, record) {
      const keys = [...fill.admitted.keys()]
      for (const k of keys) writing.add(k)
      try {
        await append(record ? [...fill.admitted.values(), record] : [...fill.admitted.values()])
      } finally {
        for (const k of keys) writing.delete(k)
      }
    },
    commit(fill) {
      for (const [key, bytes] of fill.admitted) {
        blocks.set(key, bytes)
        ids.add(key)
        named.delete(key)
      }
      for (const [key, p] of fill.missing) {
        if (blocks.has(key) || named.has(key)) continue
        named.set(key, p)
        namingGeneration++
      }
    },
    restore: (key, bytes) => void blocks.set(key, bytes),
    keepOnly(reached) {
      let dropped = 0
      let droppedBytes = 0
      for (const [key, bytes] of blocks) {
        if (reached.has(key)) {
          ids.add(key)
          continue
        }
        blocks.delete(key)
        dropped++
        droppedBytes += bytes.length
      }
      return { dropped, bytes: droppedBytes }
    },
  }
}
