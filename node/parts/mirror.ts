/**
 * The mirror duty of a node with weights, wired (node/weights/mirror.ts): the fold's state and
 * manifests, the live policy, the verified fetch over the config's gateways and the holders',
 * the node's pin and its record of what it holds; the gateway's gate for withheld versions; and
 * the Prometheus series of what is held. docs/adr/0028-mirrors-and-withholding.md.
 */
import type { CID } from 'multiformats/cid'
import { Counter, Gauge } from 'prom-client'
import type { NodeConfig } from '../config.js'
import { WEIGHTS_CONFIG_DEFAULTS } from '../config-weights.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import type { RecordStore } from '../store.js'
import type { FetchHelia } from '../weights/fetch.js'
import type { LocalBlockstore } from '../weights/fetch-verify.js'
import type { GatewayPins, WithheldVersion } from '../weights/gateway-blocks.js'
import { type ServingPinsSource, servingPins } from '../weights/gateway-serving.js'
import type { HeldVersions } from '../weights/held-versions.js'
import { createMirror, type FetchOutcome, type Mirror } from '../weights/mirror.js'
import { verifiedFetch } from '../weights/mirror-fetch.js'
import { type ManifestReader, type MirroredManifest, perVersions } from '../weights/mirror-plan.js'
import { createUnpin, type Unpin } from '../weights/mirror-unpin.js'
import type { RetentionBlockstore, RetentionPins } from '../weights/retention.js'

const MIRROR_TICK_MS = 2_000

export interface MirrorPartOptions {
  readonly store: RecordStore
  /** The config as it is now (live settings change it). */
  readonly config: () => NodeConfig
  readonly blockstore: LocalBlockstore & RetentionBlockstore
  readonly helia?: FetchHelia | undefined
  readonly pin: (root: CID, signal?: AbortSignal) => Promise<boolean>
  readonly held: HeldVersions
  readonly pins: ServingPinsSource & RetentionPins
  /** Whether this node seals (a steward's): `node unpin` keeps what its open ratifications need. */
  readonly steward?: boolean
  /** Gateways of the nodes known to hold `root` (holding announcements), tried after the config's. */
  readonly holderGateways?: (root: CID) => readonly string[]
  readonly metrics: Metrics
  readonly clock: () => number
  readonly log: Logger
  readonly stopped: AbortSignal
  /** How often the policy is looked at (default 2 s); a fetch ending or a policy change looks at once. */
  readonly tickMs?: number
  /** The first pause after a failed fetch (default 30 s, doubling up to an hour). */
  readonly retryMs?: number
}

export interface MirrorPart {
  readonly mirror: Mirror
  /** `node unpin N@V`: lets go of a version's weights the node's duties no longer need. */
  readonly unpin: Unpin
  /** What the gateway serves: pinned blocks not held only under withheld weights. */
  readonly gatewayPins: GatewayPins
  readonly timer: NodeJS.Timeout
}

/** The manifests of the fold, as the mirror reads them. */
function manifestReader(store: RecordStore): ManifestReader {
  return (cid) => {
    const r = store.fold.get(cid)
    return r?.record.kind === 'manifest' ? (r.record.body as MirroredManifest) : undefined
  }
}

export function startMirror(options: MirrorPartOptions): MirrorPart {
  const { store, config, log } = options
  const read = manifestReader(store)
  const fetches = new Counter({
    name: 'allmende_mirror_fetches_total',
    help: 'verified weights fetches by the mirror duty and `node pin`, by result (ok, missing, mismatch, refused, aborted)',
    labelNames: ['result'],
    registers: [options.metrics.registry],
  })
  // Where a fetch's blocks came from: a fetch cut off and tried again finds the blocks it already
  // wrote `held`, so that share is what resuming saved.
  const fetchBlocks = new Counter({
    name: 'allmende_weights_fetch_blocks_total',
    help: 'blocks of the weights fetched by the mirror duty and `node pin`, by source (gateway, bitswap, held: already held when the fetch began, as after a cut fetch)',
    labelNames: ['source'],
    registers: [options.metrics.registry],
  })
  const countBlocks = (outcome: FetchOutcome) => {
    const { blocks = 0, fetched = 0, viaGateway = 0 } = outcome
    fetchBlocks.inc({ source: 'gateway' }, viaGateway)
    fetchBlocks.inc({ source: 'bitswap' }, fetched - viaGateway)
    fetchBlocks.inc({ source: 'held' }, blocks - fetched)
  }
  const mirror = createMirror({
    state: () => store.fold.state(),
    read,
    policy: () => config().mirror ?? WEIGHTS_CONFIG_DEFAULTS.mirror,
    held: options.held,
    fetch: verifiedFetch({
      blockstore: options.blockstore,
      helia: options.helia,
      pin: options.pin,
      sources: (root) => [...(config().gateways ?? []), ...(options.holderGateways?.(root) ?? [])],
      log,
    }),
    clock: options.clock,
    log,
    stopped: options.stopped,
    ...(options.retryMs !== undefined ? { retryMs: options.retryMs } : {}),
    onOutcome: (outcome) => {
      fetches.inc({ result: outcome.result })
      countBlocks(outcome)
    },
  })
  registerHeldSeries(options, read)
  const timer = setInterval(() => mirror.tick(), options.tickMs ?? MIRROR_TICK_MS)
  timer.unref()
  const unpin = createUnpin({
    state: () => store.fold.state(),
    read,
    policy: () => config().mirror ?? WEIGHTS_CONFIG_DEFAULTS.mirror,
    steward: options.steward ?? false,
    pins: options.pins,
    blockstore: options.blockstore,
    held: options.held,
    fetching: mirror.fetching,
    log,
  })
  return {
    mirror,
    unpin,
    gatewayPins: servingPins(options.pins, (): ReadonlyMap<string, WithheldVersion> => mirror.withheld()),
    timer,
  }
}

/** `allmende_weights_held_versions` and `_bytes`: the roots held whole and verified, and their manifests' sizes. */
function registerHeldSeries(options: MirrorPartOptions, read: ManifestReader): void {
  const { store, held } = options
  const sizes = perVersions((state) => {
    const byRoot = new Map<string, number>()
    for (const view of state.manifests.values()) {
      const body = read(view.cid)
      if (body) byRoot.set(body.weights.toV1().toString(), body.size)
    }
    return byRoot
  })
  const complete = () => held.list().filter((e) => e.complete)
  new Gauge({
    name: 'allmende_weights_held_versions',
    help: 'weights roots held whole and verified here (a scrub that found damage takes one out until repaired)',
    registers: [options.metrics.registry],
    collect() {
      this.set(complete().length)
    },
  })
  new Gauge({
    name: 'allmende_weights_held_bytes',
    help: 'bytes of the weights held whole and verified here (the sizes their manifests state)',
    registers: [options.metrics.registry],
    collect() {
      const byRoot = sizes(store.fold.state())
      this.set(complete().reduce((sum, e) => sum + (byRoot.get(e.root.toV1().toString()) ?? 0), 0))
    },
  })
}
