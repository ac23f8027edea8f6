/**
 * Unpinning revoked weights: revoked versions are unpinned after a configurable delay (a node's
 * own policy, not the protocol's; SPEC.md §8.7 says when a manifest is revoked).
 *
 * A manifest is revoked once a revoke proposal for it is final-passed. Its weights stay pinned
 * for `delayMs` after that proposal's `closesAt` — deployers still running the version can fetch
 * it to compare, and an operator can change their mind — then the root is unpinned and the
 * blocks no other pin holds are deleted from the node's blockstore (the node runs no general
 * garbage collection, see uploads.ts, so this is where the space comes back).
 *
 * Weights shared with a manifest that is not revoked (the same bytes republished under another
 * version) are kept. The decision uses the fold's state and the node's clock only; it is not part
 * of the protocol, so nodes may differ in when they let go.
 */
import type { CID } from 'multiformats/cid'
import { cidKey, type FederationState } from '../../protocol/index.js'
import type { Logger } from '../log.js'
import { type UnpinBlockstore, type UnpinPins, unpinRoot } from './unpin-root.js'

/** The slice of the node's pins (pins.ts) used here: an unpin, and whether a root has a pin of its own. */
export interface RetentionPins extends UnpinPins {
  hasPin(root: CID): Promise<boolean>
}

export type RetentionBlockstore = UnpinBlockstore

export interface RetentionOptions {
  readonly state: () => FederationState
  /** The weights root a manifest names. */
  readonly weightsOf: (manifest: CID) => CID | undefined
  readonly pins: RetentionPins
  readonly blockstore: RetentionBlockstore
  readonly clock: () => number
  /** The delay, or a function giving it as it is now (`unpinRevokedAfterMs` is a live setting). */
  readonly delayMs: number | (() => number)
  /** What the node holds verified (held-versions.ts): a root let go is forgotten there. */
  readonly held?: { forget(root: CID): Promise<void> }
  readonly log: Logger
}

export interface Retention {
  /** Unpins what is due; returns the roots unpinned this time. */
  tick(signal?: AbortSignal): Promise<CID[]>
}

export function createRetention(options: RetentionOptions): Retention {
  const { state, weightsOf, pins, blockstore, clock, log } = options
  const delayOf = typeof options.delayMs === 'function' ? options.delayMs : () => options.delayMs as number
  // Roots already let go (or found unpinned): not looked at again until restart.
  const done = new Set<string>()
  let running: Promise<CID[]> | undefined

  const due = (s: FederationState): CID[] => {
    const now = clock()
    const delayMs = delayOf()
    const keep = new Set<string>()
    const revoked = new Map<string, CID>()
    for (const m of s.manifests.values()) {
      const root = weightsOf(m.cid)
      if (root === undefined) continue
      const rootKey = root.toString()
      if (m.status !== 'revoked') {
        keep.add(rootKey)
        continue
      }
      // The earliest final revocation decides when the delay started.
      let since = Number.POSITIVE_INFINITY
      for (const p of m.revokedBy) {
        const view = s.proposals.get(cidKey(p))
        if (view) since = Math.min(since, view.closesAt)
      }
      if (since + delayMs <= now) revoked.set(rootKey, root)
    }
    return [...revoked.entries()].filter(([k]) => !keep.has(k) && !done.has(k)).map(([, root]) => root)
  }

  const run = async (signal?: AbortSignal): Promise<CID[]> => {
    const unpinned: CID[] = []
    for (const root of due(state())) {
      if (signal?.aborted) break
      done.add(root.toString())
      // The pin itself, not the root block: a removal cut off has already let the root block go.
      if (!(await pins.hasPin(root))) {
        await options.held?.forget(root)
        continue
      }
      let counts: { blocks: number; deleted: number }
      try {
        counts = await unpinRoot(pins, blockstore, root, signal)
      } catch (e) {
        done.delete(root.toString())
        log.warn('weights-unpin-failed', { root: root.toString(), error: e as Error })
        continue
      }
      unpinned.push(root)
      // No longer held: no holding announcement is signed for it any more.
      await options.held?.forget(root)
      log.info('weights-unpinned', {
        root: root.toString(),
        reason: 'revoked',
        blocks: counts.blocks,
        deleted: counts.deleted,
      })
    }
    return unpinned
  }

  return {
    tick(signal) {
      running ??= run(signal).finally(() => {
        running = undefined
      })
      return running
    },
  }
}
