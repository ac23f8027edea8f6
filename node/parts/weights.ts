/**
 * The node's weights, wired: the blockstore and Helia's datastore in the home, the pins, the
 * uploads service, and the timer that lets revoked weights go (node/weights/). Weights live in
 * the node's own FsBlockstore (the gateway never reads through Helia's networked blockstore,
 * which may wait on bitswap); pins go through the node's pins (weights/pins.ts: Helia's records
 * in the LevelDatastore, one change at a time, repaired once). The node runs no GC (see
 * weights/uploads.ts).
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { LevelDatastore } from 'datastore-level'
import type { CID } from 'multiformats/cid'
import { DEFAULT_UNPIN_REVOKED_AFTER_MS, FILES, type NodeConfig, UPLOAD_LIMIT_DEFAULTS } from '../config.js'
import type { Logger } from '../log.js'
import type { RecordStore } from '../store.js'
import { BlockFiles } from '../weights/block-files.js'
import { HeldVersions } from '../weights/held-versions.js'
import { openPins, type WeightsPins } from '../weights/pins.js'
import { createRetention } from '../weights/retention.js'
import { openWeights, type Weights } from '../weights/uploads.js'

const RETENTION_TICK_MS = 60_000

/** The blockstore and datastore of a node with Helia, in its home. */
export interface WeightsStorage {
  readonly blockstore: BlockFiles
  readonly datastore: LevelDatastore
}

/** Opens (and makes, for a new home) the weights blockstore and Helia's datastore. */
export async function openWeightsStorage(home: string): Promise<WeightsStorage> {
  await mkdir(join(home, FILES.blocks), { recursive: true })
  const blockstore = new BlockFiles(join(home, FILES.blocks))
  await blockstore.open()
  const datastore = new LevelDatastore(join(home, FILES.datastore))
  await datastore.open()
  return { blockstore, datastore }
}

export interface WeightsServiceOptions {
  readonly home: string
  readonly config: NodeConfig
  readonly storage: WeightsStorage
  readonly federation: CID
  readonly peerId: string
  readonly clock: () => number
  readonly log: Logger
}

/** The pins, what is held whole and checked, and the uploads service (staged in the home, moved in once checked). */
export async function openWeightsService(
  options: WeightsServiceOptions,
): Promise<{ pins: WeightsPins; held: HeldVersions; weights: Weights }> {
  const { home, config, storage, log } = options
  const { blockstore, datastore } = storage
  const pins = await openPins({ datastore, blockstore, log })
  const held = await HeldVersions.open(datastore)
  const weights = await openWeights({
    blockstore,
    pins,
    stagingDir: join(home, FILES.uploadStaging),
    noncesPath: join(home, FILES.uploadNonces),
    federation: options.federation,
    peerId: options.peerId,
    clock: options.clock,
    maxUploadsPerAuthor: config.maxUploadsPerAuthor ?? UPLOAD_LIMIT_DEFAULTS.maxUploadsPerAuthor,
    maxUploads: config.maxUploads ?? UPLOAD_LIMIT_DEFAULTS.maxUploads,
    idleMs: config.uploadIdleTimeoutMs ?? UPLOAD_LIMIT_DEFAULTS.uploadIdleTimeoutMs,
    log,
  })
  return { pins, held, weights }
}

export interface RetentionTimerOptions {
  readonly store: RecordStore
  readonly pins: WeightsPins
  readonly blockstore: BlockFiles
  readonly config: NodeConfig
  /** `unpinRevokedAfterMs` as it is now (a live setting); default the config's. */
  readonly delayMs?: () => number
  /** What the node holds verified: a root let go is forgotten there. */
  readonly held?: { forget(root: CID): Promise<void> }
  readonly clock: () => number
  readonly log: Logger
  /** Aborts a run under way when the node stops. */
  readonly stopped: AbortSignal
  /** How often revoked weights are looked at (default 60 s). */
  readonly tickMs?: number
}

/** Lets revoked weights go after the configured delay (weights/retention.ts); returns the timer. */
export function startRetention(options: RetentionTimerOptions): NodeJS.Timeout {
  const { store, log } = options
  const retention = createRetention({
    state: () => store.fold.state(),
    weightsOf: (manifest) => {
      const r = store.fold.get(manifest)
      return r?.record.kind === 'manifest' ? r.record.body.weights : undefined
    },
    pins: options.pins,
    blockstore: options.blockstore,
    clock: options.clock,
    delayMs: options.delayMs ?? (() => options.config.unpinRevokedAfterMs ?? DEFAULT_UNPIN_REVOKED_AFTER_MS),
    ...(options.held ? { held: options.held } : {}),
    log,
  })
  const timer = setInterval(() => {
    retention.tick(options.stopped).catch((e) => log.warn('weights-retention-failed', { error: e as Error }))
  }, options.tickMs ?? RETENTION_TICK_MS)
  timer.unref()
  return timer
}
