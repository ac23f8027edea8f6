/**
 * The fold (SPEC.md §8): from a set of verified records to the federation state. Pure and
 * deterministic: no clock (`now` is only a parameter of `proposalStatus`), no I/O, integers
 * everywhere an outcome is decided. The state depends only on the *set* of records added, never
 * on their order or on duplicates (test/unit/protocol/fold/fold.property.test.ts). Invalid records never get
 * here (`Verified` values only); a record of another federation is refused by `add`.
 *
 * One module per part of the spec:
 * - reports.ts (§8.1); chain.ts (§8.2); evaluation.ts (§8.3); votes.ts, counted.ts (§8.4);
 *   seals.ts, finality.ts (§8.5); manifests.ts (§8.7); checkpoints.ts (§11.2, §11.3);
 *   views.ts, state.ts: what a reader sees (§8.5's phases, §8.6–§8.8)
 * - they read the record set through reader.ts and return what they wait on; accumulator.ts
 *   (with its indexes, indexes.ts, and its memo tables, derived.ts) is the only writer, and
 *   queries.ts answers the `Fold` interface from it
 * What adding a record costs, and why: docs/adr/0009-fold-rules-return-what-they-await.md; what a
 * certificate's fold takes on trust (its options): docs/adr/0022-fold-options-for-certificates.md.
 */
import type { AnyVerified, Verified } from '../record.js'
import { FoldImpl } from './queries.js'
import type { FederationState, Fold, FoldOptions } from './types.js'

export { DECIDED_PHASES } from './checkpoints.js'
export type {
  CheckpointView,
  FederationState,
  Fold,
  FoldOptions,
  ManifestView,
  ModelStatus,
  ModelView,
  Phase,
  ProposalStatus,
  ProposalView,
  RecordReport,
} from './types.js'
export { proposalStatus } from './views.js'

/** An empty accumulator; `options` only for certificates (docs/adr/0022), never for a node. */
export function createFold(genesis: Verified<'genesis'>, options?: FoldOptions): Fold {
  return new FoldImpl(genesis, options)
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
