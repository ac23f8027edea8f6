/**
 * The record types of SPEC.md §5, as they appear after strict
 * decoding. All integers are safe integers; all byte fields are Uint8Array;
 * all links are CIDs. Versions and future records: docs/adr/0023.
 */
import type { CID } from 'multiformats/cid'
import type { Did } from './did.js'

/** The record version this implementation speaks and signs (SPEC.md §5.1, Versions). */
export const RECORD_VERSION = 1
/** The largest `minVersion` rules may demand. */
export const MAX_MIN_VERSION = 2 ** 32

export const ROLES = ['auditor', 'publisher', 'steward', 'voter'] as const
export type Role = (typeof ROLES)[number]

export const KINDS = ['genesis', 'manifest', 'attestation', 'proposal', 'vote', 'seal', 'checkpoint'] as const
export type Kind = (typeof KINDS)[number]

export const ACTION_TYPES = [
  'ratify-model',
  'revoke-model',
  'admit-member',
  'remove-member',
  'replace-key',
  'change-rules',
] as const
export type ActionType = (typeof ACTION_TYPES)[number]
export const GOVERNANCE_ACTIONS: ReadonlySet<ActionType> = new Set([
  'admit-member',
  'remove-member',
  'replace-key',
  'change-rules',
])

export const CHOICES = ['yes', 'no', 'abstain'] as const
export type Choice = (typeof CHOICES)[number]

export const OUTCOMES = ['passed', 'rejected', 'no-quorum'] as const
export type Outcome = (typeof OUTCOMES)[number]

/** `[numerator, denominator]` */
export type Fraction = readonly [number, number]

export interface Member {
  readonly id: Did
  /** Sorted, distinct. */
  readonly roles: readonly Role[]
  readonly weight: number
}

export interface RequiredAttestation {
  readonly kind: string
  readonly min: number
}

export interface ActionRule {
  readonly quorum: Fraction
  readonly threshold: Fraction
  readonly requiredAttestations: readonly RequiredAttestation[]
}

export interface Rules {
  readonly votingPeriodMs: number
  readonly sealThreshold: number
  readonly sealGraceMs: number
  readonly weightsDeadlineMs: number
  readonly sealDeadlineMs: number
  readonly checkpointIntervalMs: number
  readonly maxModelBytes: number
  readonly maxOpenProposalsPerAuthor: number
  /**
   * The lowest record version a proposal, vote or seal under these rules may have; absent
   * means 1. Stewards raise it once they have upgraded (SPEC.md §5.1, Versions).
   */
  readonly minVersion?: number
  /** Per action type, and `"*"` for every action not named. */
  readonly actions: Readonly<Record<string, ActionRule>>
}

export type Action =
  | { readonly type: 'ratify-model'; readonly manifest: CID }
  | { readonly type: 'revoke-model'; readonly manifest: CID; readonly reason: string }
  | { readonly type: 'admit-member'; readonly member: Member }
  | { readonly type: 'remove-member'; readonly id: Did }
  | { readonly type: 'replace-key'; readonly id: Did; readonly newId: Did }
  | { readonly type: 'change-rules'; readonly rules: Rules }

export interface CidList {
  readonly root: CID
  readonly count: number
}

export interface Tally {
  readonly yes: number
  readonly no: number
  readonly abstain: number
}

export interface ManifestFile {
  readonly path: string
  readonly size: number
  readonly sha256: Uint8Array
}

export interface GenesisBody {
  readonly name: string
  readonly members: readonly Member[]
  readonly rules: Rules
  readonly nonce: Uint8Array
}

export interface ManifestBody {
  readonly name: string
  readonly version: string
  readonly weights: CID
  readonly cidProfile: 'unixfs-v1-2025'
  readonly files: readonly ManifestFile[]
  readonly size: number
  readonly format: string
  readonly parameters?: number
  readonly license: string
  readonly languages: readonly string[]
  readonly base?: CID
  readonly card?: CID
  readonly description?: string
}

export interface AttestationBody {
  readonly subject: CID
  readonly kind: string
  readonly result: 'pass' | 'fail'
  readonly report?: CID
  readonly metrics?: Readonly<Record<string, number>>
}

export interface ProposalBody {
  readonly action: Action
  readonly basis: CID
  readonly closesAt: number
  readonly title: string
  readonly description?: string
}

export interface VoteBody {
  readonly proposal: CID
  readonly choice: Choice
  readonly reason?: string
}

export interface SealBody {
  readonly proposal: CID
  readonly votes: CidList
  readonly attestations: CidList
  readonly tally: Tally
  readonly outcome: Outcome
  /** Present exactly for ratify-model proposals. */
  readonly weightsVerified?: boolean
}

export interface CheckpointBody {
  readonly head: CID
  readonly height: number
  readonly epoch: number
  readonly stateRoot: CID
  readonly finalized: CidList
}

export interface BodyOf {
  genesis: GenesisBody
  manifest: ManifestBody
  attestation: AttestationBody
  proposal: ProposalBody
  vote: VoteBody
  seal: SealBody
  checkpoint: CheckpointBody
}

export interface Cosig {
  readonly id: Did
  readonly sig: Uint8Array
}

/** A record as signed: every field but `sig` (and, for a genesis, `cosigs`). */
export interface UnsignedRecord<K extends Kind = Kind> {
  readonly v: 1
  readonly kind: K
  /** The federation id; absent exactly for the genesis. */
  readonly federation?: CID
  readonly author: Did
  readonly at: number
  readonly body: BodyOf[K]
}

export interface SignedRecord<K extends Kind = Kind> extends UnsignedRecord<K> {
  readonly sig: Uint8Array
  /** Genesis only: co-signatures of the founding stewards. */
  readonly cosigs?: readonly Cosig[]
}

export type AnyRecord = { [K in Kind]: SignedRecord<K> }[Kind]
