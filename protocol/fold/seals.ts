/**
 * Whether a seal counts for its proposal (SPEC.md §8.5, steps 1–7), recomputed from its own
 * lists. Keys of named records not here yet are collected as they are met and returned even
 * when a later check fails: such a record's arrival can change which check fails first. With
 * `declaredGovernanceSeals` (compact certificates), a governance seal without its lists counts
 * after steps 1–3 for what it declares (docs/adr/0022).
 */
import type { CID } from 'multiformats/cid'
import { cidKey } from '../cid.js'
import type { Did } from '../did.js'
import { hasRole } from '../govstate.js'
import type { Verified } from '../record.js'
import { outcomeOf, sameTally } from '../tally.js'
import type { Tally } from '../types.js'
import { isGovernance } from './chain.js'
import type { ValidEvaluation } from './evaluation.js'
import { type Awaits, type FoldIndexes, type FoldReader, NOTHING_AWAITED } from './reader.js'
import { APPLIED, failed, type Inapplicable, inapplicable, pending } from './reports.js'
import type { RecordReport } from './types.js'
import { BELOW_MINIMUM, isBelowMinimum } from './versions.js'
import { voteProblem } from './votes.js'

export interface SealCheck {
  readonly report: RecordReport
  readonly awaits: Awaits
}

export function checkSeal(
  proposal: Verified<'proposal'>,
  evaluation: ValidEvaluation,
  seal: Verified<'seal'>,
  reader: FoldReader,
): SealCheck {
  const headerProblem = sealHeaderProblem(proposal, evaluation, seal)
  if (headerProblem) return { report: headerProblem, awaits: NOTHING_AWAITED }
  const lists = seal.lists
  if (!lists) {
    // A compact certificate proves a governance step by t stewards' word for it (docs/adr/0022).
    if (reader.declaredGovernanceSeals && isGovernance(proposal))
      return { report: APPLIED, awaits: NOTHING_AWAITED }
    return {
      report: pending('seal-list-pending', 'the blocks of the seal lists are not here yet'),
      awaits: NOTHING_AWAITED,
    }
  }
  const awaits: string[] = []
  const tally = tallyNamedVotes(proposal, evaluation, lists.votes, reader.indexes, awaits)
  if (failed(tally)) return { report: tally, awaits }
  const voteMissing = awaits.length > 0
  const passes = passesOfNamedAttestations(proposal, evaluation, lists.attestations, reader.indexes, awaits)
  if (failed(passes)) return { report: passes, awaits }
  if (awaits.length > 0) {
    const message = voteMissing
      ? 'a vote the seal names is not known yet'
      : 'an attestation the seal names is not known yet'
    return { report: pending('record-unknown', message), awaits }
  }
  return { report: sealContentCheck(seal, evaluation, tally, passes), awaits: NOTHING_AWAITED }
}

/** Steps 1–3: a steward of the electorate, inside the seal window, weightsVerified exactly on ratify. */
function sealHeaderProblem(
  proposal: Verified<'proposal'>,
  evaluation: ValidEvaluation,
  seal: Verified<'seal'>,
): Inapplicable | undefined {
  if (isBelowMinimum(seal, evaluation.electorate)) return BELOW_MINIMUM
  const { author, at } = seal.record
  const { closesAt, action } = proposal.record.body
  const rules = evaluation.electorate.rules
  if (!hasRole(evaluation.electorate, author, 'steward'))
    return inapplicable('seal-not-steward', 'only stewards of the electorate seal')
  if (at < closesAt + rules.sealGraceMs || at > closesAt + rules.sealDeadlineMs) {
    return inapplicable(
      'seal-window',
      'the seal is signed outside [closesAt + sealGraceMs, closesAt + sealDeadlineMs]',
    )
  }
  if ((action.type === 'ratify-model') !== (seal.record.body.weightsVerified !== undefined)) {
    return inapplicable(
      'seal-weights-field',
      'weightsVerified is present exactly on seals of ratify proposals',
    )
  }
  return undefined
}

/**
 * Walks the records a seal names, in its list's order: the key of each not here yet goes to
 * `awaits` and the walk goes on; a record of another kind than `kind` is `notOfKind`; each of
 * `kind` is handed to `check`, and the first problem it returns ends the walk.
 */
function walkNamed<K extends 'vote' | 'attestation'>(
  named: readonly CID[],
  kind: K,
  indexes: FoldIndexes,
  awaits: string[],
  notOfKind: Inapplicable,
  check: (record: Verified<K>) => Inapplicable | undefined,
): Inapplicable | undefined {
  for (const cid of named) {
    const key = cidKey(cid)
    const record = indexes.recordsByKey.get(key)
    if (!record) {
      awaits.push(key)
      continue
    }
    if (record.record.kind !== kind) return notOfKind
    const problem = check(record as Verified<K>)
    if (problem) return problem
  }
  return undefined
}

/** Step 5: every named vote a vote on the proposal, valid for it, one per voter; their tally. */
function tallyNamedVotes(
  proposal: Verified<'proposal'>,
  evaluation: ValidEvaluation,
  named: readonly CID[],
  indexes: FoldIndexes,
  awaits: string[],
): Tally | Inapplicable {
  const tally = { yes: 0, no: 0, abstain: 0 }
  const voters = new Set<Did>()
  const notAVote = inapplicable('seal-vote-invalid', 'the seal names a record that is not a vote')
  const problem = walkNamed(named, 'vote', indexes, awaits, notAVote, (vote) => {
    if (!vote.record.body.proposal.equals(proposal.cid))
      return inapplicable('seal-vote-invalid', 'the seal names a vote on another proposal')
    const invalid = voteProblem(vote, proposal, evaluation)
    if (invalid)
      return inapplicable(
        'seal-vote-invalid',
        `the seal names a vote that does not count: ${invalid.message}`,
      )
    const voter = vote.record.author
    if (voters.has(voter)) return inapplicable('seal-voter-twice', 'the seal names two votes of one voter')
    voters.add(voter)
    tally[vote.record.body.choice] += evaluation.electorate.members.get(voter)!.weight
    return undefined
  })
  return problem ?? tally
}

/**
 * Step 6: for ratify, every named attestation one of the manifest, signed by closesAt, by an
 * auditor of the electorate, one per auditor and kind; the passes per kind. Other seals name none.
 */
function passesOfNamedAttestations(
  proposal: Verified<'proposal'>,
  evaluation: ValidEvaluation,
  named: readonly CID[],
  indexes: FoldIndexes,
  awaits: string[],
): Map<string, number> | undefined | Inapplicable {
  const { closesAt, action } = proposal.record.body
  if (action.type !== 'ratify-model') {
    if (named.length === 0) return undefined
    return inapplicable('seal-attestation-invalid', 'only seals of ratify proposals name attestations')
  }
  const passes = new Map<string, number>()
  const slots = new Set<string>()
  const notAnAttestation = inapplicable(
    'seal-attestation-invalid',
    'the seal names a record that is not an attestation',
  )
  const problem = walkNamed(named, 'attestation', indexes, awaits, notAnAttestation, (attestation) => {
    const body = attestation.record.body
    if (!body.subject.equals(action.manifest))
      return inapplicable('seal-attestation-invalid', 'the seal names an attestation of another manifest')
    if (attestation.record.at > closesAt)
      return inapplicable('seal-attestation-invalid', 'the seal names an attestation signed after close')
    if (!hasRole(evaluation.electorate, attestation.record.author, 'auditor')) {
      return inapplicable(
        'seal-attestation-invalid',
        'the seal names an attestation by someone not an auditor of the electorate',
      )
    }
    const slot = `${attestation.record.author}|${body.kind}`
    if (slots.has(slot))
      return inapplicable('seal-auditor-twice', 'the seal names two attestations of one auditor and kind')
    slots.add(slot)
    if (body.result === 'pass') passes.set(body.kind, (passes.get(body.kind) ?? 0) + 1)
    return undefined
  })
  return problem ?? passes
}

/** Step 7: the tally is the named votes' weights, the outcome follows from them and the attestations. */
function sealContentCheck(
  seal: Verified<'seal'>,
  evaluation: ValidEvaluation,
  tally: Tally,
  passes: ReadonlyMap<string, number> | undefined,
): RecordReport {
  const body = seal.record.body
  if (!sameTally(tally, body.tally))
    return inapplicable('seal-tally-mismatch', 'the tally does not match the votes the seal names')
  if (outcomeOf(tally, evaluation.eligible, evaluation.rule, passes) !== body.outcome) {
    return inapplicable(
      'seal-outcome-mismatch',
      'the outcome does not follow from the votes and attestations the seal names',
    )
  }
  return APPLIED
}

/**
 * The report of a new seal when it cannot count (its proposal unknown, pending or void, or its
 * own check fails or waits), with what it waits for; undefined when it counts, and so may
 * change its proposal's finality.
 */
export function uncountedSeal(seal: Verified<'seal'>, reader: FoldReader): SealCheck | undefined {
  const proposalKey = cidKey(seal.record.body.proposal)
  const proposal = reader.indexes.proposalsByKey.get(proposalKey)
  if (!proposal) {
    return {
      report: pending('proposal-unknown', 'the sealed proposal is not known yet'),
      awaits: [proposalKey],
    }
  }
  const evaluation = reader.evaluationOf(proposal)
  if (evaluation.validity === 'pending')
    return { report: pending('proposal-pending', 'the sealed proposal is pending'), awaits: NOTHING_AWAITED }
  if (evaluation.validity === 'void')
    return { report: inapplicable('proposal-void', 'the sealed proposal is void'), awaits: NOTHING_AWAITED }
  const check = checkSeal(proposal, evaluation, seal, reader)
  return check.report.status === 'applied' ? undefined : check
}
