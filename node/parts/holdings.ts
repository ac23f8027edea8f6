/**
 * The node's holdings, wired (docs/adr/0029-holding-announcements.md): the bounded store, the
 * intake every message goes through, gossip on the holdings topic, sync on request with each
 * peer as it connects and every renewal period, the announcer (when the node holds weights), the
 * metrics, and what `node.holdings` and the replication routes read.
 */
import type { PrivateKey } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import type { NodeConfig } from '../config.js'
import { announcedGateways, WEIGHTS_CONFIG_DEFAULTS } from '../config-weights.js'
import { NodeError } from '../errors.js'
import { type Announcer, createAnnouncer } from '../holdings/announcer.js'
import { DeferredPeers } from '../holdings/deferred.js'
import { joinHoldingsGossip } from '../holdings/gossip.js'
import { createIntake, type Intake, type TakeResult } from '../holdings/intake.js'
import { createHoldingsMetrics } from '../holdings/metrics.js'
import {
  type BindingsDatastore,
  type BindingWriter,
  bindingWriter,
  loadBindings,
} from '../holdings/persist.js'
import {
  createWeightsIndex,
  entryOf,
  type Holder,
  holdersOf,
  membersOfPeers,
  type ReplicationEntry,
  type ReplicationReport,
  replicationReport,
} from '../holdings/report.js'
import { holderSources } from '../holdings/sources.js'
import { HoldingsStore } from '../holdings/store.js'
import { createHoldingsSync, type HoldingsSync, type SyncOutcome } from '../holdings/sync.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import type { P2P } from '../p2p.js'
import type { RecordStore } from '../store.js'
import type { HeldVersions } from '../weights/held-versions.js'

/**
 * How often the announcer looks for held roots a newly arrived manifest names, bindings of
 * those no longer members are dropped, and deferred peers (deferred.ts) are looked at.
 */
const CATCH_UP_MS = 2_000
/** SPEC §15.4: an announcement expires three renewal periods after its `at`. */
const RENEWALS_TO_EXPIRY = 3

export interface HoldingsPartOptions {
  /** The config as it is now (live settings change `minHolders` and `announceGateways`). */
  readonly config: () => NodeConfig
  readonly federation: CID
  readonly store: RecordStore
  readonly p2p: P2P
  readonly peerKey: PrivateKey
  /** Where bindings are kept across restarts (the weights datastore); in memory only without it. */
  readonly datastore?: BindingsDatastore
  /** What this node holds; absent without Helia (it then announces nothing). */
  readonly held?: HeldVersions
  /** The weights roots (CIDv1 text) this node withholds now (the mirror's); none when absent. */
  readonly withheld?: () => ReadonlyMap<string, unknown>
  readonly metrics: Metrics
  readonly clock: () => number
  readonly log: Logger
}

/** What `node.holdings` offers (the mirror's and the fetch's sources come from here). */
export interface NodeHoldings {
  /** Gateways of the live holders of `weights` to fetch from (sources.ts: at most 16, ordered). */
  gatewaysOf(weights: CID): string[]
  /** Every live holder of `weights`, with its member. */
  holdersOf(weights: CID): Holder[]
  /** The replication report over every ratified version. */
  report(): ReplicationReport
  /** The `minHolders` setting now. */
  minHolders(): number
  /** The entry of one version `name@version`; throws a NodeError for an unknown or ambiguous one. */
  version(key: string): ReplicationEntry
  /** The members' current bindings (what `node bind` builds on). */
  bindings(): { member: string; peers: string[]; at: number }[]
  /** A binding from the API: taken like gossip and, when stored, gossiped. */
  submitBinding(bytes: Uint8Array): Promise<TakeResult>
  /** One sync session with `peer` (tests, and the schedule). */
  syncWith(peer: string): Promise<SyncOutcome>
  /** Starts announcing what this node holds, its gateway at `apiUrl` (once the API listens). */
  startAnnouncing(apiUrl: string): Promise<void>
  /** Renews this node's announcements now (the timer does it every period). */
  renew(): Promise<void>
  readonly store: HoldingsStore
  stop(): Promise<void>
}

export async function startHoldings(options: HoldingsPartOptions): Promise<NodeHoldings> {
  const { config, store: records, p2p, clock, log } = options
  // Live settings: read each time they are used.
  const renewMs = () => config().holdingRenewMs ?? WEIGHTS_CONFIG_DEFAULTS.holdingRenewMs
  const minHolders = () => config().minHolders ?? WEIGHTS_CONFIG_DEFAULTS.minHolders
  const store = new HoldingsStore({ clock, ttlMs: () => RENEWALS_TO_EXPIRY * renewMs() })
  const isKnownWeights = createWeightsIndex(records.fold)
  const report = () => replicationReport({ fold: records.fold, store, minHolders: minHolders() })
  const metrics = createHoldingsMetrics(options.metrics.registry, {
    report,
    liveAnnouncements: () => store.liveAnnouncementCount(),
  })
  const isMember = (did: string) => records.fold.state().members.some((m) => m.id === did)
  const writer = options.datastore ? bindingWriter(options.datastore, log) : undefined
  const intake = createIntake({
    federation: options.federation,
    store,
    isMember,
    isKnownWeights,
    onRefused: (reason) => metrics.refused(reason),
    ...(writer ? { onBindingStored: writer.stored } : {}),
  })
  if (options.datastore) await loadBindings(options.datastore, intake, writer)
  const gossip = joinHoldingsGossip(p2p.libp2p.services.pubsub, {
    federation: options.federation.toString(),
    peerId: p2p.peerId,
    intake,
    log,
  })
  const stopping = new AbortController()
  const sync = createHoldingsSync({ p2p, store, intake, log, stopping: stopping.signal })
  await sync.handle()
  const publish = publisher(intake, gossip.publish, log)
  let announcer: Announcer | undefined
  const startAnnouncing = async (apiUrl: string): Promise<void> => {
    if (!options.held || announcer) return
    announcer = createAnnouncer({
      federation: options.federation,
      peerId: p2p.peerId,
      peerKey: options.peerKey,
      held: options.held,
      isKnownWeights,
      ...(options.withheld ? { isWithheld: withheldBy(options.withheld) } : {}),
      // The API's real address: `api` may name port 0 until it listens.
      gateways: () => announcedGateways({ ...config(), api: new URL(apiUrl).host }),
      clock,
      publish: async (bytes) => void (await publish(bytes, 'announcement')),
      log,
    })
    await announcer.renew()
  }
  const schedule = startSchedule({
    p2p,
    sync,
    store,
    announcer: () => announcer,
    recordCount: () => records.fold.state().recordCount,
    pruneBindings: () => pruneBindings(store, isMember, writer),
    renewMs,
    clock,
    stopping: stopping.signal,
  })
  const holdersNow = (weights: CID) => holdersOf(store, weights, membersOfPeers(store, records.fold.state()))

  return {
    gatewaysOf: (weights) => holderSources(holdersNow(weights)),
    holdersOf: holdersNow,
    report,
    minHolders,
    version: (key) => versionEntry(records, store, minHolders(), key),
    bindings: () =>
      store
        .bindings()
        .filter(({ value: b }) => isMember(b.member))
        .map(({ value: b }) => ({ member: b.member, peers: [...b.peers], at: b.at })),
    submitBinding: (bytes) => publish(bytes, 'binding'),
    syncWith: (peer) => sync.pull(peer),
    startAnnouncing,
    renew: () => announcer?.renew() ?? Promise.resolve(),
    store,
    async stop() {
      stopping.abort()
      schedule.stop()
      await announcer?.stop()
      await sync.unhandle()
      await writer?.settled()
    },
  }
}

/** Takes a message as gossip would and, once stored, gossips it. */
function publisher(intake: Intake, gossip: (bytes: Uint8Array) => Promise<unknown>, log: Logger) {
  return async (bytes: Uint8Array, only?: 'announcement' | 'binding'): Promise<TakeResult> => {
    const taken = intake.take(bytes, only)
    if (taken.verdict === 'accept') await gossip(bytes)
    else log.debug('holdings-not-published', { kind: taken.kind, reason: taken.reason })
    return taken
  }
}

/** Sync with each peer as it connects; every renewal period renew, sweep and sync with every peer. */
function startSchedule(parts: {
  p2p: P2P
  sync: HoldingsSync
  store: HoldingsStore
  announcer: () => Announcer | undefined
  recordCount: () => number
  pruneBindings: () => void
  renewMs: () => number
  clock: () => number
  stopping: AbortSignal
}) {
  const { p2p, sync, store } = parts
  const deferred = new DeferredPeers(parts.clock)
  let prunedAt = parts.recordCount()
  const pull = (peer: string) =>
    void sync.pull(peer).then((outcome) => deferred.answered(peer, outcome.deferred, parts.recordCount()))
  const onConnect = (evt: CustomEvent<{ toString(): string }>) => {
    if (!parts.stopping.aborted) pull(evt.detail.toString())
  }
  p2p.libp2p.addEventListener('peer:connect', onConnect)
  const renewal = everyPeriod(parts.renewMs, () => {
    store.sweep()
    void parts.announcer()?.renew()
    for (const { id } of p2p.peers()) pull(id)
  })
  const catchUp = setInterval(() => {
    void parts.announcer()?.announceNew()
    const records = parts.recordCount()
    // Membership changes only with records: look for bindings to drop only when they changed.
    if (records !== prunedAt) {
      prunedAt = records
      parts.pruneBindings()
    }
    for (const peer of deferred.due(records)) pull(peer)
  }, CATCH_UP_MS)
  catchUp.unref()
  return {
    stop() {
      renewal.stop()
      clearInterval(catchUp)
      p2p.libp2p.removeEventListener('peer:connect', onConnect)
    },
  }
}

/**
 * Runs `work` every `periodMs()`, a live setting: it looks at most every CATCH_UP_MS whether a
 * period has passed, so a shorter period set while a long one runs applies within seconds.
 */
function everyPeriod(periodMs: () => number, work: () => void): { stop(): void } {
  let last = performance.now()
  let timer: NodeJS.Timeout
  const arm = () => {
    timer = setTimeout(tick, Math.min(periodMs(), CATCH_UP_MS))
    timer.unref()
  }
  const tick = () => {
    if (performance.now() - last >= periodMs()) {
      last = performance.now()
      work()
    }
    arm()
  }
  arm()
  return { stop: () => clearTimeout(timer) }
}

/** Drops from memory and the datastore the bindings of those no longer members (SPEC §15.3). */
function pruneBindings(store: HoldingsStore, isMember: (did: string) => boolean, writer?: BindingWriter) {
  for (const member of store.pruneBindings(isMember)) writer?.dropped(member)
}

/** Whether the node withholds a root, from the withheld roots by their CIDv1 text. */
function withheldBy(withheld: () => ReadonlyMap<string, unknown>): (root: CID) => boolean {
  return (root) => withheld().has(root.toV1().toString())
}

function versionEntry(records: RecordStore, store: HoldingsStore, minHolders: number, key: string) {
  const state = records.fold.state()
  const model = state.models.get(key)
  if (!model)
    throw new NodeError('unknown-model', `no manifest of ${key} is known to this node`, { status: 404 })
  const entry = entryOf({ fold: records.fold, store, minHolders }, model, membersOfPeers(store, state))
  if (!entry)
    throw new NodeError(
      'model-ambiguous',
      `${key} has ${model.manifests.length} rival manifests and none is ratified: no single weights to report on`,
      { status: 409 },
    )
  return entry
}
