/**
 * `allmende verify DIR --model N@V [--certificate FILE] [--federation ID [--pin]] [--max-age DUR]
 * [--at TIME] [--full] [--cid]` (protocol/SPEC.md §12).
 *
 * The status is always proven by a certificate, verified from the federation id alone: the file
 * given (offline), or the one the node serves (online) — the same check, the same trust mark
 * (the highest checkpoint accepted, kept per federation in $ALLMENDE_HOME/trust/ so nothing older
 * is accepted later, with its head, after which the node is asked to start the chain). The
 * federation is the one given with --federation, else the one pinned in
 * $ALLMENDE_HOME/federation.json, else — online, on first use — the node's, pinned (trust on first
 * use, said so). Exit 0 only when a certificate proves the version ratified and every file
 * matches. `--at TIME` verifies as of TIME, and neither reads nor moves the trust mark
 * (docs/adr/0026).
 */
import { readFile } from 'node:fs/promises'
import type { Command } from 'commander'
import type { CID } from 'multiformats/cid'
import { checkFiles, type ModelVerdict, proveWithCertificate, type StatusProof } from '../../node/index.js'
import { instantText, parseAt, problemsAsOf } from '../at-time.js'
import { NodeClient, withNode } from '../client.js'
import { action, type Ctx, EXIT, examples, usage } from '../context.js'
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
import { keepTrust, readTrust, trustPath } from '../trust-marks.js'
import { proveOnline } from '../verify-online.js'

export interface VerifyOptions extends FederationChoice {
  node?: string
  model: string
  certificate?: string
  maxAge?: string
  cid?: boolean
  /** `--at TIME` (verify only): the verifier's now; the trust mark is neither read nor moved. */
  at?: string
  /** `--full` (verify only): ask the node for a full certificate. */
  full?: boolean
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

/** The `--at TIME` option, with what it does to the trust mark. */
export function withAt(cmd: Command): Command {
  return cmd.option(
    '--at <time>',
    'verify as of TIME (ISO 8601 with an offset, e.g. 2025-05-01T12:00:00Z, or ms since 1970); the trust mark is neither read nor moved',
  )
}

function report(v: ModelVerdict, model: string, at: number | undefined): string[] {
  const asOf = at !== undefined ? [`  (verified as of ${instantText(at)}, given with --at)`] : []
  if (v.ok)
    return [
      `ok: ${model} is ratified and every file matches${v.manifest ? ` manifest ${v.manifest}` : ''}`,
      ...asOf,
    ]
  return [
    `FAILED: ${model} (${v.status})`,
    ...v.problems.map((p) => `  ${p.code}${p.path !== undefined ? ` ${p.path}` : ''}: ${p.message}`),
    ...asOf,
  ]
}

export function maxAgeOf(opts: { maxAge?: string }): number | undefined {
  if (opts.maxAge === undefined) return undefined
  const ms = parseDuration(opts.maxAge)
  if (ms === undefined) throw usage(`--max-age: not a duration: "${opts.maxAge}" (use e.g. 6h)`)
  return ms
}

/** The bytes of a certificate file the user named with `option`; a usage error when unreadable. */
export async function readCertificateFile(file: string, option: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(file))
  } catch (e) {
    throw usage(`${option}: cannot read ${file}: ${(e as Error).message}`)
  }
}

/**
 * The federation an offline check trusts: --federation (pinned with --pin), else the pinned one;
 * a usage error naming `what` when there is neither.
 */
export async function offlineFederation(ctx: Ctx, opts: FederationChoice, what: string): Promise<CID> {
  const chosen = await chosenFederation(opts)
  if (!chosen.federation)
    throw usage(`${what} needs --federation ID (no federation is pinned in ${pinPath()})`)
  if (chosen.toPin && opts.pin) ctx.notice('federation-pinned', pinNotice(await keepPin(chosen.toPin, false)))
  return chosen.federation
}

/** The time to verify as of: --at's, or undefined for this computer's clock. */
function atOf(opts: { at?: string }): number | undefined {
  return opts.at === undefined ? undefined : parseAt(opts.at)
}

/**
 * The status of a version, proven as `verify` and `exec` prove it: offline against a certificate
 * file, or online against the certificate the node serves and then its live word (stricter only).
 * Moves the kept trust mark only to a certificate that verified, and never with --at (which
 * does not read it either: a verification as of another time says nothing about what to trust
 * now). Usage errors for the options.
 */
export async function proveStatus(ctx: Ctx, opts: VerifyOptions): Promise<StatusProof> {
  parseModelRef(opts.model)
  const maxAgeMs = maxAgeOf(opts)
  const at = atOf(opts)
  const checks = {
    ...(maxAgeMs !== undefined ? { maxAgeMs } : {}),
    ...(at !== undefined ? { now: at } : {}),
  }
  let federation: CID
  let proof: StatusProof
  if (opts.certificate !== undefined) {
    federation = await offlineFederation(ctx, opts, '--certificate')
    const certificate = await readCertificateFile(opts.certificate, '--certificate')
    const trusted = at === undefined ? await readTrust(federation.toString()) : undefined
    proof = proveWithCertificate({
      ...checks,
      model: opts.model,
      certificate,
      federation,
      ...(trusted ? { trusted } : {}),
    })
  } else {
    const client = new NodeClient(opts.node)
    const trust = await trustedFederation(client, opts)
    if (trust.pinned) ctx.notice('federation-pinned', pinNotice(trust.pinned))
    federation = trust.federation
    const trusted = at === undefined ? await readTrust(federation.toString()) : undefined
    proof = await proveOnline(client, opts.model, {
      ...checks,
      federation,
      ...(opts.full ? { mode: 'full' as const } : {}),
      ...(trusted ? { trusted } : {}),
    })
  }
  if (at !== undefined) {
    ctx.notice(
      'trust-mark-unused',
      `--at: verified as of ${instantText(at)}; the trust mark in ${trustPath(federation.toString())} was neither read nor moved`,
    )
    const problems = problemsAsOf(proof.problems, at, proof.certificate?.checkpoint)
    return { ...proof, problems, certified: proof.certified && problems.length === proof.problems.length }
  }
  // verifyCertificate moves the mark only to an authentic, newer checkpoint — including one that
  // says "revoked" (cert-revoked is a verdict, not a defect), so an older certificate still saying
  // "ratified" is refused from then on. keepTrust never moves it backwards.
  if (proof.trusted) await keepTrust(federation.toString(), proof.trusted)
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
    .option(
      '--full',
      'online: ask the node for a full certificate (every governance step re-tallied from its votes)',
    )
  withAt(verify)
  examples(verify, [
    'allmende verify ./mistral-7b-de --model mistral-7b-de@1.2.0',
    'allmende verify ./m --model org/m@2.0.0 --certificate m.car --federation bafyrei… --max-age 6h',
    'allmende verify ./m --model org/m@2.0.0 --certificate m.car --federation bafyrei… --at 2025-05-01T12:00:00Z',
    'allmende verify ./m --model org/m@2.0.0 --federation bafyrei… --pin',
  ])
  verify.action(
    action<VerifyOptions>(async (ctx, opts, [dir]) => {
      await requireDirectory(dir!)
      const proof = await proveStatus(ctx, opts)
      const v = await checkFiles(dir!, proof, { cid: opts.cid === true })
      const at = atOf(opts)
      ctx.out(
        {
          ok: v.ok,
          status: v.status,
          problems: v.problems,
          ...(at !== undefined ? { at: instantText(at) } : {}),
        },
        report(v, opts.model, at),
      )
      if (!v.ok) process.exitCode = EXIT.failed
    }),
  )
}
