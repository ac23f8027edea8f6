/**
 * Views of a proposal (SPEC.md §8.5's phase table, §11.3's confirmation), of the newest counted
 * checkpoint, and a proposal's display status at a time (§8.6).
 */
import type { Verified } from '../record.js'
import { EMPTY_TALLY } from '../tally.js'
import { isChainDecision, isGovernance } from './chain.js'
import type { Anchor } from './checkpoints.js'
import type { Finality } from './finality.js'
import type { FoldReader } from './reader.js'
import type { CheckpointView, Phase, ProposalStatus, ProposalView } from './types.js'

export function proposalView(proposal: Verified<'proposal'>, reader: FoldReader): ProposalView {
  const body = proposal.record.body
  const base = {
    cid: proposal.cid,
    author: proposal.record.author,
    at: proposal.record.at,
    closesAt: body.closesAt,
    basis: body.basis,
    action: body.action,
    title: body.title,
    governance: isGovernance(proposal),
  }
  const evaluation = reader.evaluationOf(proposal)
  if (evaluation.validity !== 'valid') {
    return Object.freeze({
      ...base,
      phase: evaluation.validity,
      reason: { code: evaluation.code, message: evaluation.message },
      tally: EMPTY_TALLY,
      eligible: 0,
      equivocators: [],
      confirmed: false,
    })
  }
  const finality = reader.finalityOf(proposal)
  const liveTally = reader.liveTallyOf(proposal.key)
  const common = {
    ...base,
    eligible: evaluation.eligible,
    equivocators: finality.equivocators,
    rules: evaluation.electorate.rules,
  }
  const decidedBy = finality.decidedBy
  const sealed = decidedBy && sealedPhase(proposal, decidedBy, reader)
  const confirmed = finality.anchored !== undefined
  const phase = phaseOf(finality, sealed)
  if (!decidedBy || sealed !== phase) return Object.freeze({ ...common, phase, confirmed, tally: liveTally })
  const sealBody = decidedBy.record.body
  return Object.freeze({
    ...common,
    phase,
    confirmed,
    tally: sealBody.tally,
    outcome: sealBody.outcome,
    ...(sealBody.weightsVerified !== undefined ? { weightsVerified: sealBody.weightsVerified } : {}),
    decidedBy: decidedBy.cid,
  })
}

/** What the agreeing seals alone decide (SPEC.md §8.5's table), from the agreeing seal with the smallest CID. */
function sealedPhase(proposal: Verified<'proposal'>, decidedBy: Verified<'seal'>, reader: FoldReader): Phase {
  const { outcome, weightsVerified } = decidedBy.record.body
  if (outcome === 'no-quorum') return 'final-no-quorum'
  if (outcome === 'rejected') return 'final-rejected'
  if (proposal.record.body.action.type === 'ratify-model' && weightsVerified !== true) return 'final-rejected'
  if (isGovernance(proposal) && !isChainDecision(proposal, reader)) return 'superseded'
  return 'final-passed'
}

/** The checkpoint's listed phase when it covers the proposal, else what the seals decide. */
function phaseOf(finality: Finality, sealed: Phase | undefined): Phase {
  if (finality.anchored !== undefined) return finality.anchored ?? 'undecided'
  if (!finality.final) return 'undecided'
  if (finality.conflicted) return 'conflicted'
  return sealed!
}

export function checkpointView(anchor: Anchor): CheckpointView {
  const body = anchor.checkpoint.record.body
  return Object.freeze({
    cid: anchor.checkpoint.cid,
    epoch: body.epoch,
    height: body.height,
    head: body.head,
    stateRoot: body.stateRoot,
    signers: anchor.signers,
    rules: anchor.rules,
  })
}

/** A proposal's status at time `now` (display only; the phase itself never depends on a clock). */
export function proposalStatus(p: ProposalView, now: number): ProposalStatus {
  if (p.phase !== 'undecided') return p.phase
  if (now <= p.closesAt) return 'open'
  if (now <= p.closesAt + (p.rules?.sealDeadlineMs ?? 0)) return 'closed-awaiting-seals'
  return 'expired'
}
