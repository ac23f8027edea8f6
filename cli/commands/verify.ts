/**
 * `allmende verify DIR --model N@V [--certificate FILE --federation ID] [--max-age DUR] [--cid]`
 * and `allmende certificate export N@V -o FILE.car` (DESIGN.md §5, §7). With a certificate the
 * check is offline, and the highest checkpoint accepted is kept per federation in
 * $ALLMENDE_HOME/trust/ so nothing older is accepted later. Without one, the node is asked.
 * Exit 0 only when the version is ratified and every file matches.
 */
import { readFile, writeFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { NodeClient, withNode } from '../client.js'
import { action, EXIT, examples, usage } from '../context.js'
import { parseDuration } from '../durations.js'
import { parseCidArg, parseModelRef } from '../records.js'
import { keepTrust, type ModelVerdict, readTrust, verifyModel, verifyModelOnline } from '../verify-model.js'

export interface VerifyOptions {
  node?: string
  model: string
  certificate?: string
  federation?: string
  maxAge?: string
  cid?: boolean
}

function report(v: ModelVerdict, model: string): string[] {
  if (v.ok)
    return [`ok: ${model} is ratified and every file matches${v.manifest ? ` manifest ${v.manifest}` : ''}`]
  return [
    `FAILED: ${model} (${v.status})`,
    ...v.problems.map((p) => `  ${p.code}${p.path !== undefined ? ` ${p.path}` : ''}: ${p.message}`),
  ]
}

/**
 * The check `verify` and `exec` share: offline against a certificate (moving the kept trust
 * mark only when the certificate verified), or online against the node. Usage errors for the
 * options; the verdict for everything else.
 */
export async function checkModel(dir: string, opts: VerifyOptions): Promise<ModelVerdict> {
  parseModelRef(opts.model)
  let maxAgeMs: number | undefined
  if (opts.maxAge !== undefined) {
    maxAgeMs = parseDuration(opts.maxAge)
    if (maxAgeMs === undefined) throw usage(`--max-age: not a duration: "${opts.maxAge}" (use e.g. 6h)`)
  }
  if (opts.certificate === undefined) {
    if (opts.federation !== undefined || maxAgeMs !== undefined)
      throw usage('--federation and --max-age go with --certificate')
    return verifyModelOnline(dir, new NodeClient(opts.node), opts.model, { cid: opts.cid === true })
  }
  if (opts.federation === undefined) throw usage('--certificate needs --federation ID')
  const federation = parseCidArg(opts.federation, '--federation').toString()
  let certificate: Uint8Array
  try {
    certificate = new Uint8Array(await readFile(opts.certificate))
  } catch (e) {
    throw usage(`--certificate: cannot read ${opts.certificate}: ${(e as Error).message}`)
  }
  const trusted = await readTrust(federation)
  const v = await verifyModel(dir, {
    model: opts.model,
    certificate,
    federation,
    ...(maxAgeMs !== undefined ? { maxAgeMs } : {}),
    ...(trusted ? { trusted } : {}),
    cid: opts.cid === true,
  })
  // verifyCertificate moves the mark only to an authentic, newer checkpoint — including one that
  // says "revoked" (cert-revoked is a verdict, not a defect), so an older certificate still saying
  // "ratified" is refused from then on. keepTrust never moves it backwards.
  if (v.trusted) await keepTrust(federation, v.trusted)
  return v
}

export function registerVerify(cli: Command): void {
  const verify = withNode(
    cli
      .command('verify')
      .description('check a model directory: ratified, and every file as in the manifest')
      .argument('<dir>')
      .requiredOption('--model <name@version>', 'the model version the directory should hold')
      .option('--certificate <file>', 'verify offline with this certificate (needs --federation)')
      .option('--federation <id>', 'the federation id the certificate must chain to')
      .option('--max-age <dur>', 'the oldest acceptable checkpoint (default: 2 checkpoint intervals)')
      .option('--cid', 'also recompute the UnixFS root of the files'),
  )
  examples(verify, [
    'allmende verify ./mistral-7b-de --model mistral-7b-de@1.2.0',
    'allmende verify ./m --model org/m@2.0.0 --certificate m.car --federation bafyrei… --max-age 6h',
  ])
  verify.action(
    action<VerifyOptions>(async (ctx, opts, [dir]) => {
      const v = await checkModel(dir!, opts)
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
  const exp = withNode(
    certificate
      .command('export')
      .description("a model version's certificate from the node, for offline verification")
      .argument('<name@version>')
      .requiredOption('-o, --out <file>', 'where to write the certificate (a CAR file)'),
  )
  examples(exp, ['allmende certificate export mistral-7b-de@1.2.0 -o mistral-7b-de.car'])
  exp.action(
    action<{ node?: string; out: string }>(async (ctx, opts, [ref]) => {
      const { key } = parseModelRef(ref!)
      const client = new NodeClient(opts.node)
      const car = await client.getBytes(
        `/certificates/${encodeURIComponent(key)}`,
        'application/vnd.ipld.car',
      )
      await writeFile(opts.out, car)
      ctx.out(
        { model: key, file: opts.out, bytes: car.length },
        `certificate of ${key} written to ${opts.out}`,
      )
    }),
  )
}
