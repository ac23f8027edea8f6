/**
 * What the fold's rule functions read (SPEC.md §8): the indexes of the record set and the
 * accumulator's memoized derivations. A rule function never writes. When it cannot decide
 * without a record that is not here yet, it returns that record's key with its verdict, and the
 * accumulator (accumulator.ts) files the key, so that the record's arrival derives again.
 */
import type { CID } from 'multiformats/cid'
import type { Did } from '../did.js'
import type { GovState } from '../govstate.js'
import type { AnyVerified, Verified } from '../record.js'
import type { Tally } from '../types.js'
import type { Anchor } from './checkpoints.js'
import type { Evaluation } from './evaluation.js'
import type { Finality } from './finality.js'
import type { RecordReport } from './types.js'

/** Keys of records not here yet that a verdict waits for. */
export type Awaits = readonly string[]

export const NOTHING_AWAITED: Awaits = Object.freeze([]) as Awaits

/** The record set, filed by kind (indexes.ts). Insertion order never matters to what is derived. */
export interface FoldIndexes {
  /** Every record held, the genesis first, then in insertion order. */
  readonly recordsByKey: ReadonlyMap<string, AnyVerified>
  readonly proposalsByKey: ReadonlyMap<string, Verified<'proposal'>>
  readonly votesByProposal: ReadonlyMap<string, readonly Verified<'vote'>[]>
  readonly sealsByProposal: ReadonlyMap<string, readonly Verified<'seal'>[]>
  readonly manifestsByKey: ReadonlyMap<string, Verified<'manifest'>>
  /** By the key of the manifest attested. */
  readonly attestationsBySubject: ReadonlyMap<string, readonly Verified<'attestation'>[]>
  /** Governance proposals by the key of their basis. */
  readonly governanceByBasis: ReadonlyMap<string, readonly Verified<'proposal'>[]>
  readonly checkpointsByKey: ReadonlyMap<string, Verified<'checkpoint'>>
}

/**
 * Where the governance chain starts: the federation id with state(genesis), or the trusted head a
 * fold was given (`FoldOptions.anchor`) with its state. An anchored fold never reads the head's
 * own record, and cannot know the states between the genesis and that head (docs/adr/0022).
 */
export interface ChainStart {
  readonly head: CID
  readonly key: string
  readonly state: GovState
}

export interface FoldReader {
  readonly federation: CID
  readonly genesis: Verified<'genesis'>
  readonly genesisKey: string
  /** state(genesis) (SPEC.md §8.2). */
  readonly genesisState: GovState
  /** Successors are followed from here; the genesis unless the fold was anchored. */
  readonly chainStart: ChainStart
  /** Whether a governance seal without its lists counts for what it declares (compact certificates). */
  readonly declaredGovernanceSeals: boolean
  readonly indexes: FoldIndexes
  /** The newest counted checkpoint (SPEC.md §11.3), if any. */
  readonly anchor: Anchor | undefined
  /** The evaluation of a proposal (SPEC.md §8.3), memoized. */
  evaluationOf(proposal: Verified<'proposal'>): Evaluation
  /** The finality of a proposal (SPEC.md §8.5, §11.3), memoized. */
  finalityOf(proposal: Verified<'proposal'>): Finality
  /** The successor of a basis (SPEC.md §8.2), by the basis' key; memoized. */
  successorOf(basisKey: string): Verified<'proposal'> | undefined
  /** Members with `role` in some state of the chain (SPEC.md §8.7); memoized. */
  holdersEver(role: 'publisher' | 'auditor'): ReadonlySet<Did>
  /** The live tally of a proposal's valid votes (SPEC.md §8.4). */
  liveTallyOf(proposalKey: string): Tally
  /** Per voter the latest valid vote on a proposal: what its live tally counts. */
  liveVotesOf(proposalKey: string): Iterable<Verified<'vote'>> | undefined
  /** The report of a record held, once derived. */
  reportOf(key: string): RecordReport | undefined
}
