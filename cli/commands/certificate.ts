/**
 * `allmende certificate export N@V -o FILE [--full] [--since CID|trusted] [--wait [--timeout DUR]]`
 * and `allmende certificate verify FILE [--federation ID [--pin]] [--model N@V] [--at TIME]
 * [--max-age DUR]` (protocol/SPEC.md §12, docs/adr/0026).
 *
 * Export asks the node for the mode wanted (compact unless --full) and, with --since, for a chain
 * that starts after a head the deployer already trusts; it verifies the answer as `verify` would
 * and writes it only when it is genuine and covers the decision. Verify needs no model directory:
 * it says what the certificate proves (model, status, manifest and files, checkpoint, mode,
 * chain start, problems), exit 0 only when it proves the version ratified, and uses and moves the
 * trust mark as `verify` does, unless --at.
 */
import type { Command } from 'commander'
import type { CID } from 'multiformats/cid'
import { proveWithCertificate, type StatusProof, writeAtomic } from '../../node/index.js'
import { type CertificateVerdict, isTrustedHead, verifyCertificate } from '../../protocol/index.js'
import { parseAt, problemsAsOf } from '../at-time.js'
import { certificateJson, certificateLines, type TrustOutcome } from '../certificate-report.js'
import { NodeClient, withNode } from '../client.js'
import { action, CliError, type Ctx, EXIT, examples, usage } from '../context.js'
import { parseDuration } from '../durations.js'
import { type FederationChoice, pinNotice, trustedFederation } from '../federation-pin.js'
import { parseCidArg, parseModelRef } from '../records.js'
import { keepTrust, readTrust, trustPath } from '../trust-marks.js'
import { type CertificateRequest, dueText, fetchCertificate } from '../verify-online.js'
import { maxAgeOf, offlineFederation, readCertificateFile, withAt, withTrust } from './verify.js'

export function registerCertificate(cli: Command): void {
  const certificate = cli
    .command('certificate')
    .description('certificates: proof of a status, checked offline')
  examples(certificate, [
    'allmende certificate export mistral-7b-de@1.2.0 -o mistral-7b-de.car',
    'allmende certificate verify mistral-7b-de.car --federation bafyrei…',
    'allmende verify ./mistral-7b-de --model mistral-7b-de@1.2.0 --certificate mistral-7b-de.car --federation bafyrei…',
  ])
  registerExport(certificate)
  registerCertificateVerify(certificate)
}

function registerExport(certificate: Command): void {
  const exp = withTrust(
    withNode(
      certificate
        .command('export')
        .description(
          "a model version's certificate from the node, verified, for offline verification; refused (exit 1) until a counted checkpoint covers the decision",
        )
        .argument('<name@version>')
        .requiredOption('-o, --out <file>', 'where to write the certificate (a CAR file)'),
    ),
    false,
  )
    .option('--full', 'a full certificate: every governance step with its votes, re-tallied (for auditors)')
    .option(
      '--since <cid|trusted>',
      'only the chain after this governance head, which the verifier already trusts ("trusted": the head in this home\'s trust store)',
    )
    .option('--wait', 'wait until a counted checkpoint covers the decision, then write the certificate')
    .option('--timeout <dur>', 'with --wait: give up after this long', '2h')
  examples(exp, [
    'allmende certificate export mistral-7b-de@1.2.0 -o mistral-7b-de.car',
    'allmende certificate export mistral-7b-de@1.2.0 -o mistral-7b-de.car --since trusted',
    'allmende certificate export mistral-7b-de@1.2.0 -o audit.car --full',
    'allmende certificate export mistral-7b-de@1.2.0 -o mistral-7b-de.car --wait --timeout 30m',
  ])
  exp.action(action<ExportOptions>(async (ctx, opts, [ref]) => exportCertificate(ctx, ref!, opts)))
}

interface ExportOptions extends FederationChoice {
  node?: string
  out: string
  full?: boolean
  since?: string
  wait?: boolean
  timeout: string
}

/** Problems that say what the certificate proves, not that it is damaged or not genuine. */
const VERDICT_CODES: ReadonlySet<string> = new Set([
  'cert-stale',
  'cert-revoked',
  'cert-conflicted',
  'cert-not-ratified',
  'revoked',
  'conflicted',
  'not-ratified',
])

/** Between two asks while waiting: at least this long, and at most this long (a node's due time is only a hint). */
const WAIT_MIN_MS = 500
const WAIT_MAX_MS = 30_000

/** What one ask of the node came to: the file written, or why not yet and when to ask again. */
type Attempt = { readonly written: true } | { readonly why: string; readonly dueAt?: number }

/** Who is asked, for what, and against which federation the answer is checked. */
interface ExportTarget {
  readonly client: NodeClient
  readonly key: string
  readonly federation: string
  readonly request: CertificateRequest
  readonly out: string
}

/**
 * Fetches the certificate, verifies it as `verify` would, and writes it only when it is genuine
 * and its checkpoint covers the decision. Until then: exit 1 with when the next checkpoint is
 * due, or with --wait, ask again around that time until --timeout.
 */
async function exportCertificate(ctx: Ctx, ref: string, opts: ExportOptions): Promise<void> {
  const { key } = parseModelRef(ref)
  const timeoutMs = parseDuration(opts.timeout)
  if (timeoutMs === undefined) throw usage(`--timeout: not a duration: "${opts.timeout}" (use e.g. 10m)`)
  const client = new NodeClient(opts.node)
  const trust = await trustedFederation(client, opts)
  if (trust.pinned) ctx.notice('federation-pinned', pinNotice(trust.pinned))
  const federation = trust.federation.toString()
  const request = {
    mode: opts.full ? 'full' : 'compact',
    ...(await sinceOf(ctx, opts.since, federation)),
  } as const
  const target: ExportTarget = { client, key, federation, request, out: opts.out }
  const deadline = Date.now() + timeoutMs
  let announced: number | undefined
  for (;;) {
    const attempt = await exportOnce(ctx, target)
    if ('written' in attempt) return
    const { why, dueAt } = attempt
    const when =
      dueAt !== undefined ? `the next checkpoint is due ${dueText(dueAt)}` : 'the node did not say when'
    if (!opts.wait)
      throw new CliError(
        'not-covered',
        `${key}: not certified yet (${why}); ${when}. Run again then, or add --wait`,
      )
    const now = Date.now()
    if (now >= deadline)
      throw new CliError(
        'not-covered',
        `${key}: still not certified after --timeout ${opts.timeout} (${why}); ${when}`,
      )
    if (dueAt !== announced) {
      ctx.note(`waiting: ${key} is not certified yet; ${when}`)
      announced = dueAt
    }
    const pause = Math.min(
      Math.max((dueAt ?? now + 5_000) - now + 250, WAIT_MIN_MS),
      WAIT_MAX_MS,
      deadline - now,
    )
    await new Promise((resolve) => setTimeout(resolve, pause))
  }
}

/** `--since CID`, or `--since trusted`: the head this home's trust store keeps for the federation. */
async function sinceOf(ctx: Ctx, since: string | undefined, federation: string): Promise<{ since?: CID }> {
  if (since === undefined) return {}
  if (since !== 'trusted') return { since: parseCidArg(since, '--since') }
  const kept = await readTrust(federation)
  if (!isTrustedHead(kept))
    throw new CliError(
      'no-trusted-head',
      `--since trusted: ${trustPath(federation)} keeps no trusted head for federation ${federation} (${kept ? 'a mark from an older version, without its head' : 'nothing verified yet'}); verify a certificate of this federation first, or export without --since`,
    )
  ctx.note(`--since trusted: the chain after ${kept.head} (height ${kept.height})`)
  return { since: kept.head }
}

/** One ask of the node: the certificate written, or why it was not (yet). */
async function exportOnce(ctx: Ctx, target: ExportTarget): Promise<Attempt> {
  const { key } = target
  const served = await fetchCertificate(target.client, key, target.request)
  if ('refused' in served) {
    if (served.refused.code !== 'not-covered') throw new CliError(served.refused.code, served.refused.message)
    return {
      why: served.refused.message,
      ...(served.refused.dueAt !== undefined ? { dueAt: served.refused.dueAt } : {}),
    }
  }
  const trusted = await readTrust(target.federation)
  const proof = proveWithCertificate({
    model: key,
    certificate: served.car,
    federation: target.federation,
    ...(trusted ? { trusted } : {}),
  })
  const sinceOnly = startsAfterUntrusted(proof, target.request, trusted)
  if (sinceOnly) ctx.notice('since-unverified', sinceOnly)
  else {
    const defect = proof.problems.find((p) => !VERDICT_CODES.has(p.code))
    if (defect)
      throw new CliError(defect.code, `the node's certificate of ${key} does not verify: ${defect.message}`)
    if (proof.status === 'unknown')
      return {
        why: `no decision on ${key} is under the node's newest counted checkpoint yet, so its certificate would prove nothing`,
      }
  }
  await writeAtomically(target.out, served.car)
  noticeWritten(ctx, proof, target.request, served.sinceRefused)
  const verdict = proof.certificate
  ctx.out(
    {
      model: key,
      file: target.out,
      bytes: served.car.length,
      status: proof.status,
      mode: verdict?.mode ?? null,
      since: verdict?.since?.toString() ?? null,
    },
    `certificate of ${key} (${proof.status}, ${verdict?.mode ?? 'unknown'} mode${verdict?.since ? `, after ${verdict.since}` : ''}, ${served.car.length} bytes) written to ${target.out}`,
  )
  return { written: true }
}

/**
 * Why a `--since CID` certificate cannot be verified here, when that is the only thing wrong: it
 * starts after a head this home does not trust (exported for someone who does, who verifies it).
 */
function startsAfterUntrusted(
  proof: StatusProof,
  request: CertificateRequest,
  trusted: Awaited<ReturnType<typeof readTrust>>,
): string | undefined {
  if (request.since === undefined || !proof.problems.some((p) => p.code === 'cert-since')) return undefined
  if (isTrustedHead(trusted) && trusted.head.equals(request.since)) return undefined
  return `the certificate starts after ${request.since}, which this home does not trust, so only whoever trusts that head can verify it; written unverified`
}

/** What the user must know about the file just written: stale already, or not the chain asked for. */
function noticeWritten(
  ctx: Ctx,
  proof: StatusProof,
  request: CertificateRequest,
  sinceRefused: string | undefined,
): void {
  const stale = proof.problems.find((p) => p.code === 'cert-stale')
  if (stale) ctx.notice('cert-stale', `the certificate written is already stale: ${stale.message}`)
  const verdict = proof.certificate
  if (request.since !== undefined && verdict !== undefined && verdict.since === undefined)
    ctx.notice(
      'since-not-used',
      `the node could not start the chain after ${request.since} (${sinceRefused ?? 'it did not say why'}): the certificate starts at the genesis`,
    )
}

async function writeAtomically(file: string, bytes: Uint8Array): Promise<void> {
  try {
    await writeAtomic(file, bytes)
  } catch (e) {
    throw new CliError('write-failed', `cannot write ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`)
  }
}

function registerCertificateVerify(certificate: Command): void {
  const cmd = withAt(
    certificate
      .command('verify')
      .description(
        'verify a certificate file from the federation id alone, without a model directory, and say what it proves',
      )
      .argument('<file>')
      .option(
        '--federation <id>',
        'the federation id to trust (default: the one pinned in $ALLMENDE_HOME/federation.json)',
      )
      .option('--pin', 'make --federation the federation this home trusts from now on (replacing the pin)')
      .option('--model <name@version>', 'the model version the certificate must be for')
      .option('--max-age <dur>', 'the oldest acceptable checkpoint (default: 2 checkpoint intervals)'),
  )
  examples(cmd, [
    'allmende certificate verify mistral-7b-de.car --federation bafyrei…',
    'allmende certificate verify mistral-7b-de.car --federation bafyrei… --model mistral-7b-de@1.2.0 --json',
    'allmende certificate verify mistral-7b-de.car --federation bafyrei… --at 2025-05-01T12:00:00Z',
  ])
  cmd.action(
    action<CertificateVerifyOptions>(async (ctx, opts, [file]) => verifyCertificateFile(ctx, file!, opts)),
  )
}

interface CertificateVerifyOptions extends FederationChoice {
  model?: string
  maxAge?: string
  at?: string
}

/** `certificate verify FILE`: the verdict, said in full; the trust mark used and moved unless --at. */
async function verifyCertificateFile(ctx: Ctx, file: string, opts: CertificateVerifyOptions): Promise<void> {
  if (opts.model !== undefined) parseModelRef(opts.model)
  const maxAgeMs = maxAgeOf(opts)
  const at = opts.at === undefined ? undefined : parseAt(opts.at)
  const federation = await offlineFederation(ctx, opts, 'certificate verify')
  const car = await readCertificateFile(file, 'certificate verify')
  const trusted = at === undefined ? await readTrust(federation.toString()) : undefined
  const now = at ?? Date.now()
  const verdict = verifyCertificate(federation, car, {
    now,
    ...(opts.model !== undefined ? { model: opts.model } : {}),
    ...(maxAgeMs !== undefined ? { maxAgeMs } : {}),
    ...(trusted ? { trusted } : {}),
  })
  let trust: TrustOutcome = 'not-used'
  let shown: CertificateVerdict = verdict
  if (at === undefined)
    trust = verdict.trusted && (await keepTrust(federation.toString(), verdict.trusted)) ? 'moved' : 'kept'
  else {
    const problems = problemsAsOf(verdict.problems, at, verdict.checkpoint)
    shown = { ...verdict, problems, ok: verdict.ok && problems.length === verdict.problems.length }
  }
  const context = { federation: federation.toString(), at: now, atGiven: at !== undefined, trust }
  ctx.out(certificateJson(shown, context), certificateLines(shown, context))
  if (!shown.ok) process.exitCode = EXIT.failed
}
