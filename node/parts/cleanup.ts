/**
 * The node's clean-up of weights nobody ratified, wired (node/weights/cleanup.ts;
 * docs/adr/0031-scrubbing-and-clean-up.md): the fold's state, the pins, the ledger of when roots
 * were first pinned, and a timer that collects what is due. `node gc` (api/gc.ts) uses the same
 * clean-up.
 */
import type { CID } from 'multiformats/cid'
import { Counter, type Registry } from 'prom-client'
import type { NodeConfig } from '../config.js'
import { WEIGHTS_CONFIG_DEFAULTS } from '../config-weights.js'
import type { Logger } from '../log.js'
import type { P2P } from '../p2p.js'
import type { RecordStore } from '../store.js'
import type { BlockFiles } from '../weights/block-files.js'
import { type Cleanup, type CleanupPins, createCleanup } from '../weights/cleanup.js'
import type { HeldVersions } from '../weights/held-versions.js'
import type { RootLedger } from '../weights/root-ledger.js'

/** How often the pins are looked at (first sights recorded, what is due let go). */
const CLEANUP_TICK_MS = 60_000

export interface CleanupPartOptions {
  /** The config as it is now (`unratifiedRetentionMs` is a live setting). */
  readonly config: () => NodeConfig
  readonly store: RecordStore
  readonly p2p: P2P
  readonly blockstore: BlockFiles
  readonly pins: CleanupPins
  readonly held: HeldVersions
  readonly ledger: RootLedger
  readonly clock: () => number
  readonly log: Logger
  /** Where `allmende_cleanup_runs_total` goes. */
  readonly registry: Registry
  /** Aborts a run under way when the node stops. */
  readonly stopped: AbortSignal
  readonly tickMs?: number
}

/** The pinned roots, as Helia's pins API lists them (pins.ts keeps its records). */
export async function pinnedRoots(p2p: P2P): Promise<CID[]> {
  const roots: CID[] = []
  for await (const pin of p2p.helia!.pins.ls()) roots.push(pin.cid)
  return roots
}

export interface CleanupPart {
  readonly cleanup: Cleanup
  /** Ends the timer and waits for a run under way (the node's stop signal aborts it). */
  stop(): Promise<void>
}

/** The clean-up and its timer (first run at once, so new pins get their first sight recorded). */
export function startCleanup(options: CleanupPartOptions): CleanupPart {
  const { store, log, stopped } = options
  const cleanup = createCleanup({
    state: () => store.fold.state(),
    manifestOf: (manifest) => {
      const r = store.fold.get(manifest)
      return r?.record.kind === 'manifest' ? { weights: r.record.body.weights, at: r.record.at } : undefined
    },
    pinnedRoots: () => pinnedRoots(options.p2p),
    pins: options.pins,
    blockstore: options.blockstore,
    ledger: options.ledger,
    held: options.held,
    clock: options.clock,
    retentionMs: () =>
      options.config().unratifiedRetentionMs ?? WEIGHTS_CONFIG_DEFAULTS.unratifiedRetentionMs,
    log,
  })
  // Runs ended, so an operator (or a test) sees the timer is alive between collections.
  const runs = new Counter({
    name: 'allmende_cleanup_runs_total',
    help: 'runs of the clean-up of unratified weights ended, by result (ok, failed)',
    labelNames: ['result'],
    registers: [options.registry],
  })
  let running: Promise<unknown> | undefined
  const tick = () => {
    running ??= cleanup
      .collect(stopped)
      .then(() => runs.inc({ result: 'ok' }))
      .catch((e) => {
        if (stopped.aborted) return
        runs.inc({ result: 'failed' })
        log.warn('weights-gc-failed', { error: e as Error })
      })
      .finally(() => {
        running = undefined
      })
  }
  const timer = setInterval(tick, options.tickMs ?? CLEANUP_TICK_MS)
  timer.unref()
  tick()
  return {
    cleanup,
    async stop() {
      clearInterval(timer)
      await running
    },
  }
}
