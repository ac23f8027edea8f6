/**
 * Prometheus metrics (prom-client): records by kind and verdict, peers,
 * gossip latency, ingest time, log size. Each node owns its registry, so
 * several nodes can run in one process (tests).
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { RecordStore } from './store.js'

export interface Metrics {
  readonly registry: Registry
  readonly gossipLatency: Histogram
  readonly ingestSeconds: Histogram
  readonly gossipReceived: Counter
  /** Sync sessions by role and result (`ok` or the failure's code). */
  readonly syncSessions: Counter
  /** Sync frame bytes by direction (sent, received). */
  readonly syncBytes: Counter
  /** Records and list blocks taken as new through sync. */
  readonly syncTaken: Counter
  /** List blocks refused in sync: named by no held seal or checkpoint. */
  readonly syncRefused: Counter
  /** Refreshes the gauges that are read from the node on scrape. */
  update(): void
}

export function createMetrics(read: { store: () => RecordStore; peers: () => number }): Metrics {
  const registry = new Registry()
  // Process metrics (resident memory, CPU, event-loop lag, heap) under the usual names.
  collectDefaultMetrics({ register: registry })
  const records = new Gauge({
    name: 'allmende_records',
    help: 'records held, by kind',
    labelNames: ['kind'],
    registers: [registry],
  })
  const verdicts = new Gauge({
    name: 'allmende_records_checked',
    help: 'records checked since start, by kind and verdict (accept, reject, ignore, duplicate)',
    labelNames: ['kind', 'verdict'],
    registers: [registry],
  })
  const peers = new Gauge({ name: 'allmende_peers', help: 'connected peers', registers: [registry] })
  const logBytes = new Gauge({
    name: 'allmende_record_log_bytes',
    help: 'bytes in the record log',
    registers: [registry],
  })
  const gossipLatency = new Histogram({
    name: 'allmende_gossip_latency_seconds',
    help: 'time from a record’s signed `at` to its arrival by gossip (clock skew included)',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  })
  const ingestSeconds = new Histogram({
    name: 'allmende_ingest_seconds',
    help: 'time to validate, log durably and fold one submitted record',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
    registers: [registry],
  })
  const gossipReceived = new Counter({
    name: 'allmende_gossip_received_total',
    help: 'gossip messages received',
    registers: [registry],
  })
  const syncSessions = new Counter({
    name: 'allmende_sync_sessions_total',
    help: 'sync sessions, by role (initiator, responder) and result (ok, or the failure code)',
    labelNames: ['role', 'result'],
    registers: [registry],
  })
  const syncBytes = new Counter({
    name: 'allmende_sync_bytes_total',
    help: 'sync frame bytes, by direction',
    labelNames: ['direction'],
    registers: [registry],
  })
  const syncTaken = new Counter({
    name: 'allmende_sync_taken_total',
    help: 'records and list blocks taken as new through sync',
    registers: [registry],
  })
  const syncRefused = new Counter({
    name: 'allmende_sync_refused_blocks_total',
    help: 'list blocks refused in sync because no held seal or checkpoint names them',
    registers: [registry],
  })
  return {
    registry,
    gossipLatency,
    ingestSeconds,
    gossipReceived,
    syncSessions,
    syncBytes,
    syncTaken,
    syncRefused,
    update() {
      const store = read.store()
      const byKind = new Map<string, number>()
      for (const r of store.fold.records()) byKind.set(r.record.kind, (byKind.get(r.record.kind) ?? 0) + 1)
      records.reset()
      for (const [kind, n] of byKind) records.set({ kind }, n)
      verdicts.reset()
      for (const [k, n] of store.counters.verdicts) {
        const [kind, verdict] = k.split('|')
        verdicts.set({ kind: kind!, verdict: verdict! }, n)
      }
      peers.set(read.peers())
      logBytes.set(store.logBytes())
    },
  }
}
