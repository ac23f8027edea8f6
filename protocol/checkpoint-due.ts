/**
 * When a counted checkpoint will cover a model version's decision (SPEC.md §11.2): checkpoints are
 * for epoch boundaries E, multiples of `checkpointIntervalMs`, and a steward signs one once
 * `E + sealDeadlineMs` has passed on its clock. A decision whose proposal closed at C is covered
 * by the first E ≥ C. Until then a certificate can only prove an older state (or nothing), so a
 * node says when to come back instead. Pure: `now` is a parameter.
 */
import { cidKey } from './cid.js'
import type { FederationState, ProposalView } from './fold/index.js'
import type { Rules } from './types.js'

export type CheckpointTiming = Pick<Rules, 'checkpointIntervalMs' | 'sealDeadlineMs'>

export interface CheckpointDue {
  /** The first epoch boundary at or after the close: its checkpoint covers the decision. */
  readonly epoch: number
  /** When stewards sign that checkpoint: `epoch + sealDeadlineMs`. */
  readonly at: number
  /** True when `at` has passed and the checkpoint is not counted yet (stewards down or behind). */
  readonly overdue: boolean
  /** When the next checkpoint is signed, if the one for `epoch` is overdue (any later one covers it too). */
  readonly nextAt: number
}

/** When the checkpoint covering a decision closed at `closesAt` is due, seen at `now`. */
export function checkpointDue(rules: CheckpointTiming, closesAt: number, now: number): CheckpointDue {
  const interval = rules.checkpointIntervalMs
  const epoch = Math.ceil(closesAt / interval) * interval
  const at = epoch + rules.sealDeadlineMs
  if (at > now) return { epoch, at, overdue: false, nextAt: at }
  // The newest epoch whose signing time is still ahead.
  const next = (Math.floor((now - rules.sealDeadlineMs) / interval) + 1) * interval
  return { epoch, at, overdue: true, nextAt: next + rules.sealDeadlineMs }
}

/**
 * The final decisions on `model` (name@version) that the newest counted checkpoint does not cover
 * yet: every passed ratification or revocation of its manifests that is not confirmed. Empty when
 * everything decided about the version is covered, or nothing was decided.
 */
export function uncoveredDecisions(state: FederationState, model: string): ProposalView[] {
  const version = state.models.get(model)
  if (!version) return []
  const out: ProposalView[] = []
  for (const m of version.manifests) {
    const manifest = state.manifests.get(cidKey(m))
    for (const decision of [...(manifest?.ratifiedBy ?? []), ...(manifest?.revokedBy ?? [])]) {
      const p = state.proposals.get(cidKey(decision))
      if (p && !p.confirmed) out.push(p)
    }
  }
  return out
}
