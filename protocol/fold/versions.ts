/**
 * Record versions in the fold (SPEC.md §5.1, Versions; docs/adr/0023). A future record (`v` ≥ 2)
 * is held and reported `version-unsupported`: this version cannot read its body, so it counts
 * nowhere. A proposal, vote or seal whose `v` is below its electorate's `minVersion` is
 * `version-below-minimum`: once the stewards have raised it, records of an older version stop
 * counting. Pure functions; the rule files and the accumulator call them.
 */
import type { GovState } from '../govstate.js'
import { type AnyVerified, type FutureRecord, isFutureRecord } from '../record.js'
import { RECORD_VERSION, type Rules } from '../types.js'
import type { VoidEvaluation } from './evaluation.js'
import { type Inapplicable, inapplicable } from './reports.js'
import type { RecordReport } from './types.js'

/** The lowest record version the rules accept for proposals, votes and seals (absent: 1). */
export function minVersionOf(rules: Rules): number {
  return rules.minVersion ?? RECORD_VERSION
}

/** True when `record` is older than its electorate's rules accept. */
export function isBelowMinimum(
  record: { readonly record: { readonly v: number } },
  electorate: GovState,
): boolean {
  return record.record.v < minVersionOf(electorate.rules)
}

const BELOW_MINIMUM_MESSAGE = "the record's version is below the minVersion of its electorate's rules"

/** The report of a vote or seal older than its electorate's `minVersion`. */
export const BELOW_MINIMUM: Inapplicable = Object.freeze(
  inapplicable('version-below-minimum', BELOW_MINIMUM_MESSAGE),
)

/** The evaluation of a proposal older than its electorate's `minVersion`. */
export const PROPOSAL_BELOW_MINIMUM: VoidEvaluation = Object.freeze({
  validity: 'void',
  code: 'version-below-minimum',
  message: BELOW_MINIMUM_MESSAGE,
})

/** The report of a future record: kept and relayed, counted nowhere. */
export function futureRecordReport(record: FutureRecord): Inapplicable {
  return inapplicable(
    'version-unsupported',
    `a "${record.futureKind}" record of version ${record.record.v}: this fold applies version ${RECORD_VERSION}`,
  )
}

/** The report of a held record if it is a future record (they are reported by this rule alone). */
export function reportIfFuture(record: AnyVerified | undefined): RecordReport | undefined {
  return record && isFutureRecord(record) ? futureRecordReport(record) : undefined
}

/**
 * Whether the head state demands a version this implementation does not speak: then every
 * proposal, vote and seal it could sign is `version-below-minimum`, and the node must be upgraded.
 */
export function versionAboveSpoken(head: GovState): number | undefined {
  const required = minVersionOf(head.rules)
  return required > RECORD_VERSION ? required : undefined
}
