/**
 * Evaluation of a proposal (SPEC.md §8.3): its basis gives the electorate, then the stale-basis,
 * author, period and action checks run in the spec's order; the first that applies decides.
 */
import type { CID } from 'multiformats/cid'
import { cidKey } from '../cid.js'
import type { InapplicableCode, PendingCode } from '../codes.js'
import { applyAction, eligibleWeight, type GovState, hasRole, ruleFor } from '../govstate.js'
import type { Verified } from '../record.js'
import type { Action, ActionRule } from '../types.js'
import { earlierClose, finalPassed, isChainDecision, isGovernance } from './chain.js'
import { manifestApplicable } from './manifests.js'
import type { FoldReader } from './reader.js'
import { isBelowMinimum, PROPOSAL_BELOW_MINIMUM } from './versions.js'

export interface ValidEvaluation {
  readonly validity: 'valid'
  /** state(basis): who votes and seals, under which rules. */
  readonly electorate: GovState
  /** Total voter weight of the electorate. */
  readonly eligible: number
  readonly rule: ActionRule
  /** state(P) for a governance proposal. */
  readonly stateAfter?: GovState
}

export interface PendingEvaluation {
  readonly validity: 'pending'
  readonly code: PendingCode
  readonly message: string
  /** The key of the basis that is not here yet (`basis-unknown`). */
  readonly awaitsRecord?: string
  /** The key of the manifest that is not here yet (`manifest-unknown`). */
  readonly awaitsManifest?: string
}

export interface VoidEvaluation {
  readonly validity: 'void'
  readonly code: InapplicableCode
  readonly message: string
}

export type Evaluation = ValidEvaluation | PendingEvaluation | VoidEvaluation

/** What a proposal's basis sees of the proposal while the proposal itself is being evaluated. */
export const BASIS_CYCLE: VoidEvaluation = Object.freeze({
  validity: 'void',
  code: 'basis-not-chain',
  message: 'the basis depends on this proposal',
})

function voidBecause(code: InapplicableCode, message: string): VoidEvaluation {
  return { validity: 'void', code, message }
}

function pendingBecause(code: PendingCode, message: string): PendingEvaluation {
  return { validity: 'pending', code, message }
}

export function evaluateProposal(proposal: Verified<'proposal'>, reader: FoldReader): Evaluation {
  const electorate = electorateFromBasis(proposal, reader)
  if ('validity' in electorate) return electorate
  if (isBelowMinimum(proposal, electorate)) return PROPOSAL_BELOW_MINIMUM
  return (
    staleBasis(proposal, electorate, reader) ??
    authorCheck(proposal, electorate) ??
    periodCheck(proposal, electorate) ??
    actionCheck(proposal, electorate, reader)
  )
}

/**
 * Step 1: the basis is the federation id or a chain decision closed before the proposal; its
 * state is the electorate. An anchored fold takes its trusted head as a chain decision whose
 * state it was given: that head's record is not read, so nothing of it (its close) is checked.
 */
function electorateFromBasis(
  proposal: Verified<'proposal'>,
  reader: FoldReader,
): GovState | PendingEvaluation | VoidEvaluation {
  const basisKey = cidKey(proposal.record.body.basis)
  if (basisKey === reader.chainStart.key) return reader.chainStart.state
  if (basisKey === reader.genesisKey) return reader.genesisState
  const basis = reader.indexes.proposalsByKey.get(basisKey)
  if (!basis) {
    if (reader.indexes.recordsByKey.has(basisKey))
      return voidBecause('basis-not-governance', 'the basis is not a proposal')
    // Whatever record arrives under this CID changes the verdict, even a vote: derive again then.
    return { ...pendingBecause('basis-unknown', 'the basis is not known yet'), awaitsRecord: basisKey }
  }
  if (basis.record.body.closesAt >= proposal.record.at)
    return voidBecause('basis-not-closed', 'the basis closes after this proposal was made')
  if (!isGovernance(basis))
    return voidBecause('basis-not-governance', 'the basis is not a governance decision')
  const basisEvaluation = reader.evaluationOf(basis)
  if (basisEvaluation.validity === 'pending')
    return pendingBecause('basis-pending', 'the basis is waiting for its own basis')
  if (basisEvaluation.validity === 'void') return voidBecause('basis-not-chain', 'the basis is void')
  if (!reader.finalityOf(basis).final) return pendingBecause('basis-pending', 'the basis is not final yet')
  if (!isChainDecision(basis, reader))
    return voidBecause('basis-not-chain', 'the basis did not pass, or was superseded')
  return basisEvaluation.stateAfter!
}

/**
 * Step 2: void if the earliest final-passed governance decision on the same basis that closed
 * before the proposal was made closed more than sealDeadlineMs before it.
 */
function staleBasis(
  proposal: Verified<'proposal'>,
  electorate: GovState,
  reader: FoldReader,
): VoidEvaluation | undefined {
  const at = proposal.record.at
  let replacement: Verified<'proposal'> | undefined
  for (const other of reader.indexes.governanceByBasis.get(cidKey(proposal.record.body.basis)) ?? []) {
    const otherClose = other.record.body.closesAt
    if (other === proposal || !(other.record.at < otherClose && otherClose < at)) continue
    if (replacement && !earlierClose(other, replacement)) continue
    if (finalPassed(other, reader)) replacement = other
  }
  if (replacement && replacement.record.body.closesAt + electorate.rules.sealDeadlineMs < at) {
    return voidBecause(
      'basis-stale',
      'the basis was replaced by a decision that closed long before this proposal',
    )
  }
  return undefined
}

/** Step 3: the author is a voter of the electorate. */
function authorCheck(proposal: Verified<'proposal'>, electorate: GovState): VoidEvaluation | undefined {
  const author = proposal.record.author
  if (hasRole(electorate, author, 'voter')) return undefined
  return electorate.members.has(author)
    ? voidBecause('author-role', 'only voters of the electorate may propose')
    : voidBecause('author-not-member', 'the author is not a member of the electorate')
}

/** Step 4: the voting period is at least votingPeriodMs. */
function periodCheck(proposal: Verified<'proposal'>, electorate: GovState): VoidEvaluation | undefined {
  const { votingPeriodMs } = electorate.rules
  if (proposal.record.body.closesAt - proposal.record.at >= votingPeriodMs) return undefined
  return voidBecause('proposal-period', `the voting period is shorter than ${votingPeriodMs} ms`)
}

/** Step 5: a ratify or revoke names an applicable manifest; a governance action leaves a well-formed state. */
function actionCheck(proposal: Verified<'proposal'>, electorate: GovState, reader: FoldReader): Evaluation {
  const action = proposal.record.body.action
  const rule = ruleFor(electorate.rules, action.type)
  const eligible = eligibleWeight(electorate)
  const subject = subjectOf(action)
  if (subject) return subjectCheck(subject, reader) ?? { validity: 'valid', electorate, eligible, rule }
  const next = applyAction(electorate, action)
  if (!next.ok) return voidBecause(next.code, next.message)
  return { validity: 'valid', electorate, eligible, rule, stateAfter: next.state }
}

function subjectOf(action: Action): CID | undefined {
  return action.type === 'ratify-model' || action.type === 'revoke-model' ? action.manifest : undefined
}

function subjectCheck(subject: CID, reader: FoldReader): PendingEvaluation | VoidEvaluation | undefined {
  const subjectKey = cidKey(subject)
  const manifest = reader.indexes.manifestsByKey.get(subjectKey)
  if (!manifest) {
    if (reader.indexes.recordsByKey.has(subjectKey))
      return voidBecause('manifest-inapplicable', 'the subject is not a manifest')
    return {
      ...pendingBecause('manifest-unknown', 'the manifest is not known yet'),
      awaitsManifest: subjectKey,
    }
  }
  if (!manifestApplicable(manifest, reader))
    return voidBecause('manifest-inapplicable', 'the manifest was published by no publisher')
  return undefined
}
