/**
 * Votes and tallies (SPEC.md §8.4): when a vote is valid for its proposal, and which vote of a
 * voter counts (the latest by (at, CID)).
 */
import { cidKey } from '../cid.js'
import type { Did } from '../did.js'
import { hasRole } from '../govstate.js'
import type { Verified } from '../record.js'
import type { Tally } from '../types.js'
import type { ValidEvaluation } from './evaluation.js'
import type { FoldReader } from './reader.js'
import { APPLIED, type Inapplicable, inapplicable, pending } from './reports.js'
import type { RecordReport } from './types.js'
import { BELOW_MINIMUM, isBelowMinimum } from './versions.js'

/** Per voter the latest valid vote on one proposal, and the weights they sum to. */
export interface LiveTally {
  readonly latestByVoter: Map<Did, Verified<'vote'>>
  tally: Tally
}

/** Later by (at, CID); keys compare as CIDs do (same length, one char per byte). */
export function later(
  a: { record: { at: number }; key: string },
  b: { record: { at: number }; key: string },
): boolean {
  return a.record.at !== b.record.at ? a.record.at > b.record.at : a.key > b.key
}

/** Why a vote on a valid proposal is not valid for it: not a voter of the electorate, or outside the window. */
export function voteProblem(
  vote: Verified<'vote'>,
  proposal: Verified<'proposal'>,
  evaluation: ValidEvaluation,
): Inapplicable | undefined {
  if (isBelowMinimum(vote, evaluation.electorate)) return BELOW_MINIMUM
  if (!hasRole(evaluation.electorate, vote.record.author, 'voter'))
    return inapplicable('vote-not-eligible', 'the author is not a voter of the electorate')
  if (vote.record.at < proposal.record.at || vote.record.at > proposal.record.body.closesAt) {
    return inapplicable('vote-window', 'the vote is signed outside [proposal at, closesAt]')
  }
  return undefined
}

/** Pending on an unknown or pending proposal, inapplicable on a void one, else as `voteProblem` says. */
export function voteReport(vote: Verified<'vote'>, reader: FoldReader): RecordReport {
  const proposal = reader.indexes.proposalsByKey.get(cidKey(vote.record.body.proposal))
  if (!proposal) return pending('proposal-unknown', 'the proposal is not known yet')
  const evaluation = reader.evaluationOf(proposal)
  if (evaluation.validity === 'pending') return pending('proposal-pending', 'the proposal is pending')
  if (evaluation.validity === 'void') return inapplicable('proposal-void', 'the proposal is void')
  return voteProblem(vote, proposal, evaluation) ?? APPLIED
}
