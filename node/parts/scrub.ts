/**
 * The node's background scrub, wired (node/weights/scrub.ts; docs/adr/0031-scrubbing-and-clean-up.md):
 * the pins, the blockstore and its files, the held versions, the rate from the config, repairs
 * from the configured gateways and the holders' (once announced) and bitswap, and a loop that
 * runs one step after another until the node stops.
 */
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import type { Registry } from 'prom-client'
import { FILES, type NodeConfig } from '../config.js'
import { WEIGHTS_CONFIG_DEFAULTS } from '../config-weights.js'
import type { Logger } from '../log.js'
import type { P2P } from '../p2p.js'
import type { RecordStore } from '../store.js'
import type { BlockFiles } from '../weights/block-files.js'
import type { HeldVersions } from '../weights/held-versions.js'
import type { RootLedger } from '../weights/root-ledger.js'
import { createScrubber } from '../weights/scrub.js'
import { ScrubBlocks } from '../weights/scrub-blocks.js'
import { createScrubMetrics } from '../weights/scrub-metrics.js'
import { realRateClock, TokenBucket } from '../weights/scrub-rate.js'
import { repairRoot } from '../weights/scrub-repair.js'
import type { WeightsManifest } from '../weights/verify.js'
import { pinnedRoots } from './cleanup.js'

/** How long the loop waits when nothing is due (or a step failed). */
const IDLE_MS = 60_000

export interface ScrubPartOptions {
  readonly home: string
  /** The config as it is now (`scrubBytesPerSecond` is a live setting). */
  readonly config: () => NodeConfig
  readonly store: RecordStore
  readonly p2p: P2P
  readonly blockstore: BlockFiles
  readonly pins: { hasPin(root: CID): Promise<boolean> }
  readonly held: HeldVersions
  readonly ledger: RootLedger
  readonly registry: Registry
  /** Gateways of the holders of a root, once holding announcements are known. */
  readonly holderGateways?: (root: CID) => readonly string[]
  /** The node's pin (uploads.ts). */
  readonly pin: (root: CID, signal?: AbortSignal) => Promise<boolean>
  readonly clock: () => number
  readonly log: Logger
  /** How often the loop looks again when nothing was due (default 60 s). */
  readonly idleMs?: number
}

export interface ScrubPart {
  /** Ends the loop (the node's stop signal aborts a step under way) and the hashing workers. */
  stop(): Promise<void>
}

/** A manifest in the fold that names `root` (any: the weights are the same bytes). */
function manifestOf(store: RecordStore, root: CID): WeightsManifest | undefined {
  for (const view of store.fold.state().manifests.values()) {
    const record = store.fold.get(view.cid)
    if (record?.record.kind === 'manifest' && record.record.body.weights.equals(root))
      return record.record.body
  }
  return undefined
}

/** Starts the scrub loop; while `scrubBytesPerSecond` is 0 it only looks, once a tick, whether that changed. */
export function startScrub(options: ScrubPartOptions, stopped: AbortSignal): ScrubPart {
  const { config, store, log } = options
  const rate = () => config().scrubBytesPerSecond ?? WEIGHTS_CONFIG_DEFAULTS.scrubBytesPerSecond
  const bucket = new TokenBucket(rate, realRateClock)
  const blocks = new ScrubBlocks(join(options.home, FILES.blocks), options.blockstore)
  const scrubber = createScrubber({
    pinnedRoots: () => pinnedRoots(options.p2p),
    hasPin: (root) => options.pins.hasPin(root),
    ledger: options.ledger,
    held: options.held,
    blocks,
    deleteBlock: (cid) => options.blockstore.delete(cid),
    bucket,
    repair: (root, damaged, signal) =>
      repairRoot(
        root,
        damaged,
        {
          blockstore: options.blockstore,
          helia: options.p2p.helia,
          sources: (r) => [...(config().gateways ?? []), ...(options.holderGateways?.(r) ?? [])],
          manifestOf: (r) => manifestOf(store, r),
          maxModelBytes: () => store.fold.state().rules.maxModelBytes,
          pin: options.pin,
        },
        signal,
      ),
    clock: options.clock,
    log,
    metrics: createScrubMetrics(options.registry),
  })
  const idleMs = options.idleMs ?? IDLE_MS
  const loop = async () => {
    while (!stopped.aborted) {
      try {
        if (!bucket.paused && (await scrubber.step(stopped)) !== 'idle') continue
      } catch (e) {
        if (stopped.aborted) break
        log.warn('weights-scrub-failed', { error: e as Error })
      }
      await realRateClock.sleep(idleMs, stopped).catch(() => {})
    }
  }
  const running = loop()
  return {
    async stop() {
      await running
      await blocks.stop()
    },
  }
}
