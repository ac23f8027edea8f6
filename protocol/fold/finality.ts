/**
 * Finality (SPEC.md §8.5): the valid seals of a proposal grouped by (outcome, weightsVerified),
 * final when t distinct stewards fall into one group, conflicted when two groups reach t, and
 * its equivocators. The newest counted checkpoint overrides the seals for every proposal it
 * covers (§11.3).
 */
import { cidKey, compareCids } from '../cid.js'
import type { Did } from '../did.js'
import type { Verified } from '../record.js'
import type { Outcome } from '../types.js'
import type { Anchor } from './checkpoints.js'
import type { PendingEvaluation, ValidEvaluation, VoidEvaluation } from './evaluation.js'
import { type Awaits, type FoldReader, NOTHING_AWAITED } from './reader.js'
import { inapplicable, pending } from './reports.js'
import { checkSeal } from './seals.js'
import type { Phase, RecordReport } from './types.js'

export interface SealVerdict {
  readonly seal: Verified<'seal'>
  readonly report: RecordReport
}

export interface Finality {
  readonly final: boolean
  readonly conflicted: boolean
  /**
   * Set when the newest counted checkpoint covers the proposal (closesAt ≤ its
   * epoch): the phase it lists, or null when it lists none. It overrides the seals.
   */
  readonly anchored?: Phase | null
  readonly outcome?: Outcome
  readonly weightsVerified?: boolean
  /** The agreeing seal with the smallest CID. */
  readonly decidedBy?: Verified<'seal'>
  readonly equivocators: readonly Did[]
  /** The report of each of the proposal's seals. */
  readonly verdicts: readonly SealVerdict[]
  /** Records the seals name that are not here yet. */
  readonly awaits: Awaits
}

/** Seals that agree: the distinct stewards among them and the one with the smallest CID. */
interface SealGroup {
  readonly stewards: Set<Did>
  smallest: Verified<'seal'>
}

export function decideFinality(proposal: Verified<'proposal'>, reader: FoldReader): Finality {
  const evaluation = reader.evaluationOf(proposal)
  const seals = reader.indexes.sealsByProposal.get(proposal.key) ?? []
  const sealed =
    evaluation.validity === 'valid'
      ? agreement(proposal, evaluation, seals, reader)
      : unsealable(evaluation, seals)
  return anchored(proposal, sealed, reader.anchor)
}

/** A pending or void proposal is final by no seal; each seal is reported for the proposal's sake. */
function unsealable(
  evaluation: PendingEvaluation | VoidEvaluation,
  seals: readonly Verified<'seal'>[],
): Finality {
  const report =
    evaluation.validity === 'pending'
      ? pending('proposal-pending', 'the sealed proposal is pending')
      : inapplicable('proposal-void', 'the sealed proposal is void')
  return {
    final: false,
    conflicted: false,
    equivocators: [],
    verdicts: seals.map((seal) => ({ seal, report })),
    awaits: NOTHING_AWAITED,
  }
}

/** The newest counted checkpoint decides a proposal it covers: the phase it lists, or undecided. */
function anchored(proposal: Verified<'proposal'>, sealed: Finality, anchor: Anchor | undefined): Finality {
  if (!anchor || proposal.record.body.closesAt > anchor.epoch) return sealed
  const label = anchor.labels.get(proposal.key) ?? null
  return { ...sealed, final: label !== null, conflicted: label === 'conflicted', anchored: label }
}

/** Finality by agreeing seals alone (also used to replay a checkpoint's head chain). */
export function agreement(
  proposal: Verified<'proposal'>,
  evaluation: ValidEvaluation,
  seals: readonly Verified<'seal'>[],
  reader: FoldReader,
): Finality {
  const verdicts: SealVerdict[] = []
  const awaits: string[] = []
  const groups = new Map<string, SealGroup>()
  const contentsBySteward = new Map<Did, Set<string>>()
  for (const seal of seals) {
    const check = checkSeal(proposal, evaluation, seal, reader)
    verdicts.push({ seal, report: check.report })
    for (const key of check.awaits) awaits.push(key)
    if (check.report.status !== 'applied') continue
    const group = joinGroup(groups, seal)
    const content = `${cidKey(seal.record.body.votes.root)}|${cidKey(seal.record.body.attestations.root)}|${tallyText(seal)}|${group}`
    const contents = contentsBySteward.get(seal.record.author)
    if (contents) contents.add(content)
    else contentsBySteward.set(seal.record.author, new Set([content]))
  }
  const equivocators = [...contentsBySteward]
    .filter(([, contents]) => contents.size > 1)
    .map(([steward]) => steward)
    .sort()
  const threshold = evaluation.electorate.rules.sealThreshold
  const reached = [...groups.values()].filter((group) => group.stewards.size >= threshold)
  const common = { equivocators, verdicts, awaits: awaits.length > 0 ? awaits : NOTHING_AWAITED }
  if (reached.length === 0) return { final: false, conflicted: false, ...common }
  if (reached.length > 1) return { final: true, conflicted: true, ...common }
  const decidedBy = reached[0]!.smallest
  return {
    final: true,
    conflicted: false,
    outcome: decidedBy.record.body.outcome,
    weightsVerified: decidedBy.record.body.weightsVerified,
    decidedBy,
    ...common,
  }
}

function tallyText(seal: Verified<'seal'>): string {
  const { yes, no, abstain } = seal.record.body.tally
  return `${yes},${no},${abstain}`
}

/** Files a valid seal in the group of its (outcome, weightsVerified); returns the group's key. */
function joinGroup(groups: Map<string, SealGroup>, seal: Verified<'seal'>): string {
  const body = seal.record.body
  const key = `${body.outcome}|${body.weightsVerified ?? '-'}`
  const group = groups.get(key)
  if (!group) groups.set(key, { stewards: new Set([seal.record.author]), smallest: seal })
  else {
    group.stewards.add(seal.record.author)
    if (compareCids(seal.cid, group.smallest.cid) < 0) group.smallest = seal
  }
  return key
}
