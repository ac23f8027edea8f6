/**
 * A steward node's duties (SPEC.md §10, steward duties, and §11.2; ADR 0016), run on a timer:
 * when proposals are due for sealing it syncs with the peers it is connected to (bounded), then
 * seals them one by one (steward/seal-duty.ts, steward/ratification.ts); then it signs the
 * checkpoint due, if any (steward/checkpoint-duty.ts). What it did before a restart is read back
 * from its own records in the log (steward/own-records.ts), so it never signs anything twice.
 */

import type { Signer } from '../protocol/index.js'
import type { Logger } from './log.js'
import { createCheckpointDuty } from './steward/checkpoint-duty.js'
import { readOwnRecords } from './steward/own-records.js'
import { type CheckWeights, createRatification } from './steward/ratification.js'
import { createSealDuty, dueForSealing } from './steward/seal-duty.js'
import type { RecordStore } from './store.js'

export interface StewardOptions {
  readonly store: RecordStore
  readonly signer: Signer
  readonly clock: () => number
  readonly log: Logger
  /** Best-effort gossip of a seal already made durable. */
  readonly publish: (bytes: Uint8Array) => Promise<unknown>
  /** One bounded sync round with every connected peer, before sealing. */
  readonly syncPeers: () => Promise<unknown>
  /**
   * The weights check of a manifest: true when every file is held and verified, false when
   * they can never pass (wrong bytes), undefined when not (yet) available.
   */
  readonly checkWeights?: CheckWeights
  /** How often the duty runs (default 500 ms). */
  readonly tickMs?: number
}

export interface Steward {
  readonly did: string
  /** Runs the duty once now (tests; the timer runs it too). */
  tick(): Promise<void>
  stop(): Promise<void>
}

export function createSteward(options: StewardOptions): Steward {
  const { store, signer, clock, log, publish } = options
  const own = readOwnRecords(store.fold, signer.did)
  const ratification = createRatification({ fold: store.fold, own, checkWeights: options.checkWeights })
  const seal = createSealDuty({ store, signer, own, ratification, log, publish })
  const checkpoint = createCheckpointDuty({ store, signer, own, log, publish })

  let stopped = false
  /** One run of the duties: the due proposals sealed in order, then the checkpoint. */
  const runDuties = async () => {
    try {
      const due = dueForSealing(store.fold.state(), own.handled, clock())
      if (due.length > 0) {
        await options.syncPeers()
        for (const p of due) {
          if (stopped) return
          await seal(p, clock())
        }
      }
      if (!stopped) await checkpoint(clock())
    } catch (e) {
      log.error('steward-failed', { error: e as Error })
    }
  }

  let running: Promise<void> | undefined
  const tick = (): Promise<void> => {
    if (running) return running
    // Cleared only once the run is over (a run with nothing due finishes synchronously).
    running = runDuties().finally(() => {
      running = undefined
    })
    return running
  }

  const timer = setInterval(() => void tick(), options.tickMs ?? 500)
  timer.unref()
  return {
    did: signer.did,
    tick,
    async stop() {
      stopped = true
      clearInterval(timer)
      await running
    },
  }
}
