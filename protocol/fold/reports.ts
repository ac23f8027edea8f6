/**
 * Reports (SPEC.md §8.1): every record the fold holds is applied, pending (waiting for a record
 * it depends on) or inapplicable (counted nowhere), with a stable code. The report of a
 * proposal is its evaluation's; votes are reported in votes.ts, seals in seals.ts, manifests and
 * attestations in manifests.ts, checkpoints in checkpoints.ts.
 */
import type { InapplicableCode, PendingCode } from '../codes.js'
import type { Evaluation } from './evaluation.js'
import type { RecordReport } from './types.js'

export const APPLIED: RecordReport = Object.freeze({ status: 'applied' })

export type Inapplicable = Extract<RecordReport, { status: 'inapplicable' }>

export function pending(code: PendingCode, message: string): RecordReport {
  return { status: 'pending', code, message }
}

export function inapplicable(code: InapplicableCode, message: string): Inapplicable {
  return { status: 'inapplicable', code, message }
}

/** True when a step of a check failed with `Inapplicable` instead of returning its value. */
export function failed<T>(result: T | Inapplicable): result is Inapplicable {
  return (result as Inapplicable | undefined)?.status === 'inapplicable'
}

/** A proposal is applied when valid, else pending or inapplicable for its evaluation's reason. */
export function evaluationReport(evaluation: Evaluation): RecordReport {
  return evaluation.validity === 'valid'
    ? APPLIED
    : evaluation.validity === 'pending'
      ? pending(evaluation.code, evaluation.message)
      : inapplicable(evaluation.code, evaluation.message)
}
