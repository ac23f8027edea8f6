/**
 * Which pinned weights clean-up lets go (cleanup.ts; docs/adr/0031-scrubbing-and-clean-up.md): an
 * upload that was never ratified — no manifest names it, or no ratification proposal names such a
 * manifest, or every one that does was rejected or expired — once `unratifiedRetentionMs` has run
 * from the latest of: when it was pinned here, its manifests' `at`, its proposals' `closesAt`.
 *
 * Never collected: weights a ratified manifest names (a revoked one's are retention.ts's, after its
 * own delay), and weights a proposal still open, awaiting seals, pending or conflicted names (they
 * wait for its decision). Weights named by two manifests are judged by the one that keeps them.
 * The clock is the node's; the decision is the node's own policy, not the protocol's.
 */
import type { CID } from 'multiformats/cid'
import { type FederationState, type ProposalView, proposalStatus } from '../../protocol/index.js'

/** Why weights are let go. */
export type CollectReason = 'no-manifest' | 'no-proposal' | 'rejected' | 'expired'
/** Why weights are kept. */
export type KeepReason = 'ratified' | 'revoked' | 'pending' | 'retained'

export type CleanupVerdict =
  | { readonly collect: true; readonly why: CollectReason; readonly since: number; readonly dueAt: number }
  | { readonly collect: false; readonly why: KeepReason; readonly dueAt?: number }

/** What the fold says about one root: the manifests naming it, each with its ratification proposals. */
export interface RootStanding {
  readonly manifests: readonly {
    readonly at: number
    readonly status: 'ratified' | 'revoked' | 'proposed'
    readonly proposals: readonly ProposalView[]
  }[]
}

/**
 * Proposal statuses that may still ratify: the weights wait (SPEC.md §15.7's list). A
 * `final-passed` ratification is not among them: it makes its manifest `ratified` (or `revoked`
 * once a revocation passed), which keeps the weights before any proposal is looked at.
 */
const UNDECIDED = new Set(['open', 'closed-awaiting-seals', 'pending', 'conflicted'])

/** The verdict on one pinned root, pinned here at `pinnedAt`, at `now`. */
export function judgeRoot(
  standing: RootStanding,
  pinnedAt: number,
  now: number,
  retentionMs: number,
): CleanupVerdict {
  const { manifests } = standing
  if (manifests.some((m) => m.status === 'ratified')) return { collect: false, why: 'ratified' }
  if (manifests.some((m) => m.status === 'revoked')) return { collect: false, why: 'revoked' }
  const proposals = manifests.flatMap((m) => m.proposals)
  const statuses = proposals.map((p) => proposalStatus(p, now))
  if (statuses.some((s) => UNDECIDED.has(s))) return { collect: false, why: 'pending' }
  const since = Math.max(pinnedAt, ...manifests.map((m) => m.at), ...proposals.map((p) => p.closesAt))
  const dueAt = since + retentionMs
  if (now < dueAt) return { collect: false, why: 'retained', dueAt }
  const why: CollectReason =
    manifests.length === 0
      ? 'no-manifest'
      : proposals.length === 0
        ? 'no-proposal'
        : statuses.includes('expired')
          ? 'expired'
          : 'rejected'
  return { collect: true, why, since, dueAt }
}

/**
 * The standing of every root a manifest names, from the state once: `weightsOf` gives a
 * manifest's root and `at` (its record). Roots no manifest names have no entry.
 */
export function standings(
  state: FederationState,
  manifestOf: (manifest: CID) => { weights: CID; at: number } | undefined,
): Map<string, RootStanding> {
  const proposalsOf = new Map<string, ProposalView[]>()
  for (const p of state.proposals.values()) {
    if (p.action.type !== 'ratify-model') continue
    const key = p.action.manifest.toString()
    const list = proposalsOf.get(key) ?? []
    list.push(p)
    proposalsOf.set(key, list)
  }
  const byRoot = new Map<string, RootStanding['manifests'][number][]>()
  for (const view of state.manifests.values()) {
    const manifest = manifestOf(view.cid)
    if (!manifest) continue
    const key = manifest.weights.toString()
    const list = byRoot.get(key) ?? []
    list.push({ at: manifest.at, status: view.status, proposals: proposalsOf.get(view.cid.toString()) ?? [] })
    byRoot.set(key, list)
  }
  return new Map([...byRoot].map(([key, manifests]) => [key, { manifests }]))
}
