/**
 * The upkeep of held weights, started as one part (docs/adr/0031-scrubbing-and-clean-up.md): the
 * ledger of pinned roots, the clean-up of uploads nobody ratified (parts/cleanup.ts) and the
 * background scrub (parts/scrub.ts). Both read the ledger; stopping ends the scrub first.
 */
import type { CID } from 'multiformats/cid'
import type { Registry } from 'prom-client'
import type { NodeConfig } from '../config.js'
import type { Logger } from '../log.js'
import type { P2P } from '../p2p.js'
import type { RecordStore } from '../store.js'
import type { Cleanup, CleanupPins } from '../weights/cleanup.js'
import type { HeldVersions } from '../weights/held-versions.js'
import { RootLedger } from '../weights/root-ledger.js'
import { startCleanup } from './cleanup.js'
import { startScrub } from './scrub.js'
import type { WeightsStorage } from './weights.js'

export interface UpkeepOptions {
  readonly home: string
  /** The config as it is now (the rate and the retention are live settings). */
  readonly config: () => NodeConfig
  readonly store: RecordStore
  readonly p2p: P2P
  readonly storage: WeightsStorage
  readonly pins: CleanupPins
  readonly held: HeldVersions
  readonly pin: (root: CID, signal?: AbortSignal) => Promise<boolean>
  /** The holders' gateways for a root (holding announcements), when the node knows them. */
  readonly holderGateways?: (root: CID) => readonly string[]
  readonly registry: Registry
  readonly clock: () => number
  readonly log: Logger
  readonly stopped: AbortSignal
  /** How often the clean-up looks at the pins (default 60 s). */
  readonly cleanupTickMs?: number
  /** How long the scrub waits when nothing is due (default 60 s). */
  readonly scrubIdleMs?: number
}

export interface Upkeep {
  readonly cleanup: Cleanup
  /** Ends the scrub and the clean-up (after the node's stop signal has aborted them). */
  stop(): Promise<void>
}

export async function startUpkeep(options: UpkeepOptions): Promise<Upkeep> {
  const { storage, stopped } = options
  const ledger = await RootLedger.open(storage.datastore)
  const cleanup = startCleanup({
    ...options,
    blockstore: storage.blockstore,
    ledger,
    ...(options.cleanupTickMs !== undefined ? { tickMs: options.cleanupTickMs } : {}),
  })
  const scrub = startScrub(
    {
      ...options,
      blockstore: storage.blockstore,
      ledger,
      ...(options.scrubIdleMs !== undefined ? { idleMs: options.scrubIdleMs } : {}),
    },
    stopped,
  )
  return {
    cleanup: cleanup.cleanup,
    async stop() {
      await scrub.stop()
      await cleanup.stop()
    },
  }
}
