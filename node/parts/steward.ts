/**
 * The steward duty of a steward's node (node/steward.ts), wired: seals and checkpoints go out by
 * gossip, a bounded sync round with every peer comes before sealing, and ratifications wait for
 * the weights check (node/weights/steward-check.ts) when the node holds weights.
 */
import type { CID } from 'multiformats/cid'
import type { Signer } from '../../protocol/index.js'
import type { NodeConfig } from '../config.js'
import type { Logger } from '../log.js'
import type { P2P } from '../p2p.js'
import { createSteward, type Steward } from '../steward.js'
import type { RecordStore } from '../store.js'
import type { SyncService } from '../sync/service.js'
import type { BlockFiles } from '../weights/block-files.js'
import { createWeightsCheck } from '../weights/steward-check.js'

/** The longest wait for the sync round before sealing: a slow peer delays sealing, never blocks it. */
const SYNC_BEFORE_SEALING_MS = 5_000

export interface StewardDutyOptions {
  readonly signer: Signer
  readonly config: NodeConfig
  readonly store: RecordStore
  readonly p2p: P2P
  readonly sync?: SyncService
  readonly clock: () => number
  readonly log: Logger
  /** The node's blockstore; without one, ratifications are sealed without a weights check. */
  readonly blockstore?: BlockFiles
  /** The node's pin (weights/uploads.ts), for weights a check fetched. */
  readonly pin: (root: CID, signal?: AbortSignal) => Promise<boolean>
  /** Told of weights that passed the check (weights/steward-check.ts). */
  readonly verified?: (root: CID, at: number) => Promise<void>
  /** Aborted when the node stops: background weights fetches end. */
  readonly stopped: AbortSignal
  readonly tickMs?: number
}

export function startStewardDuty(options: StewardDutyOptions): Steward {
  const { store, p2p, sync, clock, log, blockstore } = options
  return createSteward({
    store,
    signer: options.signer,
    clock,
    log,
    publish: (bytes) => p2p.publish(bytes),
    // Bounded: each session has its own timeouts too.
    syncPeers: () =>
      Promise.race([
        Promise.allSettled(p2p.peers().map(({ id }) => sync?.syncWith(id))),
        new Promise((r) => setTimeout(r, SYNC_BEFORE_SEALING_MS).unref()),
      ]),
    ...(blockstore
      ? {
          checkWeights: createWeightsCheck({
            blockstore,
            helia: p2p.helia,
            clock,
            log,
            stopped: options.stopped,
            gateways: options.config.gateways,
            pin: options.pin,
            ...(options.verified ? { verified: options.verified } : {}),
          }),
        }
      : {}),
    ...(options.tickMs ? { tickMs: options.tickMs } : {}),
  })
}
