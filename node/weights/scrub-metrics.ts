/**
 * The scrub's Prometheus series (docs/adr/0031-scrubbing-and-clean-up.md), on the node's registry.
 */
import { Counter, Gauge, type Registry } from 'prom-client'

export interface ScrubMetrics {
  /** Bytes read back and hashed. */
  readonly bytes: Counter
  /** Passes finished, by result (clean, damaged). */
  readonly roots: Counter
  /** Blocks found wrong, by kind (corrupt: held but not hashing to its CID; missing). */
  readonly damagedBlocks: Counter
  /** Repairs, by result (repaired, failed). */
  readonly repairs: Counter
  /** Bytes read by the pass under way (0 between passes). */
  readonly passBytes: Gauge
  /** Pinned roots due for a scrub and not yet scrubbed. */
  readonly dueRoots: Gauge
  /** When the last pass ended (seconds since epoch, the node's clock). */
  readonly lastPass: Gauge
}

export function createScrubMetrics(registry: Registry): ScrubMetrics {
  const registers = [registry]
  return {
    bytes: new Counter({
      name: 'allmende_scrub_bytes_total',
      help: 'bytes of held weights read back and hashed by the scrub',
      registers,
    }),
    roots: new Counter({
      name: 'allmende_scrub_roots_total',
      help: 'scrub passes over a weights root, by result (clean, damaged)',
      labelNames: ['result'],
      registers,
    }),
    damagedBlocks: new Counter({
      name: 'allmende_scrub_damaged_blocks_total',
      help: 'blocks the scrub found wrong, by kind (corrupt, missing)',
      labelNames: ['kind'],
      registers,
    }),
    repairs: new Counter({
      name: 'allmende_scrub_repairs_total',
      help: 'repairs of damaged weights, by result (repaired, failed)',
      labelNames: ['result'],
      registers,
    }),
    passBytes: new Gauge({
      name: 'allmende_scrub_pass_bytes',
      help: 'bytes read by the scrub pass under way (0 between passes)',
      registers,
    }),
    dueRoots: new Gauge({
      name: 'allmende_scrub_due_roots',
      help: 'pinned weights roots due for a scrub and not yet scrubbed',
      registers,
    }),
    lastPass: new Gauge({
      name: 'allmende_scrub_last_pass_timestamp_seconds',
      help: 'when the last scrub pass ended',
      registers,
    }),
  }
}
