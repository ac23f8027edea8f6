/**
 * The indexes of a fold's record set (SPEC.md §8): every rule reads the records through them.
 * Only the accumulator (accumulator.ts) files records here.
 */
import { cidKey } from '../cid.js'
import type { AnyVerified, Verified } from '../record.js'
import { isGovernance } from './chain.js'
import type { FoldIndexes } from './reader.js'

export function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key)
  if (list) list.push(value)
  else map.set(key, [value])
}

export class RecordIndexes implements FoldIndexes {
  readonly recordsByKey = new Map<string, AnyVerified>()
  readonly proposalsByKey = new Map<string, Verified<'proposal'>>()
  readonly votesByProposal = new Map<string, Verified<'vote'>[]>()
  readonly sealsByProposal = new Map<string, Verified<'seal'>[]>()
  readonly manifestsByKey = new Map<string, Verified<'manifest'>>()
  readonly attestationsBySubject = new Map<string, Verified<'attestation'>[]>()
  readonly governanceByBasis = new Map<string, Verified<'proposal'>[]>()
  readonly checkpointsByKey = new Map<string, Verified<'checkpoint'>>()

  constructor(genesis: Verified<'genesis'>) {
    this.recordsByKey.set(genesis.key, genesis)
  }

  /** Files a record not held before under its kind. */
  insert(record: AnyVerified): void {
    const key = record.key
    this.recordsByKey.set(key, record)
    switch (record.record.kind) {
      case 'proposal': {
        const proposal = record as Verified<'proposal'>
        this.proposalsByKey.set(key, proposal)
        if (isGovernance(proposal)) push(this.governanceByBasis, cidKey(proposal.record.body.basis), proposal)
        break
      }
      case 'vote':
        push(this.votesByProposal, cidKey(record.record.body.proposal), record as Verified<'vote'>)
        break
      case 'seal':
        push(this.sealsByProposal, cidKey(record.record.body.proposal), record as Verified<'seal'>)
        break
      case 'manifest':
        this.manifestsByKey.set(key, record as Verified<'manifest'>)
        break
      case 'attestation':
        push(
          this.attestationsBySubject,
          cidKey(record.record.body.subject),
          record as Verified<'attestation'>,
        )
        break
      case 'checkpoint':
        this.checkpointsByKey.set(key, record as Verified<'checkpoint'>)
        break
    }
  }

  /** Puts the copy of a held seal or checkpoint that has its lists read in place of the held one. */
  replace(held: AnyVerified, richer: AnyVerified): void {
    this.recordsByKey.set(richer.key, richer)
    if (richer.record.kind === 'seal') {
      const seals = this.sealsByProposal.get(cidKey(richer.record.body.proposal))
      if (seals) seals[seals.indexOf(held as Verified<'seal'>)] = richer as Verified<'seal'>
    } else if (richer.record.kind === 'checkpoint') {
      this.checkpointsByKey.set(richer.key, richer as Verified<'checkpoint'>)
    }
  }
}
