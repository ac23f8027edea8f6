/**
 * The verdict of a certificate's verification (SPEC.md §12.2, §12.3): what it proves, and the
 * trust to keep — a TrustedHead of the checkpoint when the mark moves to it (docs/adr/0021).
 */
import type { CheckpointView, Fold } from '../fold/index.js'
import type { Verified } from '../record.js'
import { type MapValue, soleManifest } from '../stateroot.js'
import {
  type CertificateHeader,
  type CertificateProblem,
  type CertificateVerdict,
  STATUS_PROBLEMS,
  type TrustedHead,
  type TrustMark,
  type VerifyCertificateOptions,
} from './format.js'

export interface VerdictInput {
  readonly problems: readonly CertificateProblem[]
  readonly header: CertificateHeader
  readonly options: VerifyCertificateOptions
  readonly fold?: Fold
  readonly newest?: CheckpointView
  readonly age?: number
  readonly entry?: MapValue | null
}

export function verdictOf(input: VerdictInput): CertificateVerdict {
  const { problems, header, newest, entry } = input
  const status = entry?.status ?? 'unknown'
  const manifest = entry ? soleManifest(entry) : undefined
  const manifestRecord = manifest
    ? (input.fold?.get(manifest) as Verified<'manifest'> | undefined)
    : undefined
  const trusted =
    newest && input.fold
      ? markAfter(input.fold, newest, problems, input.options.trusted)
      : input.options.trusted
  return {
    ok: problems.length === 0 && status === 'ratified',
    model: header.model,
    status,
    mode: header.mode,
    ...(header.since ? { since: header.since } : {}),
    ...(manifest ? { manifest } : {}),
    ...(manifestRecord?.record.kind === 'manifest' ? { manifestRecord } : {}),
    ...(entry?.decision ? { proposal: entry.decision } : {}),
    ...(newest
      ? { checkpoint: { cid: newest.cid, epoch: newest.epoch, height: newest.height, age: input.age! } }
      : {}),
    ...(trusted ? { trusted } : {}),
    problems,
  }
}

/** A verdict after a stopping problem: nothing but the problems and the mark given. */
export function stopped(
  problems: readonly CertificateProblem[],
  options: VerifyCertificateOptions,
  header?: CertificateHeader,
): CertificateVerdict {
  return {
    ok: false,
    ...(header ? { model: header.model } : {}),
    status: 'unknown',
    mode: header?.mode ?? 'full',
    ...(header?.since ? { since: header.since } : {}),
    ...(options.trusted ? { trusted: options.trusted } : {}),
    problems,
  }
}

/**
 * The mark moves to the checkpoint (with its head and head state) when it is not older and the
 * file has no integrity problem; otherwise the one given stays.
 */
function markAfter(
  fold: Fold,
  newest: CheckpointView,
  problems: readonly CertificateProblem[],
  trusted: TrustMark | TrustedHead | undefined,
): TrustMark | TrustedHead | undefined {
  if (!problems.every((p) => STATUS_PROBLEMS.has(p.code)) || (trusted && older(newest, trusted)))
    return trusted
  const mark = { height: newest.height, epoch: newest.epoch }
  const state = fold.state()
  return state.head.equals(newest.head) ? { ...mark, head: newest.head, state: fold.headState() } : mark
}

export function older(a: TrustMark, b: TrustMark): boolean {
  return a.height !== b.height ? a.height < b.height : a.epoch < b.epoch
}
