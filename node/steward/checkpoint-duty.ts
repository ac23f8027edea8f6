/**
 * A steward's checkpoint duty (SPEC.md §11.2; ADR 0016): for the newest epoch boundary E (a
 * multiple of `checkpointIntervalMs`) with E + sealDeadlineMs passed, sign `checkpointFor(state,
 * E)` once. Only the newest: a steward that was down does not sign the epochs it missed.
 */
import type { CheckpointTiming } from '../../protocol/checkpoint-due.js'
import { checkpointFor, hasRole, type Signer } from '../../protocol/index.js'
import type { Logger } from '../log.js'
import type { RecordStore } from '../store.js'
import type { OwnRecords } from './own-records.js'
import { signAndKeep } from './sign-and-keep.js'

/** The newest epoch boundary whose checkpoint is due at `now` (E + sealDeadlineMs ≤ now). */
export function newestDueEpoch(rules: CheckpointTiming, now: number): number {
  const interval = rules.checkpointIntervalMs
  return Math.floor((now - rules.sealDeadlineMs) / interval) * interval
}

/** Signs the checkpoint due at `now`, if this steward has not yet; durable before it is published. */
export type CheckpointDuty = (now: number) => Promise<void>

export function createCheckpointDuty(parts: {
  store: RecordStore
  signer: Signer
  own: OwnRecords
  log: Logger
  publish: (bytes: Uint8Array) => Promise<unknown>
}): CheckpointDuty {
  const { store, signer, own, log } = parts
  const fold = store.fold
  return async (now) => {
    const head = fold.headState()
    if (!hasRole(head, signer.did, 'steward')) return
    const epoch = newestDueEpoch(head.rules, now)
    // Nothing to vouch for before the federation existed.
    if (epoch < fold.state().genesis.record.at || epoch <= own.signedEpoch) return
    const content = checkpointFor(fold.state(), epoch)
    const kept = await signAndKeep(
      store,
      signer,
      { kind: 'checkpoint', federation: fold.federation, at: now, body: content.body },
      { finalized: content.finalized },
      content.blocks,
    )
    if (!kept.ok) {
      log.error('checkpoint-not-taken', { epoch, code: kept.code, message: kept.message })
      return
    }
    own.signedEpoch = epoch
    log.info('checkpoint-signed', {
      epoch,
      height: content.body.height,
      stateRoot: content.body.stateRoot.toString(),
      finalized: content.finalized.length,
    })
    await parts.publish(kept.record.bytes).catch(() => {})
  }
}
