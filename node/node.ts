/**
 * The federation node, built from its parts (docs/adr/0010-node-from-parts.md): the record store,
 * libp2p with gossipsub and Helia, sync, the steward duty, the weights and the HTTP API, wired
 * together. As js-libp2p's `createLibp2p`, the parts can be passed in — a store, how libp2p is
 * made, a clock, a logger — so tests can run several nodes in one process on a fake clock.
 * Reading a home from disk (config, genesis, keys) is node/daemon.ts's job.
 *
 * Lifecycle: `createNode` opens the store (replaying the record log) unless one is given,
 * starts libp2p and the API; `stop` stops accepting requests, lets in-flight writes finish,
 * stops libp2p and Helia and closes every store, given or made.
 */
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { federationIdOf, RECORD_VERSION, type Signer, type Verified } from '../protocol/index.js'
import { registerReplicationRoutes } from './api/replication.js'
import type { NodeStatus } from './api.js'
import { DEFAULT_UNPIN_REVOKED_AFTER_MS, FILES, type NodeConfig } from './config.js'
import { createLiveConfig, type LiveConfig } from './config-live.js'
import { NodeError } from './errors.js'
import { holdingsTopicFor } from './holdings/gossip.js'
import type { Logger } from './log.js'
import { createMetrics, type Metrics } from './metrics.js'
import { createP2P, generatePeerKey, type P2P, type PrivateKey } from './p2p.js'
import { buildApi, listen } from './parts/api.js'
import { type P2PFactory, startGossip, startSync } from './parts/gossip.js'
import { type NodeHoldings, startHoldings } from './parts/holdings.js'
import { type MirrorPart, startMirror } from './parts/mirror.js'
import { startStewardDuty } from './parts/steward.js'
import { startUpkeep, type Upkeep } from './parts/upkeep.js'
import {
  openWeightsService,
  openWeightsStorage,
  startRetention,
  type WeightsStorage,
} from './parts/weights.js'
import type { Steward } from './steward.js'
import { openStore, type RecordStore } from './store.js'
import type { SyncOptions, SyncService } from './sync/service.js'
import type { HeldVersions } from './weights/held-versions.js'
import type { Mirror } from './weights/mirror.js'
import type { WeightsPins } from './weights/pins.js'
import type { Weights } from './weights/uploads.js'

export type { P2PFactory }

export interface NodeInit {
  /** Where the node keeps its record log, weights, uploads and admin token. */
  readonly home: string
  readonly config: NodeConfig
  /** The genesis of `config.federation`. */
  readonly genesis: Verified<'genesis'>
  readonly clock: () => number
  readonly log: Logger
  /** The libp2p peer key (the caller keeps it); a fresh one if absent. */
  readonly peerKey?: PrivateKey
  /** The steward key, unlocked, when this is a steward's node: it runs the sealing duty. */
  readonly stewardKey?: Signer
  /** The record store; default the record log in the home. The node closes it on stop. */
  readonly store?: RecordStore
  /** How libp2p (with gossipsub, and Helia on it) is made and started; default `createP2P`. */
  readonly p2p?: P2PFactory
  /** Start Helia (weights, bitswap). Default true. */
  readonly helia?: boolean
  /** How often a steward node runs its sealing duty (default 500 ms). */
  readonly stewardTickMs?: number
  /** Sync settings (intervals and timeouts); `false` turns sync off (tests of gossip alone). */
  readonly sync?: Omit<SyncOptions, 'p2p' | 'store' | 'log'> | false
  /** How often revoked weights are looked at for unpinning (default 60 s). */
  readonly retentionTickMs?: number
  /** The largest weights upload (CAR bytes); default the head state's maxModelBytes plus CAR overhead. */
  readonly maxUploadBytes?: number
  /** Files `POST /weights/import` never reads besides the node's own keys (the personal identity). */
  readonly privateFiles?: readonly string[]
  /** How often the mirror duty looks at its policy (default 2 s), and its first pause after a failed fetch (default 30 s). */
  readonly mirrorTickMs?: number
  readonly mirrorRetryMs?: number
  /** How often the clean-up of unratified uploads looks at the pins (default 60 s). */
  readonly cleanupTickMs?: number
  /** How long the scrub waits before it looks again when nothing was due (default 60 s). */
  readonly scrubIdleMs?: number
}

export interface AllmendeNode {
  readonly home: string
  readonly config: NodeConfig
  readonly store: RecordStore
  readonly p2p: P2P
  readonly api: FastifyInstance
  /** e.g. http://127.0.0.1:7070 */
  readonly apiUrl: string
  readonly metrics: Metrics
  /** Absent when started with `sync: false`. */
  readonly sync?: SyncService
  /** Weights uploads and pins; absent without Helia. */
  readonly weights?: Weights
  /** The node's pins (weights/pins.ts); absent without Helia. */
  readonly pins?: WeightsPins
  /** The weights roots held whole and checked here (weights/held-versions.ts); absent without Helia. */
  readonly held?: HeldVersions
  /** The config as it is now, and its live settings (config-live.ts). */
  readonly liveConfig: LiveConfig
  /** The mirror duty and `node pin` (weights/mirror.ts); absent without Helia. */
  readonly mirror?: Mirror
  /** Who holds which weights: holding announcements and bindings (parts/holdings.ts). */
  readonly holdings: NodeHoldings
  status(): NodeStatus
  stop(): Promise<void>
}

/** What a node has started so far: what `stop` (or a start that failed half-way) ends. */
interface Running {
  store?: RecordStore
  storage?: WeightsStorage
  p2p?: P2P
  sync?: SyncService
  stewardDuty?: Steward
  weights?: Weights
  pins?: WeightsPins
  held?: HeldVersions
  live?: LiveConfig
  mirror?: MirrorPart
  holdings?: NodeHoldings
  retentionTimer?: NodeJS.Timeout
  upkeep?: Upkeep
  api?: FastifyInstance
  /** Aborts the background work: weights fetches, a retention run. */
  readonly stopped: AbortController
}

/**
 * Ends what is running, in order: no new requests, uploads cut off finish their cleanup, the
 * background work and the duty stop, then libp2p and the stores close.
 */
async function stopRunning(running: Running): Promise<void> {
  await running.api?.close()
  // Uploads cut off by the close finish their cleanup before the blockstore closes.
  await running.weights?.drain()
  await running.weights?.close()
  clearInterval(running.retentionTimer)
  clearInterval(running.mirror?.timer)
  running.stopped.abort()
  await running.upkeep?.stop()
  await running.stewardDuty?.stop()
  await running.holdings?.stop()
  await running.sync?.stop()
  await running.p2p?.stop()
  await running.store?.close()
  await running.pins?.drain()
  await running.storage?.blockstore.close()
  await running.storage?.datastore.close()
}

/** The parts a started node shows. */
interface Started {
  readonly store: RecordStore
  readonly p2p: P2P
  readonly api: FastifyInstance
  readonly metrics: Metrics
  readonly status: () => NodeStatus
  readonly holdings: NodeHoldings
}

/** The steps of a start, each adding its part to `running` (so a failure can end them). */
async function startParts(init: NodeInit, running: Running): Promise<Started> {
  const { home, config, genesis, clock, log } = init
  const federation = federationIdOf(genesis.record)
  const live = (running.live = createLiveConfig(home, config))
  const store = (running.store =
    init.store ?? (await openStore({ path: join(home, FILES.log), genesis, clock, log })))
  const useHelia = init.helia !== false
  const storage = useHelia ? (running.storage = await openWeightsStorage(home)) : undefined
  const metrics = createMetrics({ store: () => store, peers: () => running.p2p?.peers().length ?? 0 })
  // Made here when not given: the holdings part signs announcements with it.
  const peerKey = init.peerKey ?? (await generatePeerKey())
  const p2p = (running.p2p = await startGossip({
    config,
    peerKey,
    otherTopics: [holdingsTopicFor(config.federation)],
    store,
    metrics,
    clock,
    log,
    makeP2P: init.p2p ?? createP2P,
    helia: useHelia,
    ...(storage ? { blockstore: storage.blockstore, datastore: storage.datastore } : {}),
  }))
  const sync =
    init.sync === false ? undefined : (running.sync = startSync(p2p, store, metrics, log, init.sync))
  if (init.stewardKey)
    running.stewardDuty = startStewardDuty({
      signer: init.stewardKey,
      config,
      store,
      p2p,
      ...(sync ? { sync } : {}),
      clock,
      log,
      ...(storage ? { blockstore: storage.blockstore } : {}),
      // The weights service is opened below; it exists before any tick runs.
      pin: (root, signal) => running.weights?.pin(root, signal) ?? Promise.resolve(false),
      // Only weights pinned here are held (a check may pass on blocks no pin keeps).
      verified: async (root, at) => {
        if (await running.pins?.hasPin(root)) await running.held?.verified(root, at)
      },
      stopped: running.stopped.signal,
      ...(init.stewardTickMs ? { tickMs: init.stewardTickMs } : {}),
    })
  if (storage && p2p.helia) {
    const opened = await openWeightsService({
      home,
      config,
      storage,
      federation,
      peerId: p2p.peerId,
      clock,
      log,
    })
    running.pins = opened.pins
    running.held = opened.held
    running.weights = opened.weights
    running.retentionTimer = startRetention({
      store,
      pins: opened.pins,
      blockstore: storage.blockstore,
      config,
      delayMs: () => live.current().unpinRevokedAfterMs ?? DEFAULT_UNPIN_REVOKED_AFTER_MS,
      held: opened.held,
      clock,
      log,
      stopped: running.stopped.signal,
      ...(init.retentionTickMs !== undefined ? { tickMs: init.retentionTickMs } : {}),
    })
    running.mirror = startMirror({
      store,
      config: () => live.current(),
      blockstore: storage.blockstore,
      helia: p2p.helia,
      pin: opened.weights.pin,
      held: opened.held,
      pins: opened.pins,
      steward: init.stewardKey !== undefined,
      // Holdings start below; the mirror asks for a root's holders only when it fetches.
      holderGateways: (root) => running.holdings?.gatewaysOf(root) ?? [],
      metrics,
      clock,
      log,
      stopped: running.stopped.signal,
      ...(init.mirrorTickMs !== undefined ? { tickMs: init.mirrorTickMs } : {}),
      ...(init.mirrorRetryMs !== undefined ? { retryMs: init.mirrorRetryMs } : {}),
    })
    live.onChange((_, key) => {
      if (key === 'mirror') running.mirror?.mirror.tick()
    })
    running.upkeep = await startUpkeep({
      home,
      config: () => live.current(),
      store,
      p2p,
      storage,
      pins: opened.pins,
      held: opened.held,
      pin: opened.weights.pin,
      // Holdings start below; a repair runs long after.
      holderGateways: (root) => running.holdings?.gatewaysOf(root) ?? [],
      registry: metrics.registry,
      clock,
      log,
      stopped: running.stopped.signal,
      ...(init.cleanupTickMs !== undefined ? { cleanupTickMs: init.cleanupTickMs } : {}),
      ...(init.scrubIdleMs !== undefined ? { scrubIdleMs: init.scrubIdleMs } : {}),
    })
  }
  const holdings = (running.holdings = await startHoldings({
    config: () => live.current(),
    federation,
    store,
    p2p,
    peerKey,
    ...(storage ? { datastore: storage.datastore } : {}),
    ...(running.held ? { held: running.held } : {}),
    ...(running.mirror ? { withheld: running.mirror.mirror.withheld } : {}),
    metrics,
    clock,
    log,
  }))
  const status = statusOf(init, store, p2p)
  const api = (running.api = await buildApi({
    home,
    config,
    store,
    p2p,
    metrics,
    clock,
    log,
    status,
    ...(init.privateFiles ? { privateFiles: init.privateFiles } : {}),
    ...(storage && running.weights && running.pins
      ? {
          weights: {
            blockstore: storage.blockstore,
            service: running.weights,
            pins: running.mirror?.gatewayPins ?? running.pins,
            ...(init.maxUploadBytes !== undefined ? { maxUploadBytes: init.maxUploadBytes } : {}),
          },
        }
      : {}),
    ...(running.upkeep ? { gcRoutes: { cleanup: running.upkeep.cleanup } } : {}),
    configRoutes: {
      live,
      ...(running.mirror ? { pinOnce: running.mirror.mirror.pinOnce, unpin: running.mirror.unpin } : {}),
    },
  }))
  registerReplicationRoutes(api, holdings)
  return { store, p2p, api, metrics, status, holdings }
}

/** What `GET /status` answers. */
function statusOf(init: NodeInit, store: RecordStore, p2p: P2P): () => NodeStatus {
  return () => {
    const state = store.fold.state()
    return {
      peerId: p2p.peerId,
      addresses: p2p.addresses(),
      federation: init.config.federation,
      steward: init.stewardKey?.did ?? null,
      records: state.recordCount,
      head: state.head.toString(),
      recordVersion: { speaks: RECORD_VERSION, required: store.requiredVersion() ?? null },
    }
  }
}

/** Builds and starts a node from its parts; a start that fails ends what it had started. */
export async function createNode(init: NodeInit): Promise<AllmendeNode> {
  const { config, log } = init
  if (federationIdOf(init.genesis.record).toString() !== config.federation)
    throw new NodeError('genesis-invalid', `the genesis is not that of federation ${config.federation}`)
  const running: Running = { stopped: new AbortController() }
  let started: Started
  let apiUrl: string
  try {
    started = await startParts(init, running)
    apiUrl = await listen(started.api, config)
    await started.holdings.startAnnouncing(apiUrl)
  } catch (e) {
    await stopRunning(running).catch(() => {})
    throw e
  }
  const { store, p2p } = started
  log.info('node-started', {
    federation: config.federation,
    peerId: p2p.peerId,
    addresses: p2p.addresses(),
    api: apiUrl,
    records: store.fold.state().recordCount,
  })
  let stopping: Promise<void> | undefined
  const stop = () => {
    stopping ??= (async () => {
      log.info('node-stopping', {})
      await stopRunning(running)
      log.info('node-stopped', {})
    })()
    return stopping
  }
  return {
    home: init.home,
    config,
    store,
    p2p,
    api: started.api,
    apiUrl,
    metrics: started.metrics,
    ...(running.sync ? { sync: running.sync } : {}),
    ...(running.weights ? { weights: running.weights } : {}),
    ...(running.pins ? { pins: running.pins } : {}),
    ...(running.held ? { held: running.held } : {}),
    liveConfig: running.live!,
    ...(running.mirror ? { mirror: running.mirror.mirror } : {}),
    holdings: started.holdings,
    status: started.status,
    stop,
  }
}
