/**
 * The node's libp2p side, wired to its record store: gossip is validated by the store (inside
 * gossipsub, synchronously, never fetching) and accepted records are ingested; sync sessions
 * report to the metrics. How libp2p is made is passed in (`makeP2P`, default `createP2P`), so a
 * test can hand in another.
 */
import type { NodeConfig } from '../config.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import {
  type Blockstore,
  type Datastore,
  type P2P,
  type P2POptions,
  type PrivateKey,
  topicFor,
} from '../p2p.js'
import type { Checked, RecordStore } from '../store.js'
import { createSync, type SyncOptions, type SyncService } from '../sync/service.js'

/** Makes and starts the libp2p side (libp2p, gossipsub, and Helia on it unless `helia: false`). */
export type P2PFactory = (options: P2POptions) => Promise<P2P>

export interface GossipOptions {
  readonly config: NodeConfig
  readonly peerKey?: PrivateKey
  readonly store: RecordStore
  readonly metrics: Metrics
  readonly clock: () => number
  readonly log: Logger
  readonly makeP2P: P2PFactory
  readonly helia: boolean
  readonly blockstore?: Blockstore
  readonly datastore?: Datastore
  /** Topics joined later by other parts (holding announcements). */
  readonly otherTopics?: readonly string[]
}

/** Starts libp2p on the federation's topic, its validator and handler bound to the store. */
export function startGossip(options: GossipOptions): Promise<P2P> {
  const { config, store, metrics, clock, log } = options
  // The validator's verdict, kept for the message handler that follows it (same bytes object).
  const verdicts = new WeakMap<Uint8Array, Checked>()
  return options.makeP2P({
    ...(options.peerKey ? { peerKey: options.peerKey } : {}),
    listen: [...config.listen],
    bootstrap: [...config.bootstrap],
    topic: topicFor(config.federation),
    ...(options.otherTopics ? { otherTopics: options.otherTopics } : {}),
    validate: (bytes) => {
      const checked = store.check(bytes)
      verdicts.set(bytes, checked)
      return checked.verdict
    },
    onMessage: (bytes, from) => {
      metrics.gossipReceived.inc()
      const checked = verdicts.get(bytes)
      if (checked?.record)
        metrics.gossipLatency.observe(Math.max(0, clock() - checked.record.record.at) / 1000)
      store
        .ingest(bytes, [], checked)
        .then((r) => {
          if (r.verdict === 'accept' && !r.duplicate)
            log.debug('record-received', { id: r.record?.cid.toString(), from, kind: r.record?.record.kind })
        })
        .catch((e) => log.warn('ingest-failed', { from, error: e as Error }))
    },
    log: (level, event, fields) => log.log(level, event, fields as Record<string, unknown>),
    ...(options.blockstore ? { blockstore: options.blockstore } : {}),
    ...(options.datastore ? { datastore: options.datastore } : {}),
    helia: options.helia,
  })
}

/** Sync sessions with the node's peers, each finished session counted in the metrics. */
export function startSync(
  p2p: P2P,
  store: RecordStore,
  metrics: Metrics,
  log: Logger,
  options: Omit<SyncOptions, 'p2p' | 'store' | 'log'> = {},
): SyncService {
  return createSync({
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
    ...options,
  })
}
