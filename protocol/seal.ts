/**
 * What an honest steward seals for a proposal (SPEC.md §9): the votes and
 * attestations it counts as canonical CID lists, the tally and the outcome
 * they imply under the proposal's electorate and rules. Pure: the caller
 * chooses which votes and attestations take part (those it received in
 * time) and, for a ratification, whether the weights were verified; signing
 * and publishing are the node's business.
 */
import type { CID } from 'multiformats/cid'
import { type BuiltList, buildList } from './cidlist.js'
import type { Fold } from './fold/index.js'
import { eligibleWeight, ruleFor } from './govstate.js'
import { outcomeOf } from './tally.js'
import type { SealBody, Tally } from './types.js'

export interface SealContent {
  readonly body: SealBody
  /** The list blocks the body names (votes and attestations); they travel with the seal. */
  readonly blocks: BuiltList['blocks']
  readonly lists: { readonly votes: readonly CID[]; readonly attestations: readonly CID[] }
}

/**
 * The seal for `proposal` over `votes` and `attestations` (CIDs held in `fold`), or undefined
 * when the proposal is not valid (pending or void: nothing to seal).
 */
export function sealContent(
  fold: Fold,
  proposal: CID,
  options: { votes: readonly CID[]; attestations: readonly CID[]; weightsVerified?: boolean },
): SealContent | undefined {
  const p = fold.get(proposal)
  const electorate = fold.electorate(proposal)
  if (p?.record.kind !== 'proposal' || !electorate) return undefined
  const action = p.record.body.action
  const ratify = action.type === 'ratify-model'
  const tally: { -readonly [K in keyof Tally]: number } = { yes: 0, no: 0, abstain: 0 }
  for (const c of options.votes) {
    const v = fold.get(c)
    if (v?.record.kind !== 'vote') continue
    tally[v.record.body.choice] += electorate.members.get(v.record.author)?.weight ?? 0
  }
  const passes = new Map<string, number>()
  for (const c of options.attestations) {
    const a = fold.get(c)
    if (a?.record.kind === 'attestation' && a.record.body.result === 'pass')
      passes.set(a.record.body.kind, (passes.get(a.record.body.kind) ?? 0) + 1)
  }
  const outcome = outcomeOf(
    tally,
    eligibleWeight(electorate),
    ruleFor(electorate.rules, action.type),
    ratify ? passes : undefined,
  )
  const votes = buildList(options.votes)
  const attestations = buildList(options.attestations)
  return {
    body: {
      proposal,
      votes: { root: votes.root, count: votes.count },
      attestations: { root: attestations.root, count: attestations.count },
      tally,
      outcome,
      ...(ratify ? { weightsVerified: options.weightsVerified === true } : {}),
    },
    blocks: [...votes.blocks, ...attestations.blocks],
    lists: { votes: [...options.votes], attestations: [...options.attestations] },
  }
}
