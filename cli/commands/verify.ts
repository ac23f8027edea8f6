/**
 * `allmende verify DIR --model N@V [--certificate FILE] [--federation ID [--pin]] [--max-age DUR]
 * [--cid]` and `allmende certificate export N@V -o FILE [--wait [--timeout DUR]]` (protocol/SPEC.md
 * §12).
 *
 * The status is always proven by a certificate, verified from the federation id alone: the file
 * given (offline), or the one the node serves (online) — the same check, the same trust mark
 * (the highest checkpoint accepted, kept per federation in $ALLMENDE_HOME/trust/ so nothing older
 * is accepted later). The federation is the one given with --federation, else the one pinned in
 * $ALLMENDE_HOME/federation.json, else — online, on first use — the node's, pinned (trust on first
 * use, said so). Exit 0 only when a certificate proves the version ratified and every file
 * matches.
 */
import { readFile } from 'node:fs/promises'
import type { Command } from 'commander'
import {
  checkFiles,
  type ModelVerdict,
  proveWithCertificate,
  type StatusProof,
  writeAtomic,
} from '../../node/index.js'
import { NodeClient, withNode } from '../client.js'
import { action, CliError, type Ctx, EXIT, examples, usage } from '../context.js'
import { parseDuration } from '../durations.js'
import {
  chosenFederation,
  type FederationChoice,
  keepPin,
  pinNotice,
  pinPath,
  trustedFederation,
} from '../federation-pin.js'
import { parseModelRef } from '../records.js'
import { requireDirectory } from '../snapshot.js'
import { keepTrust, readTrust } from '../trust-marks.js'
import { dueText, fetchCertificate, proveOnline } from '../verify-online.js'

export interface VerifyOptions extends FederationChoice {
  node?: string
  model: string
  certificate?: string
  maxAge?: string
  cid?: boolean
}

/** The trust options `verify`, `exec` and `certificate export` share, and the help that explains them. */
export function withTrust(cmd: Command, offline = true): Command {
  if (offline) cmd.option('--certificate <file>', 'verify offline with this certificate file')
  return cmd
    .option(
      '--federation <id>',
      'the federation id to trust (default: the one pinned in $ALLMENDE_HOME/federation.json; pinned on first use)',
    )
    .option('--pin', 'make --federation the federation this home trusts from now on (replacing the pin)')
    .addHelpText(
      'after',
      `
Trust: every status is proven by a certificate that must chain to the federation id. Online, with
nothing pinned and no --federation, the first node asked names the federation and it is pinned in
$ALLMENDE_HOME/federation.json: trust on first use, said on stderr — check the id with your
federation's stewards. From then on a node of another federation is refused (federation-mismatch);
--federation ID trusts another one for one run, --federation ID --pin replaces the pin. A node's
word may only make a verdict stricter: a revocation it holds that no checkpoint confirms yet
refuses the model; its "ratified" without a covering certificate never passes.`,
    )
}

function report(v: ModelVerdict, model: string): string[] {
  if (v.ok)
    return [`ok: ${model} is ratified and every file matches${v.manifest ? ` manifest ${v.manifest}` : ''}`]
  return [
    `FAILED: ${model} (${v.status})`,
    ...v.problems.map((p) => `  ${p.code}${p.path !== undefined ? ` ${p.path}` : ''}: ${p.message}`),
  ]
}

function maxAgeOf(opts: { maxAge?: string }): number | undefined {
  if (opts.maxAge === undefined) return undefined
  const ms = parseDuration(opts.maxAge)
  if (ms === undefined) throw usage(`--max-age: not a duration: "${opts.maxAge}" (use e.g. 6h)`)
  return ms
}

async function readCertificate(file: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(file))
  } catch (e) {
    throw usage(`--certificate: cannot read ${file}: ${(e as Error).message}`)
  }
}

/**
 * The status of a version, proven as `verify` and `exec` prove it: offline against a certificate
 * file, or online against the certificate the node serves and then its live word (stricter only).
 * Moves the kept trust mark only to a certificate that verified. Usage errors for the options.
 */
export async function proveStatus(ctx: Ctx, opts: VerifyOptions): Promise<StatusProof> {
  parseModelRef(opts.model)
  const maxAgeMs = maxAgeOf(opts)
  let federation: string
  let proof: StatusProof
  if (opts.certificate !== undefined) {
    const chosen = await chosenFederation(opts)
    if (!chosen.federation)
      throw usage(`--certificate needs --federation ID (no federation is pinned in ${pinPath()})`)
    if (chosen.toPin && opts.pin)
      ctx.notice('federation-pinned', pinNotice(await keepPin(chosen.toPin, false)))
    federation = chosen.federation.toString()
    const certificate = await readCertificate(opts.certificate)
    const trusted = await readTrust(federation)
    proof = proveWithCertificate({
      model: opts.model,
      certificate,
      federation,
      ...(maxAgeMs !== undefined ? { maxAgeMs } : {}),
      ...(trusted ? { trusted } : {}),
    })
  } else {
    const client = new NodeClient(opts.node)
    const trust = await trustedFederation(client, opts)
    if (trust.pinned) ctx.notice('federation-pinned', pinNotice(trust.pinned))
    federation = trust.federation.toString()
    const trusted = await readTrust(federation)
    proof = await proveOnline(client, opts.model, {
      federation: trust.federation,
      ...(maxAgeMs !== undefined ? { maxAgeMs } : {}),
      ...(trusted ? { trusted } : {}),
    })
  }
  // verifyCertificate moves the mark only to an authentic, newer checkpoint — including one that
  // says "revoked" (cert-revoked is a verdict, not a defect), so an older certificate still saying
  // "ratified" is refused from then on. keepTrust never moves it backwards.
  if (proof.trusted) await keepTrust(federation, proof.trusted)
  return proof
}

export function registerVerify(cli: Command): void {
  const verify = withTrust(
    withNode(
      cli
        .command('verify')
        .description(
          'check a model directory: a certificate proves it ratified, and every file is as in its manifest',
        )
        .argument('<dir>')
        .requiredOption('--model <name@version>', 'the model version the directory should hold'),
    ),
  )
    .option('--max-age <dur>', 'the oldest acceptable checkpoint (default: 2 checkpoint intervals)')
    .option('--cid', 'also recompute the UnixFS root of the files')
  examples(verify, [
    'allmende verify ./mistral-7b-de --model mistral-7b-de@1.2.0',
    'allmende verify ./m --model org/m@2.0.0 --certificate m.car --federation bafyrei… --max-age 6h',
    'allmende verify ./m --model org/m@2.0.0 --federation bafyrei… --pin',
  ])
  verify.action(
    action<VerifyOptions>(async (ctx, opts, [dir]) => {
      await requireDirectory(dir!)
      const proof = await proveStatus(ctx, opts)
      const v = await checkFiles(dir!, proof, { cid: opts.cid === true })
      ctx.out({ ok: v.ok, status: v.status, problems: v.problems }, report(v, opts.model))
      if (!v.ok) process.exitCode = EXIT.failed
    }),
  )

  const certificate = cli
    .command('certificate')
    .description('certificates: proof of a status, checked offline')
  examples(certificate, [
    'allmende certificate export mistral-7b-de@1.2.0 -o mistral-7b-de.car',
    'allmende verify ./mistral-7b-de --model mistral-7b-de@1.2.0 --certificate mistral-7b-de.car --federation bafyrei…',
  ])
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
    .option('--wait', 'wait until a counted checkpoint covers the decision, then write the certificate')
    .option('--timeout <dur>', 'with --wait: give up after this long', '2h')
  examples(exp, [
    'allmende certificate export mistral-7b-de@1.2.0 -o mistral-7b-de.car',
    'allmende certificate export mistral-7b-de@1.2.0 -o mistral-7b-de.car --wait --timeout 30m',
  ])
  exp.action(action<ExportOptions>(async (ctx, opts, [ref]) => exportCertificate(ctx, ref!, opts)))
}

interface ExportOptions extends FederationChoice {
  node?: string
  out: string
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
  const deadline = Date.now() + timeoutMs
  let announced: number | undefined
  for (;;) {
    const served = await fetchCertificate(client, key)
    let why: string
    let dueAt: number | undefined
    if ('car' in served) {
      const trusted = await readTrust(federation)
      const proof = proveWithCertificate({
        model: key,
        certificate: served.car,
        federation,
        ...(trusted ? { trusted } : {}),
      })
      const defect = proof.problems.find((p) => !VERDICT_CODES.has(p.code))
      if (defect)
        throw new CliError(defect.code, `the node's certificate of ${key} does not verify: ${defect.message}`)
      if (proof.status !== 'unknown') {
        await writeAtomically(opts.out, served.car)
        const stale = proof.problems.find((p) => p.code === 'cert-stale')
        if (stale) ctx.notice('cert-stale', `the certificate written is already stale: ${stale.message}`)
        ctx.out(
          { model: key, file: opts.out, bytes: served.car.length, status: proof.status },
          `certificate of ${key} (${proof.status}) written to ${opts.out}`,
        )
        return
      }
      why = `no decision on ${key} is under the node's newest counted checkpoint yet, so its certificate would prove nothing`
    } else if (served.refused.code === 'not-covered') {
      why = served.refused.message
      dueAt = served.refused.dueAt
    } else throw new CliError(served.refused.code, served.refused.message)

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

async function writeAtomically(file: string, bytes: Uint8Array): Promise<void> {
  try {
    await writeAtomic(file, bytes)
  } catch (e) {
    throw new CliError('write-failed', `cannot write ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`)
  }
}
