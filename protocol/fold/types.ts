/**
 * The fold's public shapes (SPEC.md §8): what it reports of each record (§8.1), the phase and
 * display status of a proposal (§8.5, §8.6), the views of proposals, manifests, models and the
 * newest counted checkpoint (§8.7, §11.3), the federation state (§8.8), and the accumulator.
 */
import type { CID } from 'multiformats/cid'
import type { InapplicableCode, InvalidCode, PendingCode } from '../codes.js'
import type { Did } from '../did.js'
import type { GovState } from '../govstate.js'
import type { AnyVerified, Verified } from '../record.js'
import type { Action, Member, Outcome, Rules, Tally } from '../types.js'

export type RecordReport =
  | { readonly status: 'applied' }
  | { readonly status: 'pending'; readonly code: PendingCode; readonly message: string }
  | { readonly status: 'inapplicable'; readonly code: InapplicableCode; readonly message: string }
  | { readonly status: 'invalid'; readonly code: InvalidCode; readonly message: string }

/** What the record set alone says about a proposal (no clock involved). */
export type Phase =
  | 'pending'
  | 'void'
  | 'undecided'
  | 'final-passed'
  | 'final-rejected'
  | 'final-no-quorum'
  | 'superseded'
  | 'conflicted'

/** The phase as shown at a given time. */
export type ProposalStatus =
  | 'open'
  | 'closed-awaiting-seals'
  | 'expired'
  | 'final-passed'
  | 'final-rejected'
  | 'final-no-quorum'
  | 'superseded'
  | 'conflicted'
  | 'pending'
  | 'void'

export interface ProposalView {
  readonly cid: CID
  readonly author: Did
  readonly at: number
  readonly closesAt: number
  readonly basis: CID
  readonly action: Action
  readonly title: string
  readonly governance: boolean
  readonly phase: Phase
  /** Why the proposal is void or pending. */
  readonly reason?: { readonly code: InapplicableCode | PendingCode; readonly message: string }
  /** The agreeing seal with the smallest CID when final, else the live tally of valid votes. */
  readonly tally: Tally
  /** Total voter weight of the electorate (0 unless the proposal is valid). */
  readonly eligible: number
  readonly outcome?: Outcome
  readonly weightsVerified?: boolean
  /** The agreeing seal with the smallest CID. */
  readonly decidedBy?: CID
  /** Stewards whose valid seals on this proposal differ in content. */
  readonly equivocators: readonly Did[]
  /** Rules of the electorate (valid proposals only): used for timing and display. */
  readonly rules?: Rules
  /**
   * True when the newest counted checkpoint covers the proposal (closesAt ≤ its
   * epoch): its phase is then the checkpoint's and later seals cannot change it.
   * A final decision not yet covered is *unconfirmed*.
   */
  readonly confirmed: boolean
}

export interface CheckpointView {
  /** Of the identical checkpoints signed by stewards of state(head), the one with the smallest CID. */
  readonly cid: CID
  readonly epoch: number
  readonly height: number
  readonly head: CID
  readonly stateRoot: CID
  /** Stewards of state(head) who signed this content. */
  readonly signers: readonly Did[]
  /** Rules of state(head): the timing that applies to this checkpoint (its age, its interval). */
  readonly rules: Rules
}

export type ModelStatus = 'ratified' | 'conflicted' | 'revoked' | 'proposed'

export interface ManifestView {
  readonly cid: CID
  readonly author: Did
  readonly name: string
  readonly version: string
  readonly base?: CID
  readonly status: 'ratified' | 'revoked' | 'proposed'
  /** Final-passed ratify proposals for this manifest, sorted by CID. */
  readonly ratifiedBy: readonly CID[]
  /** Final-passed revoke proposals for this manifest, sorted by CID. */
  readonly revokedBy: readonly CID[]
}

export interface ModelView {
  /** `name@version` */
  readonly key: string
  readonly status: ModelStatus
  /** Applicable manifests for this name@version, sorted by CID. */
  readonly manifests: readonly CID[]
  /** The ratified manifest when status is `ratified`. */
  readonly manifest?: CID
  /** The deciding proposal: the ratification for `ratified`, a revocation for `revoked`. */
  readonly decision?: CID
}

export interface FederationState {
  readonly federation: CID
  readonly genesis: Verified<'genesis'>
  /** The governance head: the federation id, or the last chain decision. */
  readonly head: CID
  readonly height: number
  /** Members of state(head), sorted by id. */
  readonly members: readonly Member[]
  readonly rules: Rules
  readonly proposals: ReadonlyMap<string, ProposalView>
  readonly manifests: ReadonlyMap<string, ManifestView>
  readonly models: ReadonlyMap<string, ModelView>
  /** Records held (the genesis included). */
  readonly recordCount: number
  /** The newest counted checkpoint, if any. */
  readonly checkpoint?: CheckpointView
  /** Stewards who signed two different checkpoints for one epoch. */
  readonly checkpointEquivocators: readonly Did[]
}

/**
 * How a fold reads what it cannot check itself (docs/adr/0022). Nodes pass none: they hold every
 * record and check everything. Certificates pass them to fold a file that holds less.
 */
export interface FoldOptions {
  /** Compact certificates: a seal on a GOVERNANCE proposal whose lists are absent counts for the
   *  tally and outcome it declares (SPEC §8.5 steps 4–7 not checked). Never used by nodes. */
  readonly declaredGovernanceSeals?: boolean
  /** `--since` certificates: the chain starts at this trusted head, with this state, instead of
   *  at the genesis; the head's own proposal record is not needed. */
  readonly anchor?: { readonly head: CID; readonly state: GovState }
}

export interface Fold {
  readonly federation: CID
  /** Adds a record; duplicates are ignored. Returns false for a record of another federation or a second genesis. */
  add(record: AnyVerified): boolean
  /** By CID, or by its map key (`cidKey`, a verified record's `key`). */
  has(cid: CID | string): boolean
  get(cid: CID): AnyVerified | undefined
  /** Every record held, the genesis first, then in insertion order. */
  records(): IterableIterator<AnyVerified>
  state(): FederationState
  /** By CID, or by its map key. */
  report(cid: CID | string): RecordReport | undefined
  /**
   * Per voter the latest valid vote, sorted by CID: what an honest steward seals. With
   * `admit`, only the votes it admits take part (a steward's "received before the cut-off").
   */
  countedVotes(proposal: CID, admit?: (vote: AnyVerified) => boolean): CID[]
  /** Per auditor and kind the latest attestation with at ≤ closesAt (ratify proposals only), sorted by CID. */
  countedAttestations(proposal: CID, admit?: (attestation: AnyVerified) => boolean): CID[]
  /** The governance state a proposal's electorate and rules come from, if the proposal is valid. */
  electorate(proposal: CID): GovState | undefined
  /** The governance state at the head. */
  headState(): GovState
  /** True if `did` is a member in some state of the chain (gossip accepts only such authors). */
  knownMember(did: Did): boolean
}
