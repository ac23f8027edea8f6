/**
 * The federation node (DESIGN.md §6): the record store, libp2p + gossipsub +
 * Helia, and the HTTP API, wired together. Dependencies can be passed in
 * (STYLE.md 11): a clock, a logger, a config — so tests can run several
 * nodes in one process with a fake clock.
 *
 * Lifecycle: `startNode` opens the stores (replaying the record log),
 * starts libp2p and the API; `stop` stops accepting requests, lets
 * in-flight writes finish, stops libp2p and Helia and closes every store.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { FsBlockstore } from 'blockstore-fs'
import { LevelDatastore } from 'datastore-level'
import type { FastifyInstance } from 'fastify'
import type { CID } from 'multiformats/cid'
import { cidKey, federationIdOf, type Signer, type Verified } from '../protocol/index.js'
import { createApi, type NodeStatus } from './api.js'
import {
  adminToken,
  apiLimitsOf,
  DEFAULT_UNPIN_REVOKED_AFTER_MS,
  FILES,
  inHome,
  loadConfig,
  loadGenesis,
  type NodeConfig,
  tokenSource,
  UPLOAD_LIMIT_DEFAULTS,
} from './config.js'
import { NodeError } from './errors.js'
import { writeAtomic } from './files.js'
import { loadSigner } from './identity.js'
import { createLogger, type Logger } from './log.js'
import { createMetrics, type Metrics } from './metrics.js'
import { createP2P, generatePeerKey, type P2P, peerKeyFromBytes, peerKeyToBytes, topicFor } from './p2p.js'
import { createSteward } from './steward.js'
import { type Checked, openStore, type RecordStore } from './store.js'
import { createSync, type SyncOptions, type SyncService } from './sync/service.js'
import { BlockFiles } from './weights/block-files.js'
import { fetchAndVerify } from './weights/fetch-verify.js'
import { openPins, type WeightsPins } from './weights/pins.js'
import { createRetention } from './weights/retention.js'
import { carBudget, openWeights, type Weights } from './weights/uploads.js'
import { type Problem, verifyDag } from './weights/verify.js'

export interface NodeOptions {
  readonly home: string
  readonly config?: NodeConfig
  readonly genesis?: Verified<'genesis'>
  readonly clock?: () => number
  readonly log?: Logger
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
  /** Unlocks an encrypted steward key file (the launcher reads it; the node never asks the environment). */
  readonly stewardPassphrase?: string
  /** Files that `POST /weights/import` never reads besides the node's own keys (the personal identity). */
  readonly privateFiles?: readonly string[]
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
  status(): NodeStatus
  stop(): Promise<void>
}

async function loadPeerKey(home: string) {
  const path = join(home, FILES.peerKey)
  try {
    return peerKeyFromBytes(await readFile(path))
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new NodeError('peer-key-invalid', `${path} is not a peer key: ${(e as Error).message}`)
    }
  }
  const key = await generatePeerKey()
  await writeAtomic(path, peerKeyToBytes(key), { mode: 0o600 })
  return key
}

/**
 * The steward key, if this node is a steward's: a key file as `allmende init --steward-key`
 * writes it; an encrypted one is unlocked with the passphrase the launcher was given.
 */
async function stewardSigner(
  home: string,
  config: NodeConfig,
  passphrase?: string,
): Promise<Signer | undefined> {
  if (!config.stewardKeyFile) return undefined
  return loadSigner(inHome(home, config.stewardKeyFile), passphrase ? { passphrase } : {})
}

/**
 * How long one background fetch of a model's weights may take: a minute, and a second per 8 MiB
 * (a 14 GiB model gets half an hour). Each run starts over, so a fixed minute would never let a
 * model of many GiB arrive; a gateway that goes silent is left long before (gateway-fetch.ts).
 */
function fetchBudgetMs(bytes: number): number {
  return 60_000 + Math.ceil(bytes / (8 * 1024 * 1024)) * 1000
}
const RETENTION_TICK_MS = 60_000
/** After a failed fetch, the pause before the next check starts another. */
const WEIGHTS_FETCH_RETRY_MS = 10_000
/** Problems of held weights that a fetch can mend: blocks not held, or held but damaged. */
const REFETCH: ReadonlySet<string> = new Set(['block-missing', 'block-corrupt', 'unreadable'])
/** Fetch failures that a retry would only repeat. */
const FETCH_FINAL: ReadonlySet<string> = new Set(['oversize', 'not-unixfs'])

/** The first few problems of a weights check, one short string each, for the log. */
function problemList(problems: readonly Problem[]): string[] {
  return problems.slice(0, 10).map((p) => `${p.code}${p.path !== undefined ? ` ${p.path}` : ''}`)
}

/**
 * The weights check a steward runs before sealing a ratification. One background run per
 * manifest at a time: the weights held are checked first (`verifyDag`); if blocks are missing or
 * damaged, `fetchAndVerify` fetches them (other stewards' gateways, then bitswap), checks them
 * against the manifest and pins the root. One fetch per root at a time: a manifest naming
 * weights being fetched waits for that fetch. Until a run has ended the check says "not yet"
 * (undefined); then its verdict: true, false for weights that will never pass (a defect in the
 * content, or a fetch refused for good), or another run after WEIGHTS_FETCH_RETRY_MS when blocks
 * were only missing. The steward seals false at `closesAt + weightsDeadlineMs` if it is still
 * "not yet".
 */
function weightsChecker(
  blockstore: FsBlockstore,
  options: {
    helia?: P2P['helia']
    log: Logger
    stopped: AbortSignal
    fetchMs?: number
    gateways?: readonly string[] | undefined
    /** The node's pin (uploads.ts). */
    pin?: (root: CID, signal?: AbortSignal) => Promise<boolean>
  },
) {
  const { helia, log, stopped, gateways } = options
  // The last run for each manifest: when it ended (0 while running), and its verdict if final.
  const runs = new Map<string, { endedAt: number; verdict?: boolean }>()
  // Roots being checked or fetched: a second manifest naming the same weights waits for that run,
  // then checks what it brought, instead of fetching the same bytes again beside it.
  const fetching = new Set<string>()
  const start = (manifest: Verified<'manifest'>, maxModelBytes: number, first: boolean) => {
    const key = manifest.cid.toString()
    const root = manifest.record.body.weights
    fetching.add(root.toString())
    const run: { endedAt: number; verdict?: boolean } = { endedAt: 0 }
    runs.set(key, run)
    const fetchMs = options.fetchMs ?? fetchBudgetMs(manifest.record.body.size)
    const signal = AbortSignal.any([stopped, AbortSignal.timeout(fetchMs)])
    const { maxBytes, maxBlocks } = carBudget(maxModelBytes)
    const check = async () => {
      if (first) {
        // Weights already held (uploaded here, or fetched before) are checked without the network
        // first, in the background too: reading a large model must not hold up the sealing tick.
        const local = await verifyDag(blockstore, manifest.record.body, { maxModelBytes, signal })
        if (signal.aborted) return
        if (local.ok) {
          run.verdict = true
          return
        }
        // Blocks that are missing, or held but damaged, can be fetched (again); any other defect
        // is in the content itself, which a fetch by the same CIDs would only bring back.
        if (!local.problems.every((p) => REFETCH.has(p.code))) {
          log.warn('weights-mismatch', { manifest: key, problems: problemList(local.problems) })
          run.verdict = false
          return
        }
      }
      log.info('weights-check-started', { manifest: key, root: root.toString() })
      const { verdict, fetch, fetchError } = await fetchAndVerify({
        root,
        manifest: manifest.record.body,
        maxModelBytes,
        blockstore,
        helia,
        signal,
        maxBytes,
        maxBlocks,
        gateways,
        ...(options.pin ? { pin: options.pin } : {}),
        onGatewayError: (gateway, error) =>
          log.warn('weights-gateway-failed', { root: root.toString(), gateway, error }),
      })
      if (fetch && fetch.fetched > 0)
        log.info('weights-fetched', {
          root: root.toString(),
          blocks: fetch.blocks,
          fetched: fetch.fetched,
          viaGateway: fetch.viaGateway,
          bytes: fetch.bytes,
        })
      log.info('weights-checked', {
        manifest: key,
        ok: verdict.ok,
        ...(fetchError ? { fetchError: fetchError.code } : {}),
      })
      if (verdict.ok) run.verdict = true
      else if (!verdict.problems.every((p) => p.code === 'block-missing')) {
        log.warn('weights-mismatch', {
          manifest: key,
          root: root.toString(),
          problems: problemList(verdict.problems),
        })
        run.verdict = false
      } else if (fetchError && FETCH_FINAL.has(fetchError.code)) {
        log.warn('weights-fetch-refused', { manifest: key, root: root.toString(), error: fetchError })
        run.verdict = false
      } else if (fetchError && !stopped.aborted) {
        log.warn('weights-fetch-failed', { manifest: key, root: root.toString(), error: fetchError })
      }
    }
    check()
      .catch((e) => {
        if (!stopped.aborted) log.warn('weights-check-failed', { manifest: key, error: e as Error })
      })
      .finally(() => {
        fetching.delete(root.toString())
        run.endedAt = Date.now()
      })
  }
  return async (manifest: Verified<'manifest'>, maxModelBytes: number): Promise<boolean | undefined> => {
    const key = manifest.cid.toString()
    const run = runs.get(key)
    if (run?.verdict !== undefined) return run.verdict
    // A run of this manifest, or of another naming the same weights, is under way.
    if (stopped.aborted || fetching.has(manifest.record.body.weights.toString())) return undefined
    if (run === undefined || Date.now() - run.endedAt >= WEIGHTS_FETCH_RETRY_MS)
      start(manifest, maxModelBytes, run === undefined)
    return undefined
  }
}

export async function startNode(options: NodeOptions): Promise<AllmendeNode> {
  const { home } = options
  const config = options.config ?? (await loadConfig(home))
  const log = options.log ?? createLogger({ level: config.logLevel })
  const clock = options.clock ?? Date.now
  const genesis = options.genesis ?? (await loadGenesis(home, config))
  const federation = federationIdOf(genesis.record)
  if (federation.toString() !== config.federation) {
    throw new NodeError('genesis-invalid', `the genesis is not that of federation ${config.federation}`)
  }
  const stewardKey = await stewardSigner(home, config, options.stewardPassphrase)
  const steward = stewardKey?.did ?? null
  // Refuses to start with an empty or short token (and makes one for a new home).
  await adminToken(home)
  const store = await openStore({ path: join(home, FILES.log), genesis, clock, log })

  const useHelia = options.helia !== false
  let blockstore: FsBlockstore | undefined
  let datastore: LevelDatastore | undefined
  if (useHelia) {
    await mkdir(join(home, FILES.blocks), { recursive: true })
    blockstore = new BlockFiles(join(home, FILES.blocks))
    await blockstore.open()
    datastore = new LevelDatastore(join(home, FILES.datastore))
    await datastore.open()
  }

  let p2p: P2P | undefined
  const metrics = createMetrics({ store: () => store, peers: () => p2p?.peers().length ?? 0 })
  // The validator's verdict, kept for the message handler that follows it (same bytes object).
  const checked = new WeakMap<Uint8Array, Checked>()
  p2p = await createP2P({
    peerKey: await loadPeerKey(home),
    listen: [...config.listen],
    bootstrap: [...config.bootstrap],
    topic: topicFor(config.federation),
    validate: (bytes) => {
      const c = store.check(bytes)
      checked.set(bytes, c)
      return c.verdict
    },
    onMessage: (bytes, from) => {
      metrics.gossipReceived.inc()
      const c = checked.get(bytes)
      if (c?.record) metrics.gossipLatency.observe(Math.max(0, clock() - c.record.record.at) / 1000)
      store
        .ingest(bytes, [], c)
        .then((r) => {
          if (r.verdict === 'accept' && !r.duplicate)
            log.debug('record-received', { id: r.record?.cid.toString(), from, kind: r.record?.record.kind })
        })
        .catch((e) => log.warn('ingest-failed', { from, error: e as Error }))
    },
    log: (level, event, fields) => log.log(level, event, fields as Record<string, unknown>),
    ...(blockstore ? { blockstore } : {}),
    ...(datastore ? { datastore } : {}),
    helia: useHelia,
  })

  const sync =
    options.sync === false
      ? undefined
      : createSync({
          p2p,
          store,
          log,
          onReport: (r) => {
            metrics.syncSessions.inc({ role: r.role, result: r.ok ? 'ok' : (r.code ?? 'failed') })
            metrics.syncBytes.inc({ direction: 'sent' }, r.bytesSent)
            metrics.syncBytes.inc({ direction: 'received' }, r.bytesReceived)
            metrics.syncTaken.inc(r.taken)
            metrics.syncRefused.inc(r.refused)
          },
          ...options.sync,
        })

  // Background weights fetches of the steward duty; aborted on stop.
  const fetching = new AbortController()
  const stewardDuty =
    stewardKey &&
    createSteward({
      store,
      signer: stewardKey,
      clock,
      log,
      publish: (bytes) => p2p!.publish(bytes),
      // Bounded: each session has its own timeouts; a slow peer delays sealing, never blocks it.
      syncPeers: () =>
        Promise.race([
          Promise.allSettled(p2p!.peers().map(({ id }) => sync?.syncWith(id))),
          new Promise((r) => setTimeout(r, 5_000).unref()),
        ]),
      ...(blockstore
        ? {
            checkWeights: weightsChecker(blockstore, {
              helia: p2p.helia,
              log,
              stopped: fetching.signal,
              gateways: config.gateways,
              // `weights` is made below (it needs Helia's pins); it exists before any tick runs.
              pin: (root, signal) => weights?.pin(root, signal) ?? Promise.resolve(false),
            }),
          }
        : {}),
      ...(options.stewardTickMs ? { tickMs: options.stewardTickMs } : {}),
    })

  const status = (): NodeStatus => {
    const state = store.fold.state()
    return {
      peerId: p2p!.peerId,
      addresses: p2p!.addresses(),
      federation: config.federation,
      steward,
      records: state.recordCount,
      head: state.head.toString(),
    }
  }

  // Weights live in the node's own FsBlockstore (the gateway never reads through Helia's
  // networked blockstore, which may wait on bitswap); pins go through the node's pins
  // (weights/pins.ts: Helia's records in the LevelDatastore, one change at a time, repaired once).
  // The node runs no GC (see uploads.ts).
  const helia = p2p.helia
  const pins = blockstore && datastore && helia ? await openPins({ datastore, blockstore, log }) : undefined
  // Uploads are staged in the home and moved into the blockstore once checked (uploads.ts).
  const weights =
    blockstore && pins
      ? await openWeights({
          blockstore,
          pins,
          stagingDir: join(home, FILES.uploadStaging),
          noncesPath: join(home, FILES.uploadNonces),
          federation,
          peerId: p2p.peerId,
          clock,
          maxUploadsPerAuthor: config.maxUploadsPerAuthor ?? UPLOAD_LIMIT_DEFAULTS.maxUploadsPerAuthor,
          maxUploads: config.maxUploads ?? UPLOAD_LIMIT_DEFAULTS.maxUploads,
          idleMs: config.uploadIdleTimeoutMs ?? UPLOAD_LIMIT_DEFAULTS.uploadIdleTimeoutMs,
          log,
        })
      : undefined

  // Revoked weights are let go after the configured delay (weights/retention.ts).
  const retention =
    blockstore && pins
      ? createRetention({
          state: () => store.fold.state(),
          weightsOf: (manifest) => {
            const r = store.fold.get(manifest)
            return r?.record.kind === 'manifest' ? r.record.body.weights : undefined
          },
          pins,
          blockstore,
          clock,
          delayMs: config.unpinRevokedAfterMs ?? DEFAULT_UNPIN_REVOKED_AFTER_MS,
          log,
        })
      : undefined
  const retentionTimer = retention
    ? setInterval(() => {
        retention
          .tick(fetching.signal)
          .catch((e) => log.warn('weights-retention-failed', { error: e as Error }))
      }, options.retentionTickMs ?? RETENTION_TICK_MS)
    : undefined
  retentionTimer?.unref()

  const api = await createApi({
    store,
    clock,
    log,
    metrics,
    adminToken: tokenSource(home, (error) => log.warn('admin-token-invalid', { error })),
    limits: apiLimitsOf(config),
    imports: {
      roots: config.importRoots ?? [],
      home,
      // Never imported wherever they sit, even below an import root.
      keyFiles: [
        join(home, FILES.peerKey),
        join(home, FILES.token),
        ...(config.stewardKeyFile ? [inHome(home, config.stewardKeyFile)] : []),
        ...(options.privateFiles ?? []),
      ],
    },
    status,
    ...(weights && blockstore && pins
      ? {
          weights: {
            blockstore,
            service: weights,
            pins,
            ...(options.maxUploadBytes !== undefined ? { maxUploadBytes: options.maxUploadBytes } : {}),
          },
        }
      : {}),
    peers: () => p2p!.peers(),
    publish: async (bytes) => {
      await p2p!.publish(bytes)
    },
    dial: async (ma) => {
      try {
        await p2p!.dial(ma)
      } catch (e) {
        // Library errors become one of ours at this boundary: a bad address is the caller's
        // mistake (400), an unreachable peer is not (502).
        const bad = /multiaddr|invalid|unknown protocol/i.test((e as Error).message)
        throw new NodeError(
          bad ? 'bad-multiaddr' : 'dial-failed',
          `cannot dial ${ma}: ${(e as Error).message}`,
          {
            status: bad ? 400 : 502,
          },
        )
      }
    },
  })
  const [host, port] = [
    config.api.slice(0, config.api.lastIndexOf(':')),
    Number(config.api.slice(config.api.lastIndexOf(':') + 1)),
  ]
  try {
    await api.listen({ host, port })
  } catch (e) {
    await sync?.stop()
    await p2p.stop()
    await store.close()
    await weights?.close()
    await blockstore?.close()
    await datastore?.close()
    throw new NodeError('api-listen', `cannot serve the API on ${config.api}: ${(e as Error).message}`)
  }
  const address = api.server.address()
  const apiUrl =
    typeof address === 'object' && address ? `http://${host}:${address.port}` : `http://${config.api}`
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
      await api.close()
      // Uploads cut off by the close finish their cleanup before the blockstore closes.
      await weights?.drain()
      await weights?.close()
      clearInterval(retentionTimer)
      fetching.abort()
      await stewardDuty?.stop()
      await sync?.stop()
      await p2p!.stop()
      await store.close()
      await pins?.drain()
      await blockstore?.close()
      await datastore?.close()
      log.info('node-stopped', {})
    })()
    return stopping
  }
  void cidKey
  return {
    home,
    config,
    store,
    p2p,
    api,
    apiUrl,
    metrics,
    ...(sync ? { sync } : {}),
    ...(weights ? { weights } : {}),
    ...(pins ? { pins } : {}),
    status,
    stop,
  }
}
