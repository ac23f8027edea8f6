/**
 * The fold (SPEC.md §8): from a set of verified records to the federation
 * state. Pure and deterministic: no clock (`now` is only a parameter of
 * `proposalStatus`), no I/O, integers everywhere an outcome is decided.
 *
 * Invariants
 * - The state depends only on the *set* of records added, never on their
 *   order or on duplicates (property-tested in test/unit/fold.property.test.ts).
 * - `createFold(genesis)` returns an accumulator: `add` indexes a record in
 *   O(1) (a vote on a settled proposal also updates its live tally in O(1));
 *   everything that can depend on other records is derived from the indexes
 *   on the next read, so adding records one by one equals folding them at once.
 * - A checkpoint costs the fold O(1) until it counts (besides reading its own
 *   list once per distinct content): it joins its group of identical
 *   checkpoints, and only a group that reaches the threshold and is newer
 *   than the newest counted checkpoint makes everything derived again. A
 *   seal that does not count costs its own check. So a member's stream of
 *   checkpoints or seals that cannot count re-derives nothing.
 * - Invalid records never get here (`Verified` values only); a record of
 *   another federation is refused by `add`. Every other record is kept and
 *   reported as applied, pending (waiting for a dependency) or inapplicable
 *   (counted nowhere), with a stable code.
 */
import type { CID } from 'multiformats/cid'
import { cidKey, compareCids } from '../cid.js'
import type { InapplicableCode, InvalidCode, PendingCode } from '../codes.js'
import type { Did } from '../did.js'
import { applyAction, eligibleWeight, type GovState, genesisState, hasRole, ruleFor } from '../govstate.js'
import type { AnyVerified, Verified } from '../record.js'
import { federationIdOf } from '../signing.js'
import { EMPTY_TALLY, outcomeOf, sameTally } from '../tally.js'
import {
  type Action,
  type ActionRule,
  GOVERNANCE_ACTIONS,
  type Member,
  type Outcome,
  type Rules,
  type Tally,
} from '../types.js'

// ---------------------------------------------------------------- public types

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

// ---------------------------------------------------------------- helpers

const APPLIED: RecordReport = Object.freeze({ status: 'applied' })

function pending(code: PendingCode, message: string): RecordReport {
  return { status: 'pending', code, message }
}
type Inapplicable = Extract<RecordReport, { status: 'inapplicable' }>

function inapplicable(code: InapplicableCode, message: string): Inapplicable {
  return { status: 'inapplicable', code, message }
}

/** Later by (at, CID). */
function evalReport(ev: Eval): RecordReport {
  return ev.s === 'valid'
    ? APPLIED
    : ev.s === 'pending'
      ? pending(ev.code, ev.message)
      : inapplicable(ev.code, ev.message)
}

/** Later by (at, CID); keys compare as CIDs do (same length, one char per byte). */
function later(
  a: { record: { at: number }; key: string },
  b: { record: { at: number }; key: string },
): boolean {
  return a.record.at !== b.record.at ? a.record.at > b.record.at : a.key > b.key
}

/** Earlier by (closesAt, CID). */
function earlierClose(a: Verified<'proposal'>, b: Verified<'proposal'>): boolean {
  const x = a.record.body.closesAt
  const y = b.record.body.closesAt
  return x !== y ? x < y : compareCids(a.cid, b.cid) < 0
}

function byCid(a: CID, b: CID): number {
  return compareCids(a, b)
}

function isGovernance(p: Verified<'proposal'>): boolean {
  return GOVERNANCE_ACTIONS.has(p.record.body.action.type)
}

function subjectOf(action: Action): CID | undefined {
  return action.type === 'ratify-model' || action.type === 'revoke-model' ? action.manifest : undefined
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key)
  if (list) list.push(value)
  else map.set(key, [value])
}

type Eval =
  | {
      readonly s: 'valid'
      readonly electorate: GovState
      readonly eligible: number
      readonly rule: ActionRule
      /** state(P) for a governance proposal. */
      readonly next?: GovState
    }
  | { readonly s: 'pending'; readonly code: PendingCode; readonly message: string }
  | { readonly s: 'void'; readonly code: InapplicableCode; readonly message: string }

interface SealVerdict {
  readonly seal: Verified<'seal'>
  readonly report: RecordReport
}

interface Finality {
  readonly final: boolean
  readonly conflicted: boolean
  /**
   * Set when the newest counted checkpoint covers the proposal (closesAt ≤ its
   * epoch): the phase it lists, or null when it lists none. It overrides the seals.
   */
  readonly anchored?: Phase | null
  readonly outcome?: Outcome
  readonly weightsVerified?: boolean
  readonly decidedBy?: Verified<'seal'>
  readonly equivocators: readonly Did[]
  readonly verdicts: readonly SealVerdict[]
}

interface Live {
  readonly latest: Map<Did, Verified<'vote'>>
  tally: Tally
}

interface Anchor {
  /** The content key of its group (`CheckpointGroup.content`). */
  readonly content: string
  /** Of the identical checkpoints signed by stewards of state(head), the one with the smallest CID. */
  readonly checkpoint: Verified<'checkpoint'>
  readonly signers: readonly Did[]
  readonly epoch: number
  readonly height: number
  readonly labels: ReadonlyMap<string, Phase>
  /** Rules of the checkpoint's head state. */
  readonly rules: Rules
}

/** The phases a checkpoint may list for a decision. */
export const DECIDED_PHASES: ReadonlySet<string> = new Set([
  'final-passed',
  'final-rejected',
  'final-no-quorum',
  'superseded',
  'conflicted',
])

/**
 * Checkpoints with identical `(head, height, epoch, stateRoot, finalized)` (SPEC.md §11.2). Whether
 * the content holds (its labels, its head state) is settled once, when the first of them arrives;
 * each later one only adds its signer.
 */
interface CheckpointGroup {
  readonly content: string
  readonly height: number
  readonly epoch: number
  readonly labels: ReadonlyMap<string, Phase>
  /** What every member is reported when the content itself does not hold (label, head, pending). */
  readonly failure?: RecordReport
  /** state(head), when the content holds. */
  readonly state?: GovState
  /** Stewards of state(head) who signed this content. */
  readonly signers: Set<Did>
  /** Of their checkpoints, the one with the smallest CID (set once there is a signer). */
  smallest?: Verified<'checkpoint'>
}

function contentOf(c: Verified<'checkpoint'>): string {
  const b = c.record.body
  return [
    cidKey(b.head),
    b.height,
    b.epoch,
    cidKey(b.stateRoot),
    cidKey(b.finalized.root),
    b.finalized.count,
  ].join('|')
}

function counts(g: CheckpointGroup): boolean {
  return g.state !== undefined && g.signers.size >= g.state.rules.sealThreshold
}

/** Newer by (height, epoch), then the smaller CID (SPEC.md §11.3). */
function newer(g: CheckpointGroup, than: { height: number; epoch: number; cid: CID }): boolean {
  if (g.height !== than.height) return g.height > than.height
  if (g.epoch !== than.epoch) return g.epoch > than.epoch
  return compareCids(g.smallest!.cid, than.cid) < 0
}

function anchorOf(g: CheckpointGroup): Anchor {
  return {
    content: g.content,
    checkpoint: g.smallest!,
    signers: [...g.signers].sort(),
    epoch: g.epoch,
    height: g.height,
    labels: g.labels,
    rules: g.state!.rules,
  }
}

const IN_PROGRESS = Symbol('in-progress')

// ---------------------------------------------------------------- the accumulator

class FoldImpl implements Fold {
  readonly federation: CID
  readonly genesis: Verified<'genesis'>
  readonly genesisKey: string
  readonly genesisGov: GovState

  // Indexes of the record set: insertion order never matters to what is derived from them.
  private readonly all = new Map<string, AnyVerified>()
  private readonly proposals = new Map<string, Verified<'proposal'>>()
  private readonly votesByProposal = new Map<string, Verified<'vote'>[]>()
  private readonly sealsByProposal = new Map<string, Verified<'seal'>[]>()
  private readonly manifests = new Map<string, Verified<'manifest'>>()
  private readonly attestationsBySubject = new Map<string, Verified<'attestation'>[]>()
  private readonly governanceByBasis = new Map<string, Verified<'proposal'>[]>()
  private readonly checkpoints = new Map<string, Verified<'checkpoint'>>()

  // Derived; rebuilt when `dirty`.
  private dirty = true
  private view: FederationState | undefined
  /** Proposals whose live tally changed since `view` was built (the cheap vote path). */
  private readonly staleViews = new Set<string>()
  private evals = new Map<string, Eval | typeof IN_PROGRESS>()
  private finals = new Map<string, Finality>()
  private successors = new Map<string, Verified<'proposal'> | null>()
  private live = new Map<string, Live>()
  private reports = new Map<string, RecordReport>()
  /** CIDs that seals name but that are not here yet → the seals waiting for them. */
  private waiting = new Set<string>()
  /**
   * Manifests not here yet → the ratify/revoke proposals naming them: when the manifest
   * comes, only those proposals (and their votes) are evaluated again, not everything.
   */
  private subjectWaiters = new Map<string, Set<string>>()
  private anchor: Anchor | undefined
  /** Finalized checkpoints by content; rebuilt by `derive`, kept current by `addCheckpoint`. */
  private checkpointGroups = new Map<string, CheckpointGroup>()
  /** `author|epoch` → the contents that author signed for that epoch. */
  private contentsByAuthorEpoch = new Map<string, Set<string>>()
  /** state(head) replayed along the chain to each head a checkpoint named (`stateFromList`). */
  private replayed = new Map<string, GovState | undefined>()
  private equivocatorSet = new Set<Did>()
  private checkpointEquivocators: readonly Did[] = []
  /** How many times everything was derived again (read by tests and the benchmark). */
  derivations = 0
  private publishersEver: Set<Did> | undefined
  private known: Set<Did> | undefined
  private auditorsEver: Set<Did> | undefined

  constructor(genesis: Verified<'genesis'>) {
    this.genesis = genesis
    this.federation = federationIdOf(genesis.record)
    this.genesisKey = cidKey(this.federation)
    this.genesisGov = genesisState(genesis.record.body.members, genesis.record.body.rules)
    this.all.set(genesis.key, genesis)
  }

  has(cid: CID | string): boolean {
    return this.all.has(typeof cid === 'string' ? cid : cidKey(cid))
  }

  get(cid: CID): AnyVerified | undefined {
    return this.all.get(cidKey(cid))
  }

  records(): IterableIterator<AnyVerified> {
    return this.all.values()
  }

  add(r: AnyVerified): boolean {
    const key = r.key
    const held = this.all.get(key)
    if (held) {
      // The same seal or checkpoint again, now with its lists read: keep the richer copy.
      if ((r.lists && !held.lists) || (r.finalized && !held.finalized)) this.upgrade(held, r, key)
      return true
    }
    if (r.record.kind === 'genesis') return false
    if (!r.record.federation!.equals(this.federation)) return false
    this.all.set(key, r)
    switch (r.record.kind) {
      case 'vote':
        return this.addVote(r as Verified<'vote'>, key)
      case 'proposal': {
        const p = r as Verified<'proposal'>
        this.proposals.set(key, p)
        if (isGovernance(p)) push(this.governanceByBasis, cidKey(p.record.body.basis), p)
        else if (this.isolated(key)) return this.addDecision(p, key)
        break
      }
      case 'seal': {
        const seal = r as Verified<'seal'>
        push(this.sealsByProposal, cidKey(seal.record.body.proposal), seal)
        // A seal that does not count changes nothing but its own report.
        if (this.isolated(key)) {
          const report = this.uncountedSealReport(seal)
          if (report) {
            this.reports.set(key, report)
            return true
          }
        }
        break
      }
      case 'manifest':
        this.manifests.set(key, r as Verified<'manifest'>)
        // Attestations do not wait in `waiting` for their subject: look for them here. Proposals
        // waiting for this manifest are evaluated again, alone.
        if (!this.dirty && !this.waiting.has(key) && !this.attestationsBySubject.has(key)) {
          this.reports.set(key, this.manifestReport(r as Verified<'manifest'>))
          const waiters = this.subjectWaiters.get(key)
          this.subjectWaiters.delete(key)
          for (const pKey of waiters ?? []) this.addDecision(this.proposals.get(pKey)!, pKey)
          this.view = undefined
          return true
        }
        break
      case 'attestation':
        push(
          this.attestationsBySubject,
          cidKey((r as Verified<'attestation'>).record.body.subject),
          r as Verified<'attestation'>,
        )
        // Counted attestations are read on demand; nothing derived holds them.
        if (this.isolated(key)) {
          this.reports.set(key, this.attestationReport(r as Verified<'attestation'>))
          return true
        }
        break
      case 'checkpoint':
        this.checkpoints.set(key, r as Verified<'checkpoint'>)
        if (this.isolated(key)) {
          this.addCheckpoint(r as Verified<'checkpoint'>)
          return true
        }
        break
    }
    this.dirty = true
    this.view = undefined
    return true
  }

  /**
   * Whether a new record under `key` leaves everything derived so far as it is, but for
   * what hangs on the record itself: nothing is to be re-derived anyway, and no seal,
   * basis, subject or checkpoint chain waits for this CID.
   */
  private isolated(key: string): boolean {
    return !this.dirty && !this.waiting.has(key) && !this.subjectWaiters.has(key)
  }

  /**
   * A ratify or revoke proposal outside the governance chain: only its own verdict and the
   * votes that came before it change (its seals, had any come, would be waiting for it).
   */
  private addDecision(p: Verified<'proposal'>, key: string): boolean {
    // Evaluated before (when its manifest was missing): start it afresh.
    this.evals.delete(key)
    this.finals.delete(key)
    this.live.delete(key)
    const ev = this.evalOf(p)
    const fin = this.finality(p)
    this.reports.set(key, evalReport(ev))
    for (const v of fin.verdicts) this.reports.set(v.seal.key, v.report)
    for (const v of this.votesByProposal.get(key) ?? []) {
      const report = this.voteReport(v)
      this.reports.set(v.key, report)
      if (report.status === 'applied')
        this.countLive(this.liveOf(key), v, ev as Extract<Eval, { s: 'valid' }>)
    }
    this.view = undefined
    return true
  }

  /**
   * The report of a new seal when it cannot count (a non-steward's, outside its window, with a
   * list that does not add up, waiting for its proposal or a named record); undefined when it
   * counts, and so may change the proposal's finality.
   */
  private uncountedSealReport(seal: Verified<'seal'>): RecordReport | undefined {
    const pKey = cidKey(seal.record.body.proposal)
    const p = this.proposals.get(pKey)
    if (!p) {
      this.waiting.add(pKey)
      return pending('proposal-unknown', 'the sealed proposal is not known yet')
    }
    const ev = this.evalOf(p)
    if (ev.s === 'pending') return pending('proposal-pending', 'the sealed proposal is pending')
    if (ev.s === 'void') return inapplicable('proposal-void', 'the sealed proposal is void')
    const report = this.sealReport(p, ev, seal)
    return report.status === 'applied' ? undefined : report
  }

  private upgrade(held: AnyVerified, r: AnyVerified, key: string): void {
    this.all.set(key, r)
    if (r.record.kind === 'seal') {
      const list = this.sealsByProposal.get(cidKey(r.record.body.proposal))
      if (list) list[list.indexOf(held as Verified<'seal'>)] = r as Verified<'seal'>
    } else if (r.record.kind === 'checkpoint') {
      this.checkpoints.set(key, r as Verified<'checkpoint'>)
      // Its list was missing, so it is in no group yet: it joins one now, like a new checkpoint.
      if (!this.dirty) {
        this.addCheckpoint(r as Verified<'checkpoint'>)
        return
      }
    }
    this.dirty = true
    this.view = undefined
  }

  knownMember(did: Did): boolean {
    this.derive()
    if (this.genesisGov.members.has(did)) return true
    this.known ??= new Set(this.chainStates().flatMap((st) => [...st.members.keys()]))
    return this.known.has(did)
  }

  /**
   * A vote changes nothing but its own report and its proposal's live tally,
   * unless a seal is waiting for it: then everything is derived again.
   */
  private addVote(v: Verified<'vote'>, key: string): boolean {
    const pKey = cidKey(v.record.body.proposal)
    push(this.votesByProposal, pKey, v)
    if (this.dirty || this.waiting.has(key) || this.subjectWaiters.has(key)) {
      this.dirty = true
      this.view = undefined
      return true
    }
    const report = this.voteReport(v)
    this.reports.set(key, report)
    if (report.status === 'applied') {
      const ev = this.evals.get(pKey) as Eval
      this.countLive(this.liveOf(pKey), v, ev as Extract<Eval, { s: 'valid' }>)
      this.staleViews.add(pKey)
    }
    return true
  }

  // ------------------------------------------------------------ derivation

  private derive(): void {
    if (!this.dirty) return
    this.derivations++
    this.evals = new Map()
    this.finals = new Map()
    this.successors = new Map()
    this.live = new Map()
    this.reports = new Map()
    this.waiting = new Set()
    this.subjectWaiters = new Map()
    this.publishersEver = undefined
    this.auditorsEver = undefined
    this.known = undefined
    this.computeAnchor()
    // Settle every proposal (governance first is not needed: evaluation recurses on demand).
    for (const p of this.proposals.values()) this.finality(p)
    for (const [key, p] of this.proposals) {
      this.reports.set(key, evalReport(this.evalOf(p)))
      const fin = this.finals.get(key)
      if (fin) for (const v of fin.verdicts) this.reports.set(v.seal.key, v.report)
    }
    for (const [pKey, seals] of this.sealsByProposal) {
      if (this.proposals.has(pKey)) continue
      for (const s of seals) {
        this.reports.set(s.key, pending('proposal-unknown', 'the sealed proposal is not known yet'))
        this.waiting.add(pKey)
      }
    }
    for (const votes of this.votesByProposal.values()) {
      for (const v of votes) {
        const report = this.voteReport(v)
        this.reports.set(v.key, report)
        if (report.status === 'applied') {
          const pKey = cidKey(v.record.body.proposal)
          this.countLive(this.liveOf(pKey), v, this.evals.get(pKey) as Extract<Eval, { s: 'valid' }>)
        }
      }
    }
    for (const [key, m] of this.manifests) this.reports.set(key, this.manifestReport(m))
    for (const atts of this.attestationsBySubject.values()) {
      for (const a of atts) this.reports.set(a.key, this.attestationReport(a))
    }
    this.dirty = false
    this.view = undefined
  }

  private liveOf(pKey: string): Live {
    let l = this.live.get(pKey)
    if (!l) {
      l = { latest: new Map(), tally: EMPTY_TALLY }
      this.live.set(pKey, l)
    }
    return l
  }

  private countLive(l: Live, v: Verified<'vote'>, ev: Extract<Eval, { s: 'valid' }>): void {
    const voter = v.record.author
    const prev = l.latest.get(voter)
    if (prev && !later(v, prev)) return
    const w = ev.electorate.members.get(voter)!.weight
    const t = { ...l.tally }
    if (prev) t[prev.record.body.choice] -= w
    t[v.record.body.choice] += w
    l.tally = t
    l.latest.set(voter, v)
  }

  private evalOf(p: Verified<'proposal'>): Eval {
    const key = p.key
    const hit = this.evals.get(key)
    if (hit === IN_PROGRESS)
      return { s: 'void', code: 'basis-not-chain', message: 'the basis depends on this proposal' }
    if (hit) return hit
    this.evals.set(key, IN_PROGRESS)
    const ev = this.evaluate(p)
    this.evals.set(key, ev)
    return ev
  }

  /** The basis, electorate, author, period and action checks of one proposal (SPEC.md §8.2–§8.3). */
  private evaluate(p: Verified<'proposal'>): Eval {
    const { at, author } = p.record
    const { basis, closesAt, action } = p.record.body
    const basisKey = cidKey(basis)
    let state: GovState
    if (basisKey === this.genesisKey) {
      state = this.genesisGov
    } else {
      const b = this.proposals.get(basisKey)
      if (!b) {
        if (this.all.has(basisKey))
          return { s: 'void', code: 'basis-not-governance', message: 'the basis is not a proposal' }
        // Whatever record arrives under this CID changes the verdict, even a vote: derive again then.
        this.waiting.add(basisKey)
        return { s: 'pending', code: 'basis-unknown', message: 'the basis is not known yet' }
      }
      if (b.record.body.closesAt >= at)
        return {
          s: 'void',
          code: 'basis-not-closed',
          message: 'the basis closes after this proposal was made',
        }
      if (!isGovernance(b))
        return { s: 'void', code: 'basis-not-governance', message: 'the basis is not a governance decision' }
      const eb = this.evalOf(b)
      if (eb.s === 'pending')
        return { s: 'pending', code: 'basis-pending', message: 'the basis is waiting for its own basis' }
      if (eb.s === 'void') return { s: 'void', code: 'basis-not-chain', message: 'the basis is void' }
      const fb = this.finality(b)
      if (!fb.final) return { s: 'pending', code: 'basis-pending', message: 'the basis is not final yet' }
      if (!this.isChainDecision(b))
        return { s: 'void', code: 'basis-not-chain', message: 'the basis did not pass, or was superseded' }
      state = eb.next!
    }
    // Stale basis: the earliest final-passed governance decision on the same basis, closed before this proposal.
    let g: Verified<'proposal'> | undefined
    for (const q of this.governanceByBasis.get(basisKey) ?? []) {
      const qc = q.record.body.closesAt
      if (q === p || !(q.record.at < qc && qc < at)) continue
      if (g && !earlierClose(q, g)) continue
      if (this.finalPassed(q)) g = q
    }
    if (g && g.record.body.closesAt + state.rules.sealDeadlineMs < at) {
      return {
        s: 'void',
        code: 'basis-stale',
        message: 'the basis was replaced by a decision that closed long before this proposal',
      }
    }
    if (!hasRole(state, author, 'voter')) {
      return state.members.has(author)
        ? { s: 'void', code: 'author-role', message: 'only voters of the electorate may propose' }
        : { s: 'void', code: 'author-not-member', message: 'the author is not a member of the electorate' }
    }
    if (closesAt - at < state.rules.votingPeriodMs) {
      return {
        s: 'void',
        code: 'proposal-period',
        message: `the voting period is shorter than ${state.rules.votingPeriodMs} ms`,
      }
    }
    const rule = ruleFor(state.rules, action.type)
    const eligible = eligibleWeight(state)
    const subject = subjectOf(action)
    if (subject) {
      const m = this.manifests.get(cidKey(subject))
      if (!m) {
        if (this.all.has(cidKey(subject)))
          return { s: 'void', code: 'manifest-inapplicable', message: 'the subject is not a manifest' }
        const sKey = cidKey(subject)
        const waiters = this.subjectWaiters.get(sKey)
        if (waiters) waiters.add(p.key)
        else this.subjectWaiters.set(sKey, new Set([p.key]))
        return { s: 'pending', code: 'manifest-unknown', message: 'the manifest is not known yet' }
      }
      if (!this.manifestApplicable(m))
        return {
          s: 'void',
          code: 'manifest-inapplicable',
          message: 'the manifest was published by no publisher',
        }
      return { s: 'valid', electorate: state, eligible, rule }
    }
    const next = applyAction(state, action)
    if (!next.ok) return { s: 'void', code: next.code, message: next.message }
    return { s: 'valid', electorate: state, eligible, rule, next: next.state }
  }

  private finalPassed(p: Verified<'proposal'>): boolean {
    if (this.evalOf(p).s !== 'valid') return false
    const f = this.finality(p)
    if (f.anchored !== undefined) return f.anchored === 'final-passed' || f.anchored === 'superseded'
    return (
      f.final &&
      !f.conflicted &&
      f.outcome === 'passed' &&
      (p.record.body.action.type !== 'ratify-model' || f.weightsVerified === true)
    )
  }

  /** The earliest (closesAt, CID) final-passed governance proposal on a basis. */
  private successorOf(basisKey: string): Verified<'proposal'> | undefined {
    const hit = this.successors.get(basisKey)
    if (hit !== undefined) return hit ?? undefined
    let best: Verified<'proposal'> | undefined
    for (const q of this.governanceByBasis.get(basisKey) ?? []) {
      if ((!best || earlierClose(q, best)) && this.finalPassed(q)) best = q
    }
    this.successors.set(basisKey, best ?? null)
    return best
  }

  private isChainDecision(p: Verified<'proposal'>): boolean {
    return isGovernance(p) && this.finalPassed(p) && this.successorOf(cidKey(p.record.body.basis)) === p
  }

  private finality(p: Verified<'proposal'>): Finality {
    const key = p.key
    const hit = this.finals.get(key)
    if (hit) return hit
    const ev = this.evalOf(p)
    const seals = this.sealsByProposal.get(key) ?? []
    let fin: Finality
    if (ev.s !== 'valid') {
      const report =
        ev.s === 'pending'
          ? pending('proposal-pending', 'the sealed proposal is pending')
          : inapplicable('proposal-void', 'the sealed proposal is void')
      fin = {
        final: false,
        conflicted: false,
        equivocators: [],
        verdicts: seals.map((seal) => ({ seal, report })),
      }
    } else {
      fin = this.settle(p, ev, seals)
    }
    const a = this.anchor
    if (a && p.record.body.closesAt <= a.epoch) {
      const label = a.labels.get(key) ?? null
      fin = { ...fin, final: label !== null, conflicted: label === 'conflicted', anchored: label }
    }
    this.finals.set(key, fin)
    return fin
  }

  // ------------------------------------------------------------ checkpoints

  /**
   * state(head) of a checkpoint: the chain from the genesis to `head` through
   * proposals its own list names final-passed, where every step is checked
   * against the state the previous step left — a voter proposed it within the
   * rules, its action leaves a well-formed state, and its own seals by t
   * stewards of that state agree on passed. The seals make the chain; the
   * list only picks which sealed chain the checkpoint vouches for, so a
   * checkpoint cannot make its own signers stewards.
   */
  private stateFromList(head: CID, labels: ReadonlyMap<string, Phase>): GovState | 'pending' | undefined {
    const path: Verified<'proposal'>[] = []
    let cur = cidKey(head)
    while (cur !== this.genesisKey) {
      const p = this.proposals.get(cur)
      if (!p) {
        this.waiting.add(cur)
        return 'pending'
      }
      if (!isGovernance(p) || labels.get(cur) !== 'final-passed' || path.length > this.proposals.size) {
        return undefined
      }
      path.push(p)
      cur = cidKey(p.record.body.basis)
    }
    // The path is fixed by the head, so its replay is too: many checkpoints naming one head replay it once.
    const headKey = cidKey(head)
    if (this.replayed.has(headKey)) return this.replayed.get(headKey)
    const state = this.replay(path.reverse())
    this.replayed.set(headKey, state)
    return state
  }

  /** Forward from the genesis along `path`, every step checked against the state before it. */
  private replay(path: readonly Verified<'proposal'>[]): GovState | undefined {
    let state = this.genesisGov
    let prevClose = Number.NEGATIVE_INFINITY
    for (const p of path) {
      const { at, author } = p.record
      const body = p.record.body
      if (
        prevClose >= at ||
        !hasRole(state, author, 'voter') ||
        body.closesAt - at < state.rules.votingPeriodMs
      ) {
        return undefined
      }
      const next = applyAction(state, body.action)
      if (!next.ok) return undefined
      const ev = {
        s: 'valid' as const,
        electorate: state,
        eligible: eligibleWeight(state),
        rule: ruleFor(state.rules, body.action.type),
        next: next.state,
      }
      const sealed = this.settle(p, ev, this.sealsByProposal.get(p.key) ?? [])
      if (!sealed.final || sealed.conflicted || sealed.outcome !== 'passed') return undefined
      state = next.state
      prevClose = body.closesAt
    }
    return state
  }

  /** Counts checkpoints (SPEC.md §11.2) and picks the newest counted one. */
  private computeAnchor(): void {
    this.checkpointGroups = new Map()
    this.contentsByAuthorEpoch = new Map()
    this.replayed = new Map()
    this.equivocatorSet = new Set()
    for (const c of this.checkpoints.values()) this.placeCheckpoint(c)
    let best: CheckpointGroup | undefined
    for (const g of this.checkpointGroups.values()) {
      if (counts(g) && (!best || newer(g, { ...best, cid: best.smallest!.cid }))) best = g
    }
    this.anchor = best && anchorOf(best)
    this.checkpointEquivocators = [...this.equivocatorSet].sort()
  }

  /**
   * A checkpoint added to a fold with nothing to derive: O(1) unless its content is new (then
   * its list and head are read once). Everything is derived again only when its group counts
   * and is newer than the newest counted checkpoint; a new signer of that checkpoint only
   * changes its view.
   */
  private addCheckpoint(c: Verified<'checkpoint'>): void {
    const equivocators = this.equivocatorSet.size
    const g = this.placeCheckpoint(c)
    if (this.equivocatorSet.size !== equivocators) {
      this.checkpointEquivocators = [...this.equivocatorSet].sort()
      this.patchView({ checkpointEquivocators: this.checkpointEquivocators })
    }
    if (!g || !counts(g)) return
    const a = this.anchor
    if (a?.content === g.content) {
      if (g.smallest !== a.checkpoint || g.signers.size !== a.signers.length) {
        this.anchor = anchorOf(g)
        this.patchView({ checkpoint: this.checkpointView(this.anchor) })
      }
    } else if (!a || newer(g, { ...a, cid: a.checkpoint.cid })) {
      // A new newest counted checkpoint: what it covers is decided by its list from now on.
      this.dirty = true
      this.view = undefined
    }
  }

  /** Files a checkpoint in its group and reports it (SPEC.md §11.2); undefined while its list is missing. */
  private placeCheckpoint(c: Verified<'checkpoint'>): CheckpointGroup | undefined {
    if (!c.finalized) {
      this.reports.set(
        c.key,
        pending('checkpoint-list-pending', 'the blocks of the finalized list are not here yet'),
      )
      return undefined
    }
    const content = contentOf(c)
    const author = c.record.author
    const authorEpoch = `${author}|${c.record.body.epoch}`
    const contents = this.contentsByAuthorEpoch.get(authorEpoch)
    if (!contents) this.contentsByAuthorEpoch.set(authorEpoch, new Set([content]))
    else if (!contents.has(content)) {
      contents.add(content)
      this.equivocatorSet.add(author)
    }
    let g = this.checkpointGroups.get(content)
    if (!g) {
      g = this.checkpointGroup(content, c)
      this.checkpointGroups.set(content, g)
    }
    let report = g.failure
    if (!report) {
      if (hasRole(g.state!, author, 'steward')) {
        report = APPLIED
        g.signers.add(author)
        if (!g.smallest || compareCids(c.cid, g.smallest.cid) < 0) g.smallest = c
      } else {
        report = inapplicable('checkpoint-not-steward', 'only stewards of state(head) sign checkpoints')
      }
    }
    this.reports.set(c.key, report)
    return g
  }

  /** A group for a content not seen before: its labels and head state, from its first checkpoint. */
  private checkpointGroup(content: string, first: Verified<'checkpoint'>): CheckpointGroup {
    const b = first.record.body
    const list = first.finalized!
    const labels = new Map(list.map(([cid, label]) => [cidKey(cid), label as Phase]))
    const group = { content, height: b.height, epoch: b.epoch, labels, signers: new Set<Did>() }
    if (list.some(([, label]) => !DECIDED_PHASES.has(label))) {
      const failure = inapplicable(
        'checkpoint-label',
        'the finalized list holds a label that is not a decided phase',
      )
      return { ...group, failure }
    }
    const state = this.stateFromList(b.head, labels)
    if (state === 'pending') {
      return {
        ...group,
        failure: pending('basis-unknown', 'the checkpoint head or its chain is not known yet'),
      }
    }
    if (!state || state.height !== b.height) {
      const failure = inapplicable(
        'checkpoint-head',
        'the checkpoint head is not reached by a chain of sealed decisions its list names',
      )
      return { ...group, failure }
    }
    return { ...group, state }
  }

  private patchView(fields: Partial<FederationState>): void {
    if (this.view) this.view = Object.freeze({ ...this.view, ...fields })
  }

  /** Finality by agreeing seals (SPEC.md §8.5). */
  private settle(
    p: Verified<'proposal'>,
    ev: Extract<Eval, { s: 'valid' }>,
    seals: Verified<'seal'>[],
  ): Finality {
    const t = ev.electorate.rules.sealThreshold
    const verdicts: SealVerdict[] = []
    const groups = new Map<string, { stewards: Set<Did>; best: Verified<'seal'> }>()
    const contentBySteward = new Map<Did, Set<string>>()
    for (const seal of seals) {
      const report = this.sealReport(p, ev, seal)
      verdicts.push({ seal, report })
      if (report.status !== 'applied') continue
      const b = seal.record.body
      const steward = seal.record.author
      const group = `${b.outcome}|${b.weightsVerified ?? '-'}`
      const g = groups.get(group)
      if (!g) groups.set(group, { stewards: new Set([steward]), best: seal })
      else {
        g.stewards.add(steward)
        if (compareCids(seal.cid, g.best.cid) < 0) g.best = seal
      }
      const content = `${cidKey(b.votes.root)}|${cidKey(b.attestations.root)}|${b.tally.yes},${b.tally.no},${b.tally.abstain}|${group}`
      const set = contentBySteward.get(steward)
      if (set) set.add(content)
      else contentBySteward.set(steward, new Set([content]))
    }
    const equivocators = [...contentBySteward]
      .filter(([, c]) => c.size > 1)
      .map(([s]) => s)
      .sort()
    const reached = [...groups.values()].filter((g) => g.stewards.size >= t)
    if (reached.length === 0) return { final: false, conflicted: false, equivocators, verdicts }
    if (reached.length > 1) return { final: true, conflicted: true, equivocators, verdicts }
    const best = reached[0]!.best
    return {
      final: true,
      conflicted: false,
      outcome: best.record.body.outcome,
      weightsVerified: best.record.body.weightsVerified,
      decidedBy: best,
      equivocators,
      verdicts,
    }
  }

  /** Whether one seal counts for `p`, recomputed from its own lists. */
  private sealReport(
    p: Verified<'proposal'>,
    ev: Extract<Eval, { s: 'valid' }>,
    seal: Verified<'seal'>,
  ): RecordReport {
    const { author, at } = seal.record
    const body = seal.record.body
    const { closesAt, action } = p.record.body
    const rules = ev.electorate.rules
    if (!hasRole(ev.electorate, author, 'steward'))
      return inapplicable('seal-not-steward', 'only stewards of the electorate seal')
    if (at < closesAt + rules.sealGraceMs || at > closesAt + rules.sealDeadlineMs) {
      return inapplicable(
        'seal-window',
        'the seal is signed outside [closesAt + sealGraceMs, closesAt + sealDeadlineMs]',
      )
    }
    const ratify = action.type === 'ratify-model'
    if (ratify !== (body.weightsVerified !== undefined)) {
      return inapplicable(
        'seal-weights-field',
        'weightsVerified is present exactly on seals of ratify proposals',
      )
    }
    const lists = seal.lists
    if (!lists) return pending('seal-list-pending', 'the blocks of the seal lists are not here yet')
    const tally = { yes: 0, no: 0, abstain: 0 }
    const voters = new Set<Did>()
    let missing: RecordReport | undefined
    for (const vc of lists.votes) {
      const r = this.all.get(cidKey(vc))
      if (!r) {
        this.waiting.add(cidKey(vc))
        missing ??= pending('record-unknown', 'a vote the seal names is not known yet')
        continue
      }
      if (r.record.kind !== 'vote')
        return inapplicable('seal-vote-invalid', 'the seal names a record that is not a vote')
      const v = r as Verified<'vote'>
      if (!v.record.body.proposal.equals(p.cid))
        return inapplicable('seal-vote-invalid', 'the seal names a vote on another proposal')
      const problem = this.voteProblem(v, p, ev)
      if (problem)
        return inapplicable(
          'seal-vote-invalid',
          `the seal names a vote that does not count: ${problem.message}`,
        )
      if (voters.has(v.record.author))
        return inapplicable('seal-voter-twice', 'the seal names two votes of one voter')
      voters.add(v.record.author)
      tally[v.record.body.choice] += ev.electorate.members.get(v.record.author)!.weight
    }
    let passes: Map<string, number> | undefined
    if (ratify) {
      passes = new Map()
      const seen = new Set<string>()
      for (const ac of lists.attestations) {
        const r = this.all.get(cidKey(ac))
        if (!r) {
          this.waiting.add(cidKey(ac))
          missing ??= pending('record-unknown', 'an attestation the seal names is not known yet')
          continue
        }
        if (r.record.kind !== 'attestation')
          return inapplicable(
            'seal-attestation-invalid',
            'the seal names a record that is not an attestation',
          )
        const a = r as Verified<'attestation'>
        const ab = a.record.body
        if (!ab.subject.equals(action.manifest))
          return inapplicable('seal-attestation-invalid', 'the seal names an attestation of another manifest')
        if (a.record.at > closesAt)
          return inapplicable('seal-attestation-invalid', 'the seal names an attestation signed after close')
        if (!hasRole(ev.electorate, a.record.author, 'auditor')) {
          return inapplicable(
            'seal-attestation-invalid',
            'the seal names an attestation by someone not an auditor of the electorate',
          )
        }
        const slot = `${a.record.author}|${ab.kind}`
        if (seen.has(slot))
          return inapplicable('seal-auditor-twice', 'the seal names two attestations of one auditor and kind')
        seen.add(slot)
        if (ab.result === 'pass') passes.set(ab.kind, (passes.get(ab.kind) ?? 0) + 1)
      }
    } else if (lists.attestations.length > 0) {
      return inapplicable('seal-attestation-invalid', 'only seals of ratify proposals name attestations')
    }
    if (missing) return missing
    if (!sameTally(tally, body.tally))
      return inapplicable('seal-tally-mismatch', 'the tally does not match the votes the seal names')
    if (outcomeOf(tally, ev.eligible, ev.rule, passes) !== body.outcome) {
      return inapplicable(
        'seal-outcome-mismatch',
        'the outcome does not follow from the votes and attestations the seal names',
      )
    }
    return APPLIED
  }

  private voteProblem(
    v: Verified<'vote'>,
    p: Verified<'proposal'>,
    ev: Extract<Eval, { s: 'valid' }>,
  ): Inapplicable | undefined {
    if (!hasRole(ev.electorate, v.record.author, 'voter'))
      return inapplicable('vote-not-eligible', 'the author is not a voter of the electorate')
    if (v.record.at < p.record.at || v.record.at > p.record.body.closesAt) {
      return inapplicable('vote-window', 'the vote is signed outside [proposal at, closesAt]')
    }
    return undefined
  }

  private voteReport(v: Verified<'vote'>): RecordReport {
    const p = this.proposals.get(cidKey(v.record.body.proposal))
    if (!p) return pending('proposal-unknown', 'the proposal is not known yet')
    const ev = this.evalOf(p)
    if (ev.s === 'pending') return pending('proposal-pending', 'the proposal is pending')
    if (ev.s === 'void') return inapplicable('proposal-void', 'the proposal is void')
    return this.voteProblem(v, p, ev) ?? APPLIED
  }

  /** The states of the chain: the genesis and every chain decision. */
  private chainStates(): GovState[] {
    const out = [this.genesisGov]
    for (const list of this.governanceByBasis.values()) {
      for (const g of list) {
        if (this.isChainDecision(g)) out.push((this.evalOf(g) as Extract<Eval, { s: 'valid' }>).next!)
      }
    }
    return out
  }

  private roleEver(role: 'publisher' | 'auditor'): Set<Did> {
    const cached = role === 'publisher' ? this.publishersEver : this.auditorsEver
    if (cached) return cached
    const set = new Set<Did>()
    for (const s of this.chainStates())
      for (const m of s.members.values()) if (m.roles.includes(role)) set.add(m.id)
    if (role === 'publisher') this.publishersEver = set
    else this.auditorsEver = set
    return set
  }

  private manifestReport(m: Verified<'manifest'>): RecordReport {
    return this.manifestApplicable(m)
      ? APPLIED
      : inapplicable('author-role', 'the author is a publisher in no governance state')
  }

  private manifestApplicable(m: Verified<'manifest'>): boolean {
    return this.roleEver('publisher').has(m.record.author)
  }

  private attestationReport(a: Verified<'attestation'>): RecordReport {
    if (!this.roleEver('auditor').has(a.record.author))
      return inapplicable('author-role', 'the author is an auditor in no governance state')
    const m = this.manifests.get(cidKey(a.record.body.subject))
    if (!m) return pending('manifest-unknown', 'the manifest is not known yet')
    if (!this.manifestApplicable(m))
      return inapplicable('manifest-inapplicable', 'the manifest was published by no publisher')
    return APPLIED
  }

  // ------------------------------------------------------------ reads

  report(cid: CID | string): RecordReport | undefined {
    const key = typeof cid === 'string' ? cid : cidKey(cid)
    if (key === this.genesis.key) return APPLIED
    if (!this.all.has(key)) return undefined
    this.derive()
    return this.reports.get(key)
  }

  electorate(proposal: CID): GovState | undefined {
    this.derive()
    const p = this.proposals.get(cidKey(proposal))
    if (!p) return undefined
    const ev = this.evalOf(p)
    return ev.s === 'valid' ? ev.electorate : undefined
  }

  countedVotes(proposal: CID, admit?: (vote: AnyVerified) => boolean): CID[] {
    this.derive()
    const pKey = cidKey(proposal)
    if (!admit) {
      const l = this.live.get(pKey)
      return l ? [...l.latest.values()].map((v) => v.cid).sort(byCid) : []
    }
    const latest = new Map<Did, Verified<'vote'>>()
    for (const v of this.votesByProposal.get(pKey) ?? []) {
      if (this.reports.get(v.key)?.status !== 'applied' || !admit(v)) continue
      const prev = latest.get(v.record.author)
      if (!prev || later(v, prev)) latest.set(v.record.author, v)
    }
    return [...latest.values()].map((v) => v.cid).sort(byCid)
  }

  countedAttestations(proposal: CID, admit?: (attestation: AnyVerified) => boolean): CID[] {
    this.derive()
    const p = this.proposals.get(cidKey(proposal))
    if (p?.record.body.action.type !== 'ratify-model') return []
    const ev = this.evalOf(p)
    if (ev.s !== 'valid') return []
    const latest = new Map<string, Verified<'attestation'>>()
    for (const a of this.attestationsBySubject.get(cidKey(p.record.body.action.manifest)) ?? []) {
      if (a.record.at > p.record.body.closesAt || !hasRole(ev.electorate, a.record.author, 'auditor'))
        continue
      if (admit && !admit(a)) continue
      const slot = `${a.record.author}|${a.record.body.kind}`
      const prev = latest.get(slot)
      if (!prev || later(a, prev)) latest.set(slot, a)
    }
    return [...latest.values()].map((a) => a.cid).sort(byCid)
  }

  headState(): GovState {
    this.derive()
    let key = this.genesisKey
    let state = this.genesisGov
    for (;;) {
      const next = this.successorOf(key)
      if (!next) return state
      state = (this.evalOf(next) as Extract<Eval, { s: 'valid' }>).next!
      key = next.key
    }
  }

  state(): FederationState {
    this.derive()
    if (this.view && (this.staleViews.size > 0 || this.view.recordCount !== this.all.size)) {
      // Only live tallies moved (and records were added that change nothing else): replace
      // those proposals' views, keep everything else.
      const proposals = new Map(this.view.proposals)
      for (const key of this.staleViews) proposals.set(key, this.proposalView(this.proposals.get(key)!))
      this.staleViews.clear()
      this.view = Object.freeze({ ...this.view, proposals, recordCount: this.all.size })
    }
    if (this.view) return this.view
    this.staleViews.clear()
    // Head.
    let headKey = this.genesisKey
    let head: CID = this.federation
    let headGov = this.genesisGov
    for (;;) {
      const next = this.successorOf(headKey)
      if (!next) break
      headGov = (this.evalOf(next) as Extract<Eval, { s: 'valid' }>).next!
      headKey = next.key
      head = next.cid
    }
    // Proposals.
    const proposals = new Map<string, ProposalView>()
    const ratifiedBy = new Map<string, CID[]>()
    const revokedBy = new Map<string, CID[]>()
    for (const [key, p] of this.proposals) {
      const view = this.proposalView(p)
      proposals.set(key, view)
      if (view.phase === 'final-passed') {
        const a = p.record.body.action
        if (a.type === 'ratify-model') push(ratifiedBy, cidKey(a.manifest), p.cid)
        if (a.type === 'revoke-model') push(revokedBy, cidKey(a.manifest), p.cid)
      }
    }
    // Manifests and models.
    const manifests = new Map<string, ManifestView>()
    const byVersion = new Map<string, ManifestView[]>()
    for (const [key, m] of this.manifests) {
      if (!this.manifestApplicable(m)) continue
      const rat = (ratifiedBy.get(key) ?? []).sort(byCid)
      const rev = (revokedBy.get(key) ?? []).sort(byCid)
      const b = m.record.body
      const view: ManifestView = Object.freeze({
        cid: m.cid,
        author: m.record.author,
        name: b.name,
        version: b.version,
        ...(b.base ? { base: b.base } : {}),
        status: rev.length > 0 ? 'revoked' : rat.length > 0 ? 'ratified' : 'proposed',
        ratifiedBy: rat,
        revokedBy: rev,
      })
      manifests.set(key, view)
      push(byVersion, `${b.name}@${b.version}`, view)
    }
    const models = new Map<string, ModelView>()
    for (const [key, list] of byVersion) {
      list.sort((a, b) => compareCids(a.cid, b.cid))
      const live = list.filter((m) => m.status === 'ratified')
      let model: ModelView
      const base = { key, manifests: list.map((m) => m.cid) }
      if (live.length === 1)
        model = { ...base, status: 'ratified', manifest: live[0]!.cid, decision: live[0]!.ratifiedBy[0]! }
      else if (live.length > 1) model = { ...base, status: 'conflicted' }
      else if (list.every((m) => m.status === 'revoked'))
        model = { ...base, status: 'revoked', decision: list[0]!.revokedBy[0]! }
      else model = { ...base, status: 'proposed' }
      models.set(key, Object.freeze(model))
    }
    const members = [...headGov.members.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    this.view = Object.freeze({
      federation: this.federation,
      genesis: this.genesis,
      head,
      height: headGov.height,
      members,
      rules: headGov.rules,
      proposals,
      manifests,
      models,
      recordCount: this.all.size,
      ...(this.anchor ? { checkpoint: this.checkpointView(this.anchor) } : {}),
      checkpointEquivocators: this.checkpointEquivocators,
    })
    return this.view
  }

  private checkpointView(a: Anchor): CheckpointView {
    const b = a.checkpoint.record.body
    return Object.freeze({
      cid: a.checkpoint.cid,
      epoch: b.epoch,
      height: b.height,
      head: b.head,
      stateRoot: b.stateRoot,
      signers: a.signers,
      rules: a.rules,
    })
  }

  private proposalView(p: Verified<'proposal'>): ProposalView {
    const b = p.record.body
    const base = {
      cid: p.cid,
      author: p.record.author,
      at: p.record.at,
      closesAt: b.closesAt,
      basis: b.basis,
      action: b.action,
      title: b.title,
      governance: isGovernance(p),
    }
    const ev = this.evalOf(p)
    if (ev.s !== 'valid') {
      return Object.freeze({
        ...base,
        phase: ev.s,
        reason: { code: ev.code, message: ev.message },
        tally: EMPTY_TALLY,
        eligible: 0,
        equivocators: [],
        confirmed: false,
      })
    }
    const fin = this.finality(p)
    const liveTally = this.live.get(p.key)?.tally ?? EMPTY_TALLY
    const common = {
      ...base,
      eligible: ev.eligible,
      equivocators: fin.equivocators,
      rules: ev.electorate.rules,
    }
    // What the seals alone decide (the agreeing seal with the smallest CID).
    const s = fin.decidedBy
    let sealed: Phase | undefined
    if (s) {
      const o = s.record.body.outcome
      if (o === 'no-quorum') sealed = 'final-no-quorum'
      else if (o === 'rejected') sealed = 'final-rejected'
      else if (b.action.type === 'ratify-model' && s.record.body.weightsVerified !== true)
        sealed = 'final-rejected'
      else if (base.governance && !this.isChainDecision(p)) sealed = 'superseded'
      else sealed = 'final-passed'
    }
    const covered = fin.anchored !== undefined
    let phase: Phase
    if (covered) phase = fin.anchored ?? 'undecided'
    else if (!fin.final) phase = 'undecided'
    else if (fin.conflicted) phase = 'conflicted'
    else phase = sealed!
    if (!s || sealed !== phase)
      return Object.freeze({ ...common, phase, confirmed: covered, tally: liveTally })
    return Object.freeze({
      ...common,
      phase,
      confirmed: covered,
      tally: s.record.body.tally,
      outcome: s.record.body.outcome,
      ...(s.record.body.weightsVerified !== undefined
        ? { weightsVerified: s.record.body.weightsVerified }
        : {}),
      decidedBy: s.cid,
    })
  }
}

// ---------------------------------------------------------------- entry points

export function createFold(genesis: Verified<'genesis'>): Fold {
  return new FoldImpl(genesis)
}

/**
 * How many times `acc` has derived everything again from its records. For tests and benchmarks of
 * the incremental paths (a record that changes nothing derived must not move it); not a rule.
 */
export function derivationsOf(acc: Fold): number {
  return acc instanceof FoldImpl ? acc.derivations : 0
}

/** The state of a record set. Records of other federations are ignored. */
export function fold(genesis: Verified<'genesis'>, records: Iterable<AnyVerified>): FederationState {
  const f = createFold(genesis)
  for (const r of records) f.add(r)
  return f.state()
}

/** Adds one record to an accumulator and returns the new state (the incremental path nodes use). */
export function apply(acc: Fold, record: AnyVerified): FederationState {
  acc.add(record)
  return acc.state()
}

/** A proposal's status at time `now` (display only; the phase itself never depends on a clock). */
export function proposalStatus(p: ProposalView, now: number): ProposalStatus {
  if (p.phase !== 'undecided') return p.phase
  if (now <= p.closesAt) return 'open'
  if (now <= p.closesAt + (p.rules?.sealDeadlineMs ?? 0)) return 'closed-awaiting-seals'
  return 'expired'
}
