/**
 * The governance chain (SPEC.md §8.2): final-passed decisions, the successor of a basis, chain
 * decisions, the states of the chain and the head.
 */
import type { CID } from 'multiformats/cid'
import { cidKey, compareCids } from '../cid.js'
import type { Did } from '../did.js'
import type { GovState } from '../govstate.js'
import type { Verified } from '../record.js'
import { GOVERNANCE_ACTIONS, type Role } from '../types.js'
import type { ValidEvaluation } from './evaluation.js'
import type { FoldReader } from './reader.js'

export function isGovernance(proposal: Verified<'proposal'>): boolean {
  return GOVERNANCE_ACTIONS.has(proposal.record.body.action.type)
}

/** Earlier by (closesAt, CID). */
export function earlierClose(a: Verified<'proposal'>, b: Verified<'proposal'>): boolean {
  const x = a.record.body.closesAt
  const y = b.record.body.closesAt
  return x !== y ? x < y : compareCids(a.cid, b.cid) < 0
}

/**
 * Valid and final-passed (SPEC.md §8.5's table): by its agreeing seals, or by the phase the
 * newest counted checkpoint lists for it when it covers the proposal (§11.3; `superseded` is
 * a passed decision too).
 */
export function finalPassed(proposal: Verified<'proposal'>, reader: FoldReader): boolean {
  if (reader.evaluationOf(proposal).validity !== 'valid') return false
  const finality = reader.finalityOf(proposal)
  if (finality.anchored !== undefined)
    return finality.anchored === 'final-passed' || finality.anchored === 'superseded'
  return (
    finality.final &&
    !finality.conflicted &&
    finality.outcome === 'passed' &&
    (proposal.record.body.action.type !== 'ratify-model' || finality.weightsVerified === true)
  )
}

/** The successor among the governance proposals on one basis: the earliest (closesAt, CID) final-passed. */
export function earliestFinalPassed(
  onBasis: readonly Verified<'proposal'>[] | undefined,
  reader: FoldReader,
): Verified<'proposal'> | undefined {
  let earliest: Verified<'proposal'> | undefined
  for (const candidate of onBasis ?? []) {
    if ((!earliest || earlierClose(candidate, earliest)) && finalPassed(candidate, reader))
      earliest = candidate
  }
  return earliest
}

/** Valid, final-passed and the successor of its basis. */
export function isChainDecision(proposal: Verified<'proposal'>, reader: FoldReader): boolean {
  return (
    isGovernance(proposal) &&
    finalPassed(proposal, reader) &&
    reader.successorOf(cidKey(proposal.record.body.basis)) === proposal
  )
}

/** state(G) of a chain decision G (its evaluation is valid, with the state it leaves). */
export function stateAfter(decision: Verified<'proposal'>, reader: FoldReader): GovState {
  return (reader.evaluationOf(decision) as ValidEvaluation).stateAfter!
}

/**
 * The states of the chain: the genesis state, the anchor's state in an anchored fold, and
 * state(G) of every chain decision G. An anchored fold misses the states between the genesis and
 * its anchor (their decisions are not in its record set), so a role held only there counts for
 * nothing in it (docs/adr/0022).
 */
export function chainStates(reader: FoldReader): GovState[] {
  const states = [reader.genesisState]
  if (reader.chainStart.key !== reader.genesisKey) states.push(reader.chainStart.state)
  for (const onBasis of reader.indexes.governanceByBasis.values()) {
    for (const decision of onBasis) {
      if (isChainDecision(decision, reader)) states.push(stateAfter(decision, reader))
    }
  }
  return states
}

/** Members who hold `role` in one of `states`. */
export function holdersIn(states: readonly GovState[], role: Role): Set<Did> {
  const holders = new Set<Did>()
  for (const state of states)
    for (const member of state.members.values()) if (member.roles.includes(role)) holders.add(member.id)
  return holders
}

export interface Head {
  /** The last chain decision, or where the chain starts: the federation id or the anchor. */
  readonly cid: CID
  readonly state: GovState
}

/** The head: reached by following successors from the federation id (or the anchor). */
export function headOf(reader: FoldReader): Head {
  const start = reader.chainStart
  let key = start.key
  let head: Head = { cid: start.head, state: start.state }
  for (;;) {
    const next = reader.successorOf(key)
    if (!next) return head
    head = { cid: next.cid, state: stateAfter(next, reader) }
    key = next.key
  }
}
