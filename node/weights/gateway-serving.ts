/**
 * What the gateway may send (docs/adr/0028-mirrors-and-withholding.md): a block held under at
 * least one pinned root that is not withheld. Withholding is node-wide and follows the fold: the
 * weights of a conflicted or suspended version are not served until it is decided
 * (mirror-plan.ts `withheldRoots`); weights shared with a version that is served still are.
 */
import type { CID } from 'multiformats/cid'
import type { GatewayPins, WithheldVersion } from './gateway-blocks.js'

/** The slice of the node's pins (pins.ts) the gate reads: one record per block. */
export interface ServingPinsSource {
  isPinned(cid: CID, options?: { signal?: AbortSignal }): Promise<boolean>
  rootsOf(cid: CID, options?: { signal?: AbortSignal }): Promise<CID[]>
}

/**
 * The gateway's pins: `isPinned` is true for a block some pinned, not withheld root holds.
 * `withheld` gives the withheld roots (CIDv1 text) as they are now; while there are none, a
 * block costs one record read, as before.
 */
export function servingPins(
  pins: ServingPinsSource,
  withheld: () => ReadonlyMap<string, WithheldVersion>,
): Required<GatewayPins> {
  const rootsWithheld = async (cid: CID, signal?: AbortSignal) => {
    const roots = await pins.rootsOf(cid, signal ? { signal } : {})
    const now = withheld()
    return { roots, by: roots.map((r) => now.get(r.toV1().toString())) }
  }
  return {
    async isPinned(cid, options = {}) {
      if (withheld().size === 0) return pins.isPinned(cid, options)
      const { by } = await rootsWithheld(cid, options.signal)
      return by.some((w) => w === undefined)
    },
    async withheldBy(cid, options = {}) {
      if (withheld().size === 0) return undefined
      const { roots, by } = await rootsWithheld(cid, options.signal)
      if (roots.length === 0 || by.some((w) => w === undefined)) return undefined
      return by[0]
    },
  }
}
