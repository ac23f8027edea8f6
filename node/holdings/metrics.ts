/**
 * Prometheus series of the holdings (docs/adr/0029-holding-announcements.md), on the node's
 * registry: holders per ratified version and the versions below `minHolders` (read from the
 * replication report at scrape time, built once per scrape), live announcements held, and
 * messages refused by reason.
 */
import { Counter, Gauge, type Registry } from 'prom-client'
import type { ReplicationReport } from './report.js'
import type { HoldingsRefusal } from './wire.js'

export interface HoldingsMetrics {
  refused(reason: HoldingsRefusal): void
}

export function createHoldingsMetrics(
  registry: Registry,
  read: { report: () => ReplicationReport; liveAnnouncements: () => number },
): HoldingsMetrics {
  const report = oncePerScrape(read.report)
  new Gauge({
    name: 'allmende_version_holders',
    help: 'nodes with a live holding announcement, per ratified version (name@version)',
    labelNames: ['model'],
    registers: [registry],
    collect() {
      this.reset()
      for (const v of report().versions) this.set({ model: v.model }, v.holders.length)
    },
  })
  new Gauge({
    name: 'allmende_versions_below_min_holders',
    help: 'ratified versions held by fewer nodes than minHolders',
    registers: [registry],
    collect() {
      this.set(report().versions.filter((v) => v.flagged).length)
    },
  })
  new Gauge({
    name: 'allmende_holding_announcements',
    help: 'live holding announcements held (withdrawals included)',
    registers: [registry],
    collect() {
      this.set(read.liveAnnouncements())
    },
  })
  const refused = new Counter({
    name: 'allmende_holdings_refused_total',
    help: 'holding announcements and bindings refused, by reason',
    labelNames: ['reason'],
    registers: [registry],
  })
  return { refused: (reason) => refused.inc({ reason }) }
}

/**
 * `build`, called at most once per turn of the event loop: a scrape collects every gauge in one
 * turn, and the report costs versions × holders, so both gauges share one.
 */
export function oncePerScrape<T>(build: () => T): () => T {
  let built: { value: T } | undefined
  return () => {
    if (built) return built.value
    built = { value: build() }
    setImmediate(() => {
      built = undefined
    })
    return built.value
  }
}
