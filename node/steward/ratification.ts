/**
 * What a steward seals for a ratification (SPEC.md §10, steward duties; ADR 0016): never a second
 * ratification of a `name@version` already ratified; while a ratification it sealed passed may
 * still become final, not another of the same version; for one whose tally passes,
 * `weightsVerified: true` once the weights check passes, or `false` at `closesAt +
 * weightsDeadlineMs`; for one whose tally fails, `false` without looking at the weights.
 */
import type { CID } from 'multiformats/cid'
import { cidKey, type Fold, sealContent, type Verified } from '../../protocol/index.js'
import { type OwnRecords, ratifies } from './own-records.js'
import type { Sealable } from './seal-duty.js'

/**
 * The weights check of a manifest: true when verified, false when they can never pass, undefined
 * when not (yet) available. How it fetches and retries is the weights wing's (node/weights/).
 */
export type CheckWeights = (
  manifest: Verified<'manifest'>,
  maxModelBytes: number,
) => Promise<boolean | undefined>

export type RatificationStep =
  /** Seal now, with this `weightsVerified`. */
  | { readonly step: 'seal'; readonly weightsVerified: boolean }
  /** Never seal it: the version is ratified (or conflicted) by another decision. */
  | { readonly step: 'refuse'; readonly version: string | undefined }
  /** Not yet: a ratification of the same version this steward sealed passed may still pass. */
  | { readonly step: 'defer'; readonly version: string | undefined; readonly rival: CID }
  /** Not yet: the weights are not verified, and the deadline has not come. */
  | { readonly step: 'wait' }

export type Ratification = (
  p: Sealable,
  counted: { votes: CID[]; attestations: CID[] },
  now: number,
) => Promise<RatificationStep>

export function createRatification(parts: {
  fold: Fold
  own: OwnRecords
  checkWeights?: CheckWeights | undefined
}): Ratification {
  const { fold, own, checkWeights } = parts
  return async (p, counted, now) => {
    const { manifest, version } = ratifies(fold, p.cid)!
    const state = fold.state()
    const model = version ? state.models.get(version) : undefined
    // Already ratified (or conflicted: more than one manifest ratified) by another decision: no
    // further ratification is sealed. A steward still adds its seal to a decision that made it so.
    const decidedHere =
      manifest && state.manifests.get(cidKey(manifest.cid))?.ratifiedBy.some((c) => c.equals(p.cid))
    if ((model?.status === 'ratified' || model?.status === 'conflicted') && !decidedHere)
      return { step: 'refuse', version }
    const passes = sealContent(fold, p.cid, { ...counted, weightsVerified: true })
    // Two ratifications of one version sealed in one run (closing together) would otherwise both
    // pass, and the version be conflicted.
    const rival = (version ? own.pledgesOf(version) : []).find((c) => {
      const view = state.proposals.get(cidKey(c))
      return !c.equals(p.cid) && view?.phase === 'undecided' && now < view.closesAt + p.rules.sealDeadlineMs
    })
    if (passes?.body.outcome === 'passed' && rival) return { step: 'defer', version, rival }
    if (passes?.body.outcome !== 'passed') return { step: 'seal', weightsVerified: false }
    if (manifest && (await checkWeights?.(manifest, p.rules.maxModelBytes)) === true)
      return { step: 'seal', weightsVerified: true }
    if (now >= p.closesAt + p.rules.weightsDeadlineMs) return { step: 'seal', weightsVerified: false }
    return { step: 'wait' }
  }
}
