/**
 * The fold's answers to questions about its records (the `Fold` interface): each derives what is
 * stale first, then only reads. Everything they read is written by the accumulator.
 */
import type { CID } from 'multiformats/cid'
import { cidKey } from '../cid.js'
import type { Did } from '../did.js'
import type { GovState } from '../govstate.js'
import type { AnyVerified } from '../record.js'
import { Accumulator } from './accumulator.js'
import { headOf } from './chain.js'
import { countedAttestations, countedVotes } from './counted.js'
import { APPLIED } from './reports.js'
import type { Fold, RecordReport } from './types.js'

export class FoldImpl extends Accumulator implements Fold {
  has(cid: CID | string): boolean {
    return this.indexes.recordsByKey.has(typeof cid === 'string' ? cid : cidKey(cid))
  }

  get(cid: CID): AnyVerified | undefined {
    return this.indexes.recordsByKey.get(cidKey(cid))
  }

  records(): IterableIterator<AnyVerified> {
    return this.indexes.recordsByKey.values()
  }

  knownMember(did: Did): boolean {
    this.derive()
    return this.genesisState.members.has(did) || this.chainMembers().has(did)
  }

  report(cid: CID | string): RecordReport | undefined {
    const key = typeof cid === 'string' ? cid : cidKey(cid)
    if (key === this.genesis.key) return APPLIED
    if (!this.indexes.recordsByKey.has(key)) return undefined
    this.derive()
    return this.reportOf(key)
  }

  electorate(proposal: CID): GovState | undefined {
    this.derive()
    const found = this.indexes.proposalsByKey.get(cidKey(proposal))
    if (!found) return undefined
    const evaluation = this.evaluationOf(found)
    return evaluation.validity === 'valid' ? evaluation.electorate : undefined
  }

  countedVotes(proposal: CID, admit?: (vote: AnyVerified) => boolean): CID[] {
    this.derive()
    return countedVotes(proposal, this, admit)
  }

  countedAttestations(proposal: CID, admit?: (attestation: AnyVerified) => boolean): CID[] {
    this.derive()
    return countedAttestations(proposal, this, admit)
  }

  headState(): GovState {
    this.derive()
    return headOf(this).state
  }
}
