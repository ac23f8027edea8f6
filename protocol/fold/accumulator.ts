/**
 * The accumulator (SPEC.md §8): files each record in the indexes (indexes.ts) and keeps what is
 * derived from them (derived.ts), either by deriving everything again on the next read or, where
 * a record changes little, by a cheap path that updates only what hangs on it (ADR 0004, ADR
 * 0009). The only writer of the memo tables, the reports, the live tallies and what verdicts wait
 * for: rule functions read through `FoldReader` and return what they wait on, and this class
 * files it.
 */
import type { CID } from 'multiformats/cid'
import { cidKey, compareCids } from '../cid.js'
import type { Did } from '../did.js'
import { type GovState, genesisState } from '../govstate.js'
import type { AnyVerified, Verified } from '../record.js'
import { federationIdOf } from '../signing.js'
import { EMPTY_TALLY } from '../tally.js'
import type { Tally } from '../types.js'
import { chainStates, earliestFinalPassed, holdersIn, isGovernance } from './chain.js'
import {
  type Anchor,
  anchorChange,
  anchorOf,
  type CheckpointGroup,
  checkpointContent,
  headPath,
  newestCounted,
  openGroup,
  replayChain,
  signatureReport,
} from './checkpoints.js'
import { Derived, IN_PROGRESS } from './derived.js'
import { BASIS_CYCLE, type Evaluation, evaluateProposal, type ValidEvaluation } from './evaluation.js'
import { decideFinality, type Finality } from './finality.js'
import { RecordIndexes } from './indexes.js'
import { attestationReport, manifestReport } from './manifests.js'
import type { Awaits, ChainStart, FoldReader } from './reader.js'
import { evaluationReport, pending } from './reports.js'
import { uncountedSeal } from './seals.js'
import { federationState } from './state.js'
import type { FederationState, FoldOptions, Phase, RecordReport } from './types.js'
import { reportIfFuture } from './versions.js'
import { checkpointView, proposalView } from './views.js'
import { later, voteReport } from './votes.js'

export class Accumulator implements FoldReader {
  readonly federation: CID
  readonly genesis: Verified<'genesis'>
  readonly genesisKey: string
  readonly genesisState: GovState
  readonly chainStart: ChainStart
  readonly declaredGovernanceSeals: boolean
  readonly indexes: RecordIndexes

  get anchor(): Anchor | undefined {
    return this.derived.anchor
  }

  /** Rebuilt by `derive` when `dirty`, kept current by the cheap paths of `add`. */
  private derived = new Derived()
  private dirty = true
  private cachedState: FederationState | undefined
  /** Proposals whose live tally changed since `cachedState` was built (the cheap vote path). */
  private readonly staleProposalViews = new Set<string>()
  /** How many times everything was derived again (read by tests and the benchmark). */
  derivations = 0

  constructor(genesis: Verified<'genesis'>, options: FoldOptions = {}) {
    this.genesis = genesis
    this.federation = federationIdOf(genesis.record)
    this.genesisKey = cidKey(this.federation)
    this.genesisState = genesisState(genesis.record.body.members, genesis.record.body.rules)
    const anchor = options.anchor
    this.chainStart = anchor
      ? { head: anchor.head, key: cidKey(anchor.head), state: anchor.state }
      : { head: this.federation, key: this.genesisKey, state: this.genesisState }
    this.declaredGovernanceSeals = options.declaredGovernanceSeals === true
    this.indexes = new RecordIndexes(genesis)
  }

  // ------------------------------------------------------------ adding records

  add(record: AnyVerified): boolean {
    const key = record.key
    const held = this.indexes.recordsByKey.get(key)
    if (held) {
      // The same seal or checkpoint again, now with its lists read: keep the richer copy.
      if ((record.lists && !held.lists) || (record.finalized && !held.finalized)) this.upgrade(held, record)
      return true
    }
    if (record.record.kind === 'genesis') return false
    if (!record.record.federation!.equals(this.federation)) return false
    this.indexes.insert(record)
    if (!this.addedCheaply(record)) this.invalidate()
    return true
  }

  /** Everything derived must be derived again on the next read. */
  private invalidate(): void {
    this.dirty = true
    this.cachedState = undefined
  }

  /**
   * Whether a new record under `key` leaves everything derived so far as it is, but for what
   * hangs on the record itself: nothing is to be re-derived anyway, and no seal, basis,
   * subject or checkpoint chain waits for this CID.
   */
  private isolated(key: string): boolean {
    return (
      !this.dirty && !this.derived.awaitedRecords.has(key) && !this.derived.proposalsAwaitingManifest.has(key)
    )
  }

  /** Takes the cheap path of a new record where there is one; false when everything must be derived again. */
  private addedCheaply(record: AnyVerified): boolean {
    const key = record.key
    switch (record.record.kind) {
      case 'vote':
        return this.addVote(record as Verified<'vote'>)
      case 'proposal': {
        const proposal = record as Verified<'proposal'>
        return !isGovernance(proposal) && this.isolated(key) && this.addDecision(proposal)
      }
      case 'seal':
        return this.isolated(key) && this.addUncountedSeal(record as Verified<'seal'>)
      case 'manifest':
        return this.addManifest(record as Verified<'manifest'>)
      case 'attestation':
        // Counted attestations are read on demand; nothing derived holds them.
        if (!this.isolated(key)) return false
        this.derived.reportsByKey.set(key, attestationReport(record as Verified<'attestation'>, this))
        return true
      case 'checkpoint':
        if (!this.isolated(key)) return false
        this.addCheckpoint(record as Verified<'checkpoint'>)
        return true
      // ---- future records (SPEC.md §5.1, Versions; docs/adr/0023) ----
      // Held and reported `version-unsupported` (reportOf, versions.ts), counted nowhere: only what
      // waits for this CID (a basis, a subject, a record a seal names) is derived again.
      case 'future':
        return this.isolated(key)
      // ---- end of future records ----
    }
    return false
  }

  /** A vote changes nothing but its own report and its proposal's live tally, unless something waits for it. */
  private addVote(vote: Verified<'vote'>): boolean {
    if (!this.isolated(vote.key)) return false
    const report = voteReport(vote, this)
    this.derived.reportsByKey.set(vote.key, report)
    if (report.status === 'applied') {
      const proposalKey = cidKey(vote.record.body.proposal)
      this.countLive(proposalKey, vote)
      this.staleProposalViews.add(proposalKey)
    }
    return true
  }

  /**
   * A ratify or revoke proposal outside the governance chain: only its own verdict and the
   * votes that came before it change (its seals, had any come, would be waiting for it).
   */
  private addDecision(proposal: Verified<'proposal'>): boolean {
    const key = proposal.key
    // Evaluated before (when its manifest was missing): start it afresh.
    this.derived.evaluations.delete(key)
    this.derived.finalities.delete(key)
    this.derived.liveTallies.delete(key)
    this.fileProposal(proposal)
    for (const vote of this.indexes.votesByProposal.get(key) ?? []) this.fileVote(vote)
    this.cachedState = undefined
    return true
  }

  /** A seal that does not count changes nothing but its own report (ADR 0004). */
  private addUncountedSeal(seal: Verified<'seal'>): boolean {
    const check = uncountedSeal(seal, this)
    if (!check) return false
    this.awaitAll(check.awaits)
    this.derived.reportsByKey.set(seal.key, check.report)
    return true
  }

  /**
   * Attestations do not wait in `awaitedRecords` for their subject: look for them here.
   * Proposals waiting for this manifest are evaluated again, alone.
   */
  private addManifest(manifest: Verified<'manifest'>): boolean {
    const key = manifest.key
    if (this.dirty || this.derived.awaitedRecords.has(key) || this.indexes.attestationsBySubject.has(key))
      return false
    this.derived.reportsByKey.set(key, manifestReport(manifest, this))
    const waiters = this.derived.proposalsAwaitingManifest.get(key)
    this.derived.proposalsAwaitingManifest.delete(key)
    for (const proposalKey of waiters ?? []) this.addDecision(this.indexes.proposalsByKey.get(proposalKey)!)
    this.cachedState = undefined
    return true
  }

  private upgrade(held: AnyVerified, richer: AnyVerified): void {
    this.indexes.replace(held, richer)
    // A checkpoint's list was missing, so it is in no group yet: it joins one now, like a new checkpoint.
    if (richer.record.kind === 'checkpoint' && !this.dirty) {
      this.addCheckpoint(richer as Verified<'checkpoint'>)
      return
    }
    this.invalidate()
  }

  /** Reports a proposal and each of its seals. */
  private fileProposal(proposal: Verified<'proposal'>): void {
    this.derived.reportsByKey.set(proposal.key, evaluationReport(this.evaluationOf(proposal)))
    for (const verdict of this.finalityOf(proposal).verdicts)
      this.derived.reportsByKey.set(verdict.seal.key, verdict.report)
  }

  /** Reports a vote; a valid one joins its proposal's live tally. */
  private fileVote(vote: Verified<'vote'>): void {
    const report = voteReport(vote, this)
    this.derived.reportsByKey.set(vote.key, report)
    if (report.status === 'applied') this.countLive(cidKey(vote.record.body.proposal), vote)
  }

  /** The live tally counts per voter the latest valid vote (SPEC.md §8.4). */
  private countLive(proposalKey: string, vote: Verified<'vote'>): void {
    let live = this.derived.liveTallies.get(proposalKey)
    if (!live) {
      live = { latestByVoter: new Map(), tally: EMPTY_TALLY }
      this.derived.liveTallies.set(proposalKey, live)
    }
    const voter = vote.record.author
    const previous = live.latestByVoter.get(voter)
    if (previous && !later(vote, previous)) return
    const evaluation = this.derived.evaluations.get(proposalKey) as ValidEvaluation
    const weight = evaluation.electorate.members.get(voter)!.weight
    const tally = { ...live.tally }
    if (previous) tally[previous.record.body.choice] -= weight
    tally[vote.record.body.choice] += weight
    live.tally = tally
    live.latestByVoter.set(voter, vote)
  }

  private awaitAll(keys: Awaits): void {
    for (const key of keys) this.derived.awaitedRecords.add(key)
  }

  // ------------------------------------------------------------ derivation

  protected derive(): void {
    if (!this.dirty) return
    this.derivations++
    this.derived = new Derived()
    this.computeAnchor()
    const { reportsByKey, awaitedRecords } = this.derived
    const indexes = this.indexes
    // Settle every proposal (governance first is not needed: evaluation recurses on demand).
    for (const proposal of indexes.proposalsByKey.values()) this.finalityOf(proposal)
    for (const proposal of indexes.proposalsByKey.values()) this.fileProposal(proposal)
    for (const [proposalKey, seals] of indexes.sealsByProposal) {
      if (indexes.proposalsByKey.has(proposalKey)) continue
      for (const seal of seals) {
        reportsByKey.set(seal.key, pending('proposal-unknown', 'the sealed proposal is not known yet'))
        awaitedRecords.add(proposalKey)
      }
    }
    for (const votes of indexes.votesByProposal.values()) for (const vote of votes) this.fileVote(vote)
    for (const [key, manifest] of indexes.manifestsByKey)
      reportsByKey.set(key, manifestReport(manifest, this))
    for (const attestations of indexes.attestationsBySubject.values()) {
      for (const a of attestations) reportsByKey.set(a.key, attestationReport(a, this))
    }
    this.dirty = false
    this.cachedState = undefined
  }

  evaluationOf(proposal: Verified<'proposal'>): Evaluation {
    const key = proposal.key
    const memo = this.derived.evaluations.get(key)
    if (memo === IN_PROGRESS) return BASIS_CYCLE
    if (memo) return memo
    this.derived.evaluations.set(key, IN_PROGRESS)
    const evaluation = evaluateProposal(proposal, this)
    this.derived.evaluations.set(key, evaluation)
    if (evaluation.validity === 'pending') {
      if (evaluation.awaitsRecord !== undefined) this.derived.awaitedRecords.add(evaluation.awaitsRecord)
      if (evaluation.awaitsManifest !== undefined) {
        const waiters = this.derived.proposalsAwaitingManifest.get(evaluation.awaitsManifest)
        if (waiters) waiters.add(key)
        else this.derived.proposalsAwaitingManifest.set(evaluation.awaitsManifest, new Set([key]))
      }
    }
    return evaluation
  }

  finalityOf(proposal: Verified<'proposal'>): Finality {
    const memo = this.derived.finalities.get(proposal.key)
    if (memo) return memo
    const finality = decideFinality(proposal, this)
    this.awaitAll(finality.awaits)
    this.derived.finalities.set(proposal.key, finality)
    return finality
  }

  successorOf(basisKey: string): Verified<'proposal'> | undefined {
    const memo = this.derived.successorByBasis.get(basisKey)
    if (memo !== undefined) return memo ?? undefined
    const successor = earliestFinalPassed(this.indexes.governanceByBasis.get(basisKey), this)
    this.derived.successorByBasis.set(basisKey, successor ?? null)
    return successor
  }

  holdersEver(role: 'publisher' | 'auditor'): ReadonlySet<Did> {
    if (role === 'publisher') return (this.derived.publishersEver ??= holdersIn(chainStates(this), role))
    return (this.derived.auditorsEver ??= holdersIn(chainStates(this), role))
  }

  liveTallyOf(proposalKey: string): Tally {
    return this.derived.liveTallies.get(proposalKey)?.tally ?? EMPTY_TALLY
  }

  liveVotesOf(proposalKey: string): Iterable<Verified<'vote'>> | undefined {
    return this.derived.liveTallies.get(proposalKey)?.latestByVoter.values()
  }

  reportOf(key: string): RecordReport | undefined {
    // Future records (versions.ts): their report depends on nothing derived, so it is not kept.
    return this.derived.reportsByKey.get(key) ?? reportIfFuture(this.indexes.recordsByKey.get(key))
  }

  // ------------------------------------------------------------ checkpoints (SPEC.md §11.2, §11.3)

  private computeAnchor(): void {
    for (const checkpoint of this.indexes.checkpointsByKey.values()) this.placeCheckpoint(checkpoint)
    this.derived.anchor = newestCounted(this.derived.checkpointGroups.values())
    this.derived.checkpointEquivocators = [...this.derived.checkpointEquivocatorSet].sort()
  }

  /**
   * A checkpoint added to a fold with nothing to derive: O(1) unless its content is new (then
   * its list and head are read once). Everything is derived again only when its group counts
   * and is newer than the newest counted checkpoint; a new signer of that checkpoint only
   * changes its view.
   */
  private addCheckpoint(checkpoint: Verified<'checkpoint'>): void {
    const equivocatorsBefore = this.derived.checkpointEquivocatorSet.size
    const group = this.placeCheckpoint(checkpoint)
    if (this.derived.checkpointEquivocatorSet.size !== equivocatorsBefore) {
      this.derived.checkpointEquivocators = [...this.derived.checkpointEquivocatorSet].sort()
      this.patchState({ checkpointEquivocators: this.derived.checkpointEquivocators })
    }
    if (!group) return
    const change = anchorChange(group, this.derived.anchor)
    if (change === 'new-signer') {
      this.derived.anchor = anchorOf(group)
      this.patchState({ checkpoint: checkpointView(this.derived.anchor) })
    } else if (change === 'newer') {
      // A new newest counted checkpoint: what it covers is decided by its list from now on.
      this.invalidate()
    }
  }

  /** Files a checkpoint in its group and reports it; undefined while its list is missing. */
  private placeCheckpoint(checkpoint: Verified<'checkpoint'>): CheckpointGroup | undefined {
    if (!checkpoint.finalized) {
      const report = pending('checkpoint-list-pending', 'the blocks of the finalized list are not here yet')
      this.derived.reportsByKey.set(checkpoint.key, report)
      return undefined
    }
    const content = checkpointContent(checkpoint)
    const author = checkpoint.record.author
    const authorEpoch = `${author}|${checkpoint.record.body.epoch}`
    const contents = this.derived.contentsByAuthorEpoch.get(authorEpoch)
    if (!contents) this.derived.contentsByAuthorEpoch.set(authorEpoch, new Set([content]))
    else if (!contents.has(content)) {
      contents.add(content)
      this.derived.checkpointEquivocatorSet.add(author)
    }
    let group = this.derived.checkpointGroups.get(content)
    if (!group) {
      const opened = openGroup(content, checkpoint, (head, labels) => this.headStateOf(head, labels), this)
      this.awaitAll(opened.awaits)
      group = opened.group
      this.derived.checkpointGroups.set(content, group)
    }
    const report = signatureReport(group, checkpoint)
    if (report.status === 'applied') {
      group.signers.add(author)
      if (!group.smallest || compareCids(checkpoint.cid, group.smallest.cid) < 0) group.smallest = checkpoint
    }
    this.derived.reportsByKey.set(checkpoint.key, report)
    return group
  }

  /** state(head) of a checkpoint under its labels; the replay of one head is shared by every checkpoint naming it. */
  private headStateOf(head: CID, labels: ReadonlyMap<string, Phase>): GovState | 'pending' | undefined {
    const found = headPath(head, labels, this)
    if (!found) return undefined
    if ('awaits' in found) {
      this.derived.awaitedRecords.add(found.awaits)
      return 'pending'
    }
    const headKey = cidKey(head)
    if (this.derived.replayedHeads.has(headKey)) return this.derived.replayedHeads.get(headKey)
    const replayed = replayChain(found.start, found.path, this)
    this.awaitAll(replayed.awaits)
    this.derived.replayedHeads.set(headKey, replayed.state)
    return replayed.state
  }

  private patchState(fields: Partial<FederationState>): void {
    if (this.cachedState) this.cachedState = Object.freeze({ ...this.cachedState, ...fields })
  }

  // ------------------------------------------------------------ the state

  /** Members of some state of the chain. */
  chainMembers(): ReadonlySet<Did> {
    this.derived.chainMembers ??= new Set(chainStates(this).flatMap((state) => [...state.members.keys()]))
    return this.derived.chainMembers
  }

  state(): FederationState {
    this.derive()
    const recordCount = this.indexes.recordsByKey.size
    if (
      this.cachedState &&
      (this.staleProposalViews.size > 0 || this.cachedState.recordCount !== recordCount)
    ) {
      // Only live tallies moved (and records were added that change nothing else): replace
      // those proposals' views, keep everything else.
      const proposals = new Map(this.cachedState.proposals)
      for (const key of this.staleProposalViews)
        proposals.set(key, proposalView(this.indexes.proposalsByKey.get(key)!, this))
      this.staleProposalViews.clear()
      this.cachedState = Object.freeze({ ...this.cachedState, proposals, recordCount })
    }
    if (this.cachedState) return this.cachedState
    this.staleProposalViews.clear()
    this.cachedState = federationState(this, recordCount, this.derived.checkpointEquivocators)
    return this.cachedState
  }
}
