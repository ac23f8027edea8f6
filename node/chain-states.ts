/**
 * The governance states of the chain as a node knows them, for the node's policies that ask
 * "has this member held a role in any state?" (who may upload weights, whose seals may name list
 * blocks): the head state, and every earlier chain state as the electorate of the governance
 * proposal based on it (each chain state but the head is the basis of its successor). Proposals
 * that are not chain decisions have the electorate of a chain state too, so nothing outside the
 * chain is ever visited.
 */
import type { CID } from 'multiformats/cid'
import { type Did, type Fold, type GovState, hasRole, type Role, stewardsOf } from '../protocol/index.js'

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

/**
 * The members with the steward role in some state of the chain, as a function that works them
 * out again only when the head state has changed since it last did (the fold makes a new object
 * for a new head): asked once per seal or checkpoint held, this keeps the walk off that path.
 */
export function stewardsEver(fold: ChainView, governance: Iterable<CID>): () => ReadonlySet<Did> {
  let stewards: ReadonlySet<Did> = new Set()
  let under: GovState | undefined
  return () => {
    const head = fold.headState()
    if (head === under) return stewards
    const found = new Set<Did>()
    for (const state of chainStates(fold, governance)) for (const id of stewardsOf(state)) found.add(id)
    under = head
    stewards = found
    return found
  }
}
