/**
 * The announcer (docs/adr/0029-holding-announcements.md): for every weights root this node holds
 * whole and verified (`held.announceable`, weights/held-versions.ts) that a manifest held here
 * names, it signs a holding announcement with the peer key and publishes it; it renews them
 * every renewal period (they expire after three missed renewals). When a root stops being
 * announceable (a failed scrub, an unpin), it publishes a withdrawal at once: an announcement
 * with `withdrawn: true` and no gateways, newer than the last, so every report drops the node
 * before the old announcement would expire. A root the node withholds (every manifest naming it
 * belongs to a conflicted or suspended version, weights/mirror-plan.ts) is not served, so it is
 * not announced either: withdrawn when it becomes withheld, announced again once decided.
 */
import type { PrivateKey } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { cidKey } from '../../protocol/index.js'
import type { Logger } from '../log.js'
import type { HeldEntry, HeldVersions } from '../weights/held-versions.js'
import { type HoldingAnnouncement, signAnnouncement } from './announcement.js'

export interface AnnouncerParts {
  readonly federation: CID
  readonly peerId: string
  readonly peerKey: PrivateKey
  readonly held: Pick<HeldVersions, 'list' | 'announceable' | 'onChange' | 'get'>
  /** Whether a manifest held here names `weights`. */
  readonly isKnownWeights: (weights: CID) => boolean
  /** Whether this node withholds `weights` now (its gateway serves none of it); never, when absent. */
  readonly isWithheld?: (weights: CID) => boolean
  /** The gateway URLs to announce, as configured now. */
  readonly gateways: () => readonly string[]
  readonly clock: () => number
  /** Stores the signed bytes here and gossips them. */
  readonly publish: (bytes: Uint8Array) => Promise<void>
  readonly log: Logger
}

export interface Announcer {
  /** Signs afresh every announcement (renewal) and withdraws what is no longer held. */
  renew(): Promise<void>
  /**
   * Announces the held roots not yet announced (a manifest naming them arrived since, a version
   * was decided) and withdraws those withheld since.
   */
  announceNew(): Promise<void>
  /** Stops listening to the held versions; waits for a publication under way. */
  stop(): Promise<void>
}

/** What was last published for a root. */
interface Published {
  readonly root: CID
  readonly at: number
  readonly verifiedAt: number
  readonly withdrawn: boolean
}

export function createAnnouncer(parts: AnnouncerParts): Announcer {
  const published = new Map<string, Published>()
  // One publication at a time, so each root's `at` only grows.
  let queue: Promise<void> = Promise.resolve()
  const serial = (work: () => Promise<void>): Promise<void> => {
    queue = queue.then(work).catch((e) => parts.log.warn('holding-announce-failed', { error: e as Error }))
    return queue
  }

  const announceable = (entry: HeldEntry) =>
    parts.held.announceable(entry.root) && parts.isKnownWeights(entry.root) && !parts.isWithheld?.(entry.root)

  const publish = async (root: CID, verifiedAt: number, withdrawn: boolean): Promise<void> => {
    const before = published.get(cidKey(root))
    // Strictly later than the last one for this root, even on a clock that stands still.
    const at = Math.max(parts.clock(), (before?.at ?? -1) + 1)
    const announcement: HoldingAnnouncement = {
      federation: parts.federation,
      peer: parts.peerId,
      weights: root,
      gateways: withdrawn ? [] : parts.gateways(),
      verifiedAt: Math.min(verifiedAt, at),
      at,
      withdrawn,
    }
    await parts.publish(await signAnnouncement(announcement, parts.peerKey))
    published.set(cidKey(root), { root, at, verifiedAt, withdrawn })
    parts.log.info(withdrawn ? 'holding-withdrawn' : 'holding-announced', { weights: root.toString(), at })
  }

  const withdrawIfAnnounced = async (root: CID): Promise<void> => {
    const before = published.get(cidKey(root))
    if (before && !before.withdrawn) await publish(root, before.verifiedAt, true)
  }

  // A scrub that passes changes the entry but not what is said of it: the renewal carries that.
  const unchanged = (root: CID, entry: HeldEntry) => {
    const before = published.get(cidKey(root))
    return before !== undefined && !before.withdrawn && before.verifiedAt === entry.verifiedAt
  }
  const onChange = (root: CID, entry: HeldEntry | undefined) =>
    void serial(async () => {
      if (!entry || !announceable(entry)) await withdrawIfAnnounced(root)
      else if (!unchanged(root, entry)) await publish(root, entry.verifiedAt, false)
    })
  const unsubscribe = parts.held.onChange(onChange)

  const withdrawGone = async (): Promise<void> => {
    for (const p of [...published.values()]) {
      const entry = parts.held.get(p.root)
      if (!p.withdrawn && !(entry && announceable(entry))) await withdrawIfAnnounced(p.root)
    }
  }

  return {
    renew: () =>
      serial(async () => {
        for (const entry of parts.held.list())
          if (announceable(entry)) await publish(entry.root, entry.verifiedAt, false)
        await withdrawGone()
      }),
    announceNew: () =>
      serial(async () => {
        for (const entry of parts.held.list()) {
          const before = published.get(cidKey(entry.root))
          if ((!before || before.withdrawn) && announceable(entry))
            await publish(entry.root, entry.verifiedAt, false)
        }
        await withdrawGone()
      }),
    async stop() {
      unsubscribe()
      await queue
    },
  }
}
