/**
 * What an honest steward seals (SPEC.md §8.4, §8.5): per voter the latest valid vote, and for a
 * ratify proposal per auditor and kind the latest attestation signed by closesAt, each list
 * sorted by CID. `admit` narrows them to what the steward received before its cut-off.
 */
import type { CID } from 'multiformats/cid'
import { cidKey, compareCids } from '../cid.js'
import type { Did } from '../did.js'
import { hasRole } from '../govstate.js'
import type { AnyVerified, Verified } from '../record.js'
import type { FoldReader } from './reader.js'
import { later } from './votes.js'

export function sortedCids(records: Iterable<{ readonly cid: CID }>): CID[] {
  return [...records].map((r) => r.cid).sort(compareCids)
}

/** Without `admit`, the votes of the live tally; with it, per voter the latest applied vote it admits. */
export function countedVotes(
  proposalCid: CID,
  reader: FoldReader,
  admit?: (vote: AnyVerified) => boolean,
): CID[] {
  const proposalKey = cidKey(proposalCid)
  if (!admit) {
    const live = reader.liveVotesOf(proposalKey)
    return live ? sortedCids(live) : []
  }
  const latest = new Map<Did, Verified<'vote'>>()
  for (const vote of reader.indexes.votesByProposal.get(proposalKey) ?? []) {
    if (reader.reportOf(vote.key)?.status !== 'applied' || !admit(vote)) continue
    const previous = latest.get(vote.record.author)
    if (!previous || later(vote, previous)) latest.set(vote.record.author, vote)
  }
  return sortedCids(latest.values())
}

export function countedAttestations(
  proposalCid: CID,
  reader: FoldReader,
  admit?: (attestation: AnyVerified) => boolean,
): CID[] {
  const proposal = reader.indexes.proposalsByKey.get(cidKey(proposalCid))
  if (proposal?.record.body.action.type !== 'ratify-model') return []
  const evaluation = reader.evaluationOf(proposal)
  if (evaluation.validity !== 'valid') return []
  const { closesAt, action } = proposal.record.body
  const latest = new Map<string, Verified<'attestation'>>()
  for (const attestation of reader.indexes.attestationsBySubject.get(cidKey(action.manifest)) ?? []) {
    const auditor = attestation.record.author
    if (attestation.record.at > closesAt || !hasRole(evaluation.electorate, auditor, 'auditor')) continue
    if (admit && !admit(attestation)) continue
    const slot = `${auditor}|${attestation.record.body.kind}`
    const previous = latest.get(slot)
    if (!previous || later(attestation, previous)) latest.set(slot, attestation)
  }
  return sortedCids(latest.values())
}
