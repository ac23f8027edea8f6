/**
 * Which well-formed records a node takes from the network (SPEC.md §10, ingest limits): not a
 * duplicate, by an author who is a member in some known state, and within the ingest limits
 * (votes per voter and proposal, open proposals per author). Node rules, not fold rules: the fold
 * stays a function of the record set, and a record ignored here may still arrive and count
 * elsewhere. Pure: `now` is a parameter; the tallies are kept by the caller as it holds records.
 */
import { cidKey } from './cid.js'
import type { Did } from './did.js'
import type { Fold } from './index.js'
import type { AnyVerified } from './record.js'

/** At most this many votes per voter and proposal are taken from the network (SPEC.md §10). */
export const MAX_VOTES_PER_VOTER_AND_PROPOSAL = 10

/** Why a record is not taken. The record is ignored, never rejected: its bytes are fine. */
export type AdmissionCode = 'duplicate' | 'unknown-author' | 'ingest-limit'

export type Admission =
  | { readonly admitted: true }
  | { readonly admitted: false; readonly code: AdmissionCode; readonly message: string }

/** What the limits count, over the records held (whatever the fold made of them). */
export interface HeldTally {
  /** Votes held by `voter` on the proposal whose key (`cidKey`) is `proposal`. */
  votesBy(proposal: string, voter: Did): number
  /** Proposals held by `author` whose `closesAt` is after `now`. */
  openProposalsBy(author: Did, now: number): number
}

/** A tally that is told of each record as it is held. */
export interface AdmissionTally extends HeldTally {
  add(record: AnyVerified): void
}

/** What admission reads: the fold (duplicates, members, the head's rules) and the tally. */
export interface AdmissionState {
  readonly fold: Pick<Fold, 'has' | 'knownMember' | 'headState'>
  readonly tally: HeldTally
}

const ADMITTED: Admission = Object.freeze({ admitted: true })

function ignored(code: AdmissionCode, message: string): Admission {
  return { admitted: false, code, message }
}

/** Whether a record whose bytes passed every check is taken, seen at `now`. */
export function admit(record: AnyVerified, state: AdmissionState, now: number): Admission {
  const r = record.record
  // The genesis is the federation's id: held from the start, never taken again.
  if (state.fold.has(record.key) || r.kind === 'genesis')
    return ignored('duplicate', 'this record is already held')
  if (!state.fold.knownMember(r.author))
    return ignored('unknown-author', 'the author is a member in no known state')
  if (r.kind === 'vote') return admitVote(cidKey(r.body.proposal), r.author, state)
  if (r.kind === 'proposal') return admitProposal(r.body.closesAt, r.author, state, now)
  return ADMITTED
}

/** A voter's votes on one proposal, up to the cap. */
function admitVote(proposal: string, voter: Did, state: AdmissionState): Admission {
  if (state.tally.votesBy(proposal, voter) < MAX_VOTES_PER_VOTER_AND_PROPOSAL) return ADMITTED
  return ignored(
    'ingest-limit',
    `at most ${MAX_VOTES_PER_VOTER_AND_PROPOSAL} votes per voter and proposal are taken`,
  )
}

/** An open proposal, while its author has fewer open than the head's rules allow; a closed one always. */
function admitProposal(closesAt: number, author: Did, state: AdmissionState, now: number): Admission {
  if (closesAt <= now) return ADMITTED
  const max = state.fold.headState().rules.maxOpenProposalsPerAuthor
  if (state.tally.openProposalsBy(author, now) < max) return ADMITTED
  return ignored('ingest-limit', `at most ${max} open proposals per author are taken`)
}

/**
 * The tallies for `admit`, by proposal key and voter, and by author. Nested maps, so that the
 * keys are the strings held anyway rather than one new string per pair.
 */
export function createAdmissionTally(): AdmissionTally {
  const votes = new Map<string, Map<Did, number>>()
  const closings = new Map<Did, number[]>()
  return {
    add(record) {
      const r = record.record
      if (r.kind === 'vote') {
        const proposal = cidKey(r.body.proposal)
        let byVoter = votes.get(proposal)
        if (!byVoter) votes.set(proposal, (byVoter = new Map()))
        byVoter.set(r.author, (byVoter.get(r.author) ?? 0) + 1)
      } else if (r.kind === 'proposal') {
        const list = closings.get(r.author)
        if (list) list.push(r.body.closesAt)
        else closings.set(r.author, [r.body.closesAt])
      }
    },
    votesBy: (proposal, voter) => votes.get(proposal)?.get(voter) ?? 0,
    openProposalsBy(author, now) {
      let open = 0
      for (const closesAt of closings.get(author) ?? []) if (closesAt > now) open++
      return open
    },
  }
}
