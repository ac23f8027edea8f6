/**
 * Everything a fold derives from its indexes, memoized. A derivation starts from a fresh one,
 * so nothing derived can outlive the record set it came from. Plain data: only the accumulator
 * (accumulator.ts) writes it.
 */
import type { Did } from '../did.js'
import type { GovState } from '../govstate.js'
import type { Verified } from '../record.js'
import type { Anchor, CheckpointGroup } from './checkpoints.js'
import type { Evaluation } from './evaluation.js'
import type { Finality } from './finality.js'
import type { RecordReport } from './types.js'
import type { LiveTally } from './votes.js'

/** Marks a proposal whose evaluation is under way: its basis chain leads back to it. */
export const IN_PROGRESS = Symbol('in-progress')

export class Derived {
  readonly evaluations = new Map<string, Evaluation | typeof IN_PROGRESS>()
  readonly finalities = new Map<string, Finality>()
  /** By basis key; null when the basis has no successor. */
  readonly successorByBasis = new Map<string, Verified<'proposal'> | null>()
  readonly liveTallies = new Map<string, LiveTally>()
  readonly reportsByKey = new Map<string, RecordReport>()
  /** Keys of records not here yet that a verdict waits for: their arrival derives everything again. */
  readonly awaitedRecords = new Set<string>()
  /**
   * Manifests not here yet → the ratify/revoke proposals naming them: when the manifest
   * comes, only those proposals (and their votes) are evaluated again, not everything.
   */
  readonly proposalsAwaitingManifest = new Map<string, Set<string>>()
  /** Members with the role in some state of the chain. */
  publishersEver: Set<Did> | undefined
  auditorsEver: Set<Did> | undefined
  /** Members of some state of the chain. */
  chainMembers: Set<Did> | undefined

  /** The newest counted checkpoint. */
  anchor: Anchor | undefined
  /** Finalized checkpoints by content; kept current by the accumulator's `addCheckpoint`. */
  readonly checkpointGroups = new Map<string, CheckpointGroup>()
  /** `author|epoch` → the contents that author signed for that epoch. */
  readonly contentsByAuthorEpoch = new Map<string, Set<string>>()
  /** state(head) replayed along the chain to each head a checkpoint named. */
  readonly replayedHeads = new Map<string, GovState | undefined>()
  readonly checkpointEquivocatorSet = new Set<Did>()
  /** `checkpointEquivocatorSet`, sorted. */
  checkpointEquivocators: readonly Did[] = []
}
