/**
 * The governance states of the chain as a node knows them, for the node's policies that ask
 * "has this member held a role in any state?" (who may upload weights, whose seals may name list
 * blocks): the head state, and every earlier chain state as the electorate of the governance
 * proposal based on it (each chain state but the head is the basis of its successor). Proposals
 * that are not chain decisions have the electorate of a chain state too, so nothing outside the
 * chain is ever visited.
 */
import type { CID } from 'multiformats/cid'
import { type Did, type Fold, type GovState, hasRole, type Role } from '../protocol/index.js'

export type ChainView = Pick<Fold, 'headState' | 'electorate'>

/** The head state, then the electorate of each of `governance` (governance proposals' CIDs). */
export function* chainStates(fold: ChainView, governance: Iterable<CID>): Iterable<GovState> {
  yield fold.headState()
  for (const p of governance) {
    const electorate = fold.electorate(p)
    if (electorate) yield electorate
  }
}

/** The governance proposals a fold holds. */
export function* governanceProposals(fold: Pick<Fold, 'state'>): Iterable<CID> {
  for (const p of fold.state().proposals.values()) if (p.governance) yield p.cid
}

/** Whether `did` holds `role` in some state of the chain. */
export function heldRoleEver(fold: ChainView, governance: Iterable<CID>, did: Did, role: Role): boolean {
  for (const state of chainStates(fold, governance)) if (hasRole(state, did, role)) return true
  return false
}
