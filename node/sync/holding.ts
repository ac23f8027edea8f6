/**
 * A sync session's holding area: list blocks kept unwritten while they wait
 * for a record that names them (ADR 0005), bounded per session and, through
 * a tally they share, for all sessions together.
 */

/** What a held block costs the holding area beyond its bytes (its map entry): bounds the count too. */
export const HOLDING_ENTRY_BYTES = 64

/** Bytes held by every session's holding area together. */
export interface HoldingTotal {
  used: number
}

/** List blocks a session keeps, unwritten, while they wait for a record that names them. */
export function holdingArea(limit: number, total: number, shared: HoldingTotal) {
  const blocks = new Map<string, Uint8Array>()
  /** When each block came, oldest first (insertion order). */
  const since = new Map<string, number>()
  let used = 0
  const costOf = (b: Uint8Array) => b.length + HOLDING_ENTRY_BYTES
  const remove = (key: string) => {
    const b = blocks.get(key)
    if (!b) return
    blocks.delete(key)
    since.delete(key)
    used -= costOf(b)
    shared.used -= costOf(b)
  }
  return {
    blocks: blocks as ReadonlyMap<string, Uint8Array>,
    has: (key: string) => blocks.has(key),
    /** 'held'; 'full' when the session's area has no room; 'shared-full' when all areas have none. */
    add(key: string, b: Uint8Array, at: number): 'held' | 'full' | 'shared-full' {
      const cost = costOf(b)
      if (used + cost > limit) return 'full'
      if (shared.used + cost > total) return 'shared-full'
      // A compact copy: a view would pin the whole frame it came in.
      blocks.set(key, Uint8Array.prototype.slice.call(b))
      since.set(key, at)
      used += cost
      shared.used += cost
      return 'held'
    },
    delete: remove,
    /** Takes out the blocks held since before `cutoff`, oldest first. */
    expire(cutoff: number): [string, Uint8Array][] {
      const out: [string, Uint8Array][] = []
      for (const [key, at] of since) {
        if (at >= cutoff) break
        out.push([key, blocks.get(key)!])
      }
      for (const [key] of out) remove(key)
      return out
    },
    release() {
      shared.used -= used
      used = 0
      blocks.clear()
      since.clear()
    },
  }
}

export type Holding = ReturnType<typeof holdingArea>
