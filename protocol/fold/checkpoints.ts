/**
 * Checkpoints (SPEC.md §11.2) and anchoring (§11.3). Checkpoints with identical content form a
 * group; whether that content holds (its labels, its head state) is settled once, when the
 * first of them arrives, and each later one only adds its signer. A group counts when t
 * stewards of its head state signed it; the newest counted one anchors what it covers.
 */
import type { CID } from 'multiformats/cid'
import { cidKey, compareCids } from '../cid.js'
import type { Did } from '../did.js'
import { applyAction, eligibleWeight, type GovState, hasRole, ruleFor } from '../govstate.js'
import type { Verified } from '../record.js'
import type { Rules } from '../types.js'
import { isGovernance } from './chain.js'
import type { ValidEvaluation } from './evaluation.js'
import { agreement } from './finality.js'
import { type Awaits, type FoldReader, NOTHING_AWAITED } from './reader.js'
import { APPLIED, type Inapplicable, inapplicable, pending } from './reports.js'
import type { Phase, RecordReport } from './types.js'

/** The phases a checkpoint may list for a decision. */
export const DECIDED_PHASES: ReadonlySet<string> = new Set([
  'final-passed',
  'final-rejected',
  'final-no-quorum',
  'superseded',
  'conflicted',
])

/** Checkpoints with identical `(head, height, epoch, stateRoot, finalized)`. */
export interface CheckpointGroup {
  readonly content: string
  readonly height: number
  readonly epoch: number
  readonly labels: ReadonlyMap<string, Phase>
  /** What every member is reported when the content itself does not hold (label, head, pending). */
  readonly failure?: RecordReport
  /** state(head), when the content holds. */
  readonly state?: GovState
  /** Stewards of state(head) who signed this content. */
  readonly signers: Set<Did>
  /** Of their checkpoints, the one with the smallest CID (set once there is a signer). */
  smallest?: Verified<'checkpoint'>
}

/** The newest counted checkpoint. */
export interface Anchor {
  /** The content key of its group. */
  readonly content: string
  /** Of the identical checkpoints signed by stewards of state(head), the one with the smallest CID. */
  readonly checkpoint: Verified<'checkpoint'>
  readonly signers: readonly Did[]
  readonly epoch: number
  readonly height: number
  readonly labels: ReadonlyMap<string, Phase>
  /** Rules of the checkpoint's head state. */
  readonly rules: Rules
}

/** The head state of a checkpoint's head under its labels (`'pending'` while its chain is incomplete). */
export type HeadStateOf = (head: CID, labels: ReadonlyMap<string, Phase>) => GovState | 'pending' | undefined

export function checkpointContent(checkpoint: Verified<'checkpoint'>): string {
  const body = checkpoint.record.body
  return [
    cidKey(body.head),
    body.height,
    body.epoch,
    cidKey(body.stateRoot),
    cidKey(body.finalized.root),
    body.finalized.count,
  ].join('|')
}

/** A new group, and the records its verdict waits for besides those `headStateOf` files itself. */
export interface OpenedGroup {
  readonly group: CheckpointGroup
  readonly awaits: Awaits
}

/**
 * A group for a content not seen before: its labels and head state, from its first checkpoint.
 * The checks run in this order, the first that fails decides: labels (checkpoint-label), head
 * (pending, then checkpoint-head), epoch (checkpoint-epoch, which needs the head state's rules).
 */
export function openGroup(
  content: string,
  first: Verified<'checkpoint'>,
  headStateOf: HeadStateOf,
  reader: FoldReader,
): OpenedGroup {
  const body = first.record.body
  const list = first.finalized!
  const labels = new Map(list.map(([cid, label]) => [cidKey(cid), label as Phase]))
  const group = { content, height: body.height, epoch: body.epoch, labels, signers: new Set<Did>() }
  const failing = (failure: RecordReport) => ({ group: { ...group, failure }, awaits: NOTHING_AWAITED })
  if (list.some(([, label]) => !DECIDED_PHASES.has(label))) {
    return failing(
      inapplicable('checkpoint-label', 'the finalized list holds a label that is not a decided phase'),
    )
  }
  const state = headStateOf(body.head, labels)
  if (state === 'pending')
    return failing(pending('basis-unknown', 'the checkpoint head or its chain is not known yet'))
  if (!state || state.height !== body.height) {
    return failing(
      inapplicable(
        'checkpoint-head',
        'the checkpoint head is not reached by a chain of sealed decisions its list names',
      ),
    )
  }
  const epoch = epochCheck(body.epoch, labels, state, reader)
  if (epoch.problem) return failing(epoch.problem)
  return { group: { ...group, state }, awaits: epoch.awaits }
}

/**
 * The epoch is a boundary of the head state's interval, and every known proposal the list names
 * closed by then (SPEC.md §11.2): an honest steward's checkpoint always is, so the rule costs
 * them nothing and keeps a checkpoint from vouching for decisions its epoch does not cover.
 * Listed CIDs not here yet are awaited: a proposal arriving under one could break the rule.
 */
function epochCheck(
  epoch: number,
  labels: ReadonlyMap<string, Phase>,
  state: GovState,
  reader: FoldReader,
): { readonly problem?: Inapplicable; readonly awaits: Awaits } {
  if (epoch % state.rules.checkpointIntervalMs !== 0) {
    const problem = inapplicable(
      'checkpoint-epoch',
      'the epoch is not a multiple of checkpointIntervalMs of the head state',
    )
    return { problem, awaits: NOTHING_AWAITED }
  }
  const awaits: string[] = []
  for (const key of labels.keys()) {
    const proposal = reader.indexes.proposalsByKey.get(key)
    if (proposal && proposal.record.body.closesAt > epoch) {
      const problem = inapplicable(
        'checkpoint-epoch',
        'the finalized list names a proposal that closes after the epoch',
      )
      return { problem, awaits: NOTHING_AWAITED }
    }
    if (!proposal && !reader.indexes.recordsByKey.has(key)) awaits.push(key)
  }
  return { awaits: awaits.length > 0 ? awaits : NOTHING_AWAITED }
}

/** A signature counts for its group when the content holds and the signer is a steward of state(head). */
export function signatureReport(group: CheckpointGroup, checkpoint: Verified<'checkpoint'>): RecordReport {
  if (group.failure) return group.failure
  return hasRole(group.state!, checkpoint.record.author, 'steward')
    ? APPLIED
    : inapplicable('checkpoint-not-steward', 'only stewards of state(head) sign checkpoints')
}

export type HeadPath =
  | { readonly start: GovState; readonly path: readonly Verified<'proposal'>[] }
  | { readonly awaits: string }
  | undefined

/**
 * The path from a checkpoint's head back to the genesis (or to an anchored fold's anchor, whose
 * state it starts from) through basis links, every step a governance proposal its list names
 * final-passed, oldest first; or the key of the first proposal on it not here yet; undefined
 * when the list does not vouch for such a path.
 */
export function headPath(head: CID, labels: ReadonlyMap<string, Phase>, reader: FoldReader): HeadPath {
  const path: Verified<'proposal'>[] = []
  const proposals = reader.indexes.proposalsByKey
  const start = reader.chainStart
  let key = cidKey(head)
  while (key !== reader.genesisKey && key !== start.key) {
    const proposal = proposals.get(key)
    if (!proposal) return { awaits: key }
    if (!isGovernance(proposal) || labels.get(key) !== 'final-passed' || path.length > proposals.size)
      return undefined
    path.push(proposal)
    key = cidKey(proposal.record.body.basis)
  }
  return { start: key === start.key ? start.state : reader.genesisState, path: path.reverse() }
}

/**
 * Forward from `start` along `path`, every step checked against the state the previous step
 * left: a voter proposed it after its basis closed (not checked for the first step after an
 * anchor, whose record is not read), with at least votingPeriodMs, its action leaves a
 * well-formed state, and its own seals by t stewards of that state agree on passed.
 * The seals make the chain; the list only picks which sealed chain the checkpoint vouches for,
 * so a checkpoint cannot make its own signers stewards.
 */
export function replayChain(
  start: GovState,
  path: readonly Verified<'proposal'>[],
  reader: FoldReader,
): { readonly state: GovState | undefined; readonly awaits: Awaits } {
  const awaits: string[] = []
  let state = start
  let previousClose = Number.NEGATIVE_INFINITY
  for (const proposal of path) {
    const { at, author } = proposal.record
    const body = proposal.record.body
    if (
      previousClose >= at ||
      !hasRole(state, author, 'voter') ||
      body.closesAt - at < state.rules.votingPeriodMs
    )
      return { state: undefined, awaits }
    const next = applyAction(state, body.action)
    if (!next.ok) return { state: undefined, awaits }
    const evaluation: ValidEvaluation = {
      validity: 'valid',
      electorate: state,
      eligible: eligibleWeight(state),
      rule: ruleFor(state.rules, body.action.type),
      stateAfter: next.state,
    }
    const seals = reader.indexes.sealsByProposal.get(proposal.key) ?? []
    const sealed = agreement(proposal, evaluation, seals, reader)
    for (const key of sealed.awaits) awaits.push(key)
    if (!sealed.final || sealed.conflicted || sealed.outcome !== 'passed') return { state: undefined, awaits }
    state = next.state
    previousClose = body.closesAt
  }
  return { state, awaits }
}

export function groupCounts(group: CheckpointGroup): boolean {
  return group.state !== undefined && group.signers.size >= group.state.rules.sealThreshold
}

/** Newer by (height, epoch), then the smaller CID. */
export function newer(group: CheckpointGroup, than: { height: number; epoch: number; cid: CID }): boolean {
  if (group.height !== than.height) return group.height > than.height
  if (group.epoch !== than.epoch) return group.epoch > than.epoch
  return compareCids(group.smallest!.cid, than.cid) < 0
}

export function anchorOf(group: CheckpointGroup): Anchor {
  return {
    content: group.content,
    checkpoint: group.smallest!,
    signers: [...group.signers].sort(),
    epoch: group.epoch,
    height: group.height,
    labels: group.labels,
    rules: group.state!.rules,
  }
}

/**
 * What a group that just gained a member does to the newest counted checkpoint: nothing, a new
 * signer (or a smaller CID) of that same checkpoint, or a newer counted checkpoint.
 */
export function anchorChange(
  group: CheckpointGroup,
  anchor: Anchor | undefined,
): 'none' | 'new-signer' | 'newer' {
  if (!groupCounts(group)) return 'none'
  if (anchor?.content === group.content) {
    const changed = group.smallest !== anchor.checkpoint || group.signers.size !== anchor.signers.length
    return changed ? 'new-signer' : 'none'
  }
  return !anchor || newer(group, { ...anchor, cid: anchor.checkpoint.cid }) ? 'newer' : 'none'
}

/** Of the groups that count, the newest. */
export function newestCounted(groups: Iterable<CheckpointGroup>): Anchor | undefined {
  let newest: CheckpointGroup | undefined
  for (const group of groups) {
    if (groupCounts(group) && (!newest || newer(group, { ...newest, cid: newest.smallest!.cid })))
      newest = group
  }
  return newest && anchorOf(newest)
}
