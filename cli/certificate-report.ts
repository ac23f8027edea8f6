/**
 * What a verified certificate proves, for people and for --json (`allmende certificate verify`,
 * protocol/SPEC.md §12): the model and its status, the manifest and its files, the checkpoint,
 * the mode and where its chain starts, the time it was verified as of, what became of the trust
 * mark, and every problem with its code (docs/adr/0026).
 */
import type { CertificateProblem, CertificateVerdict } from '../protocol/index.js'
import { instantText } from './at-time.js'
import { formatDuration } from './durations.js'

/** Whether the verification used the trust mark and moved it (`--at` does neither). */
export type TrustOutcome = 'moved' | 'kept' | 'not-used'

export interface ReportContext {
  readonly federation: string
  /** The `now` the certificate was verified with. */
  readonly at: number
  /** True when `at` was given with --at (not this computer's clock). */
  readonly atGiven: boolean
  readonly trust: TrustOutcome
}

export interface ProvenFile {
  readonly path: string
  readonly size: number
  readonly sha256: string
}

/** The --json answer: everything the verdict proves, with the time and trust outcome. */
export function certificateJson(
  verdict: CertificateVerdict,
  context: ReportContext,
): Record<string, unknown> {
  const checkpoint = verdict.checkpoint
  return {
    ok: verdict.ok,
    federation: context.federation,
    model: verdict.model ?? null,
    status: verdict.status,
    manifest: verdict.manifest?.toString() ?? null,
    proposal: verdict.proposal?.toString() ?? null,
    files: provenFiles(verdict),
    checkpoint: checkpoint
      ? {
          cid: checkpoint.cid.toString(),
          height: checkpoint.height,
          epoch: checkpoint.epoch,
          age: checkpoint.age,
        }
      : null,
    mode: verdict.mode ?? null,
    since: verdict.since?.toString() ?? null,
    at: instantText(context.at),
    atGiven: context.atGiven,
    trust: context.trust,
    problems: verdict.problems.map((p) => ({ code: p.code, message: p.message })),
  }
}

/** The manifest's files as the certificate proves them, sha256 in hex. */
function provenFiles(verdict: CertificateVerdict): ProvenFile[] {
  return (verdict.manifestRecord?.record.body.files ?? []).map((f) => ({
    path: f.path,
    size: f.size,
    sha256: Buffer.from(f.sha256).toString('hex'),
  }))
}

/** The text answer: a verdict line, then one line per fact, then the problems. */
export function certificateLines(verdict: CertificateVerdict, context: ReportContext): string[] {
  const model = verdict.model ?? '(unknown model)'
  const lines = [
    verdict.ok
      ? `ok: the certificate proves ${model} ratified by federation ${context.federation}`
      : `FAILED: the certificate does not prove ${model} ratified (${verdict.status})`,
    `  model       ${model}`,
    `  status      ${verdict.status}`,
    ...(verdict.manifest ? [`  manifest    ${verdict.manifest}`] : []),
    ...(verdict.proposal ? [`  decided by  ${verdict.proposal}`] : []),
    ...checkpointLines(verdict),
    ...modeLines(verdict),
    `  verified as of ${instantText(context.at)} (${context.atGiven ? 'given with --at' : "this computer's clock"})`,
    `  trust mark  ${trustText(context)}`,
    ...fileLines(provenFiles(verdict)),
  ]
  return [...lines, ...problemLines(verdict.problems)]
}

function checkpointLines(verdict: CertificateVerdict): string[] {
  const checkpoint = verdict.checkpoint
  if (!checkpoint) return []
  const age =
    checkpoint.age >= 0
      ? `${formatDuration(checkpoint.age)} old`
      : `${formatDuration(-checkpoint.age)} in the future`
  return [
    `  checkpoint  ${checkpoint.cid}`,
    `              height ${checkpoint.height}, epoch ${instantText(checkpoint.epoch)}, ${age}`,
  ]
}

function modeLines(verdict: CertificateVerdict): string[] {
  if (!verdict.mode) return []
  const how =
    verdict.mode === 'full'
      ? 'full (every governance step re-tallied from its votes)'
      : 'compact (each governance step proven by the seals of t stewards of the state before it)'
  const chain = verdict.since ? `after the trusted head ${verdict.since}` : 'from the genesis'
  return [`  mode        ${how}`, `  chain       ${chain}`]
}

function trustText(context: ReportContext): string {
  if (context.trust === 'not-used') return 'neither read nor moved (--at)'
  return context.trust === 'moved' ? 'moved to this checkpoint' : 'unchanged'
}

function fileLines(files: readonly ProvenFile[]): string[] {
  if (files.length === 0) return []
  const total = files.reduce((sum, f) => sum + f.size, 0)
  return [
    `  files       ${files.length}, ${total} bytes:`,
    ...files.map((f) => `    ${f.sha256}  ${String(f.size).padStart(12)}  ${f.path}`),
  ]
}

export function problemLines(problems: readonly CertificateProblem[]): string[] {
  return problems.length === 0 ? [] : ['problems:', ...problems.map((p) => `  ${p.code}: ${p.message}`)]
}
