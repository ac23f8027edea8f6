/**
 * Tallies and outcomes (SPEC.md §8.4), in exact integer arithmetic. Weights
 * are safe integers, but weights times fraction parts can pass 2^53, so the
 * comparisons run on BigInt.
 *
 *   quorum:  (yes + no + abstain) · qd ≥ qn · eligible
 *   passed:  quorum, yes > 0, yes · td ≥ tn · (yes + no), and (ratify) the
 *            required attestations: per kind, ≥ min distinct auditors' pass
 */
import type { ActionRule, Outcome, Tally } from './types.js'

export const EMPTY_TALLY: Tally = Object.freeze({ yes: 0, no: 0, abstain: 0 })

export function quorumMet(tally: Tally, eligible: number, rule: ActionRule): boolean {
  const [qn, qd] = rule.quorum
  const cast = BigInt(tally.yes) + BigInt(tally.no) + BigInt(tally.abstain)
  return cast * BigInt(qd) >= BigInt(qn) * BigInt(eligible)
}

export function thresholdMet(tally: Tally, rule: ActionRule): boolean {
  const [tn, td] = rule.threshold
  const yes = BigInt(tally.yes)
  return tally.yes > 0 && yes * BigInt(td) >= BigInt(tn) * (yes + BigInt(tally.no))
}

/** Pass counts per attestation kind (distinct auditors) against the rule's requirements. */
export function attestationsMet(passes: ReadonlyMap<string, number>, rule: ActionRule): boolean {
  for (const req of rule.requiredAttestations) if ((passes.get(req.kind) ?? 0) < req.min) return false
  return true
}

/**
 * The outcome of a tally. `passes` is undefined for actions without
 * attestation requirements (everything but ratify-model).
 */
export function outcomeOf(
  tally: Tally,
  eligible: number,
  rule: ActionRule,
  passes: ReadonlyMap<string, number> | undefined,
): Outcome {
  if (!quorumMet(tally, eligible, rule)) return 'no-quorum'
  if (!thresholdMet(tally, rule)) return 'rejected'
  if (passes !== undefined && !attestationsMet(passes, rule)) return 'rejected'
  return 'passed'
}

export function sameTally(a: Tally, b: Tally): boolean {
  return a.yes === b.yes && a.no === b.no && a.abstain === b.abstain
}
