/** `allmende vote` and `allmende attest`: signed with your key, sent to a node. */
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import type { Command } from 'commander'
import { importer } from 'ipfs-unixfs-importer'
import type { CID } from 'multiformats/cid'
import { CID_PROFILE, discardBlocks } from '../../node/weights/index.js'
import { CHOICES, type Choice, signRecord } from '../../protocol/index.js'
import { NodeClient, type RecordAnswer, withNode } from '../client.js'
import { action, CliError, collect, examples, usage } from '../context.js'
import { type KeyOptions, signerOf, withKey } from '../keys.js'
import { parseCidArg, resolveManifest, type StateView, submit } from '../records.js'

function signed<K extends 'vote' | 'attestation'>(make: () => ReturnType<typeof signRecord<K>>) {
  try {
    return make()
  } catch (e) {
    throw usage(`not a valid record: ${(e as Error).message}`)
  }
}

/** The UnixFS (unixfs-v1-2025) CID of one file: what `report` names. */
async function fileCid(path: string): Promise<CID> {
  try {
    if (!(await stat(path)).isFile()) throw usage(`--report: ${path} is not a file`)
  } catch (e) {
    if (e instanceof CliError) throw e
    throw usage(`--report: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`)
  }
  let root: CID | undefined
  for await (const entry of importer([{ content: createReadStream(path) }], discardBlocks, {
    profile: CID_PROFILE,
    wrapWithDirectory: false,
  })) {
    root = entry.cid
  }
  if (!root) throw new CliError('import-failed', `could not compute the CID of ${path}`)
  return root
}

function parseMetrics(specs: readonly string[]): Record<string, number> | undefined {
  if (specs.length === 0) return undefined
  const out: Record<string, number> = {}
  for (const spec of specs) {
    const m = /^([a-z][a-z0-9._-]*)=(-?\d+)$/.exec(spec)
    if (!m || !Number.isSafeInteger(Number(m[2])))
      throw usage(`--metric ${spec}: expected KEY=INTEGER with a lower-case key, e.g. accuracy_permille=873`)
    if (m[1]! in out) throw usage(`--metric: ${m[1]} given twice`)
    out[m[1]!] = Number(m[2])
  }
  return out
}

function verdictLine(answer: RecordAnswer): string {
  const r = answer.report
  return r?.status === 'pending' ? `${answer.id} (pending: ${r.code})` : answer.id
}

export function registerVote(cli: Command): void {
  const vote = cli
    .command('vote')
    .description('vote on a proposal (your latest vote before it closes counts)')
    .argument('<proposal>', 'the proposal id')
    .argument('<choice>', CHOICES.join('|'))
    .option('--reason <text>', 'why (public)')
  withKey(vote)
  withNode(vote)
  examples(vote, ['allmende vote bafyrei… yes', 'allmende vote bafyrei… no --reason "no bias audit yet"'])
  vote.action(
    action<KeyOptions & { node?: string; reason?: string }>(async (ctx, opts, [id, choice]) => {
      const proposal = parseCidArg(id!, 'proposal')
      if (!(CHOICES as readonly string[]).includes(choice!))
        throw usage(`the choice is ${CHOICES.join(', ')}, not "${choice}"`)
      const client = new NodeClient(opts.node)
      const state = await client.get<StateView>('/state')
      const signer = await signerOf(opts)
      const record = signed(() =>
        signRecord(
          {
            kind: 'vote',
            federation: parseCidArg(state.federation, 'federation'),
            at: Date.now(),
            body: {
              proposal,
              choice: choice as Choice,
              ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
            },
          },
          signer,
        ),
      )
      const answer = await submit(ctx, client, record)
      ctx.out(
        {
          vote: answer.id,
          proposal: proposal.toString(),
          choice,
          status: answer.report?.status ?? 'applied',
        },
        `voted ${choice} on ${proposal}: vote ${verdictLine(answer)}`,
      )
    }),
  )

  const attest = cli
    .command('attest')
    .description(
      'attest an audit of a model version (auditors): its kind, pass or fail, a report and metrics',
    )
    .argument('<name@version>', 'the model version audited')
    .requiredOption('--kind <kind>', 'eval, bias-audit, license-review, security-review, …')
    .requiredOption('--result <result>', 'pass|fail')
    .option(
      '--report <file>',
      'the audit report; its CID is recorded (publish the file so others can fetch it)',
    )
    .option('--metric <key=int>', 'an integer metric (repeat), e.g. accuracy_permille=873', collect)
    .option('--manifest <cid>', 'the manifest audited when the version has rival manifests')
  withKey(attest)
  withNode(attest)
  examples(attest, [
    'allmende attest mistral-7b-de@1.2.0 --kind eval --result pass --metric mmlu_de_permille=612',
    'allmende attest mistral-7b-de@1.2.0 --kind bias-audit --result fail --report audit.pdf',
  ])
  attest.action(
    action<
      KeyOptions & {
        node?: string
        kind: string
        result: string
        report?: string
        metric?: string[]
        manifest?: string
      }
    >(async (ctx, opts, [ref]) => {
      if (opts.result !== 'pass' && opts.result !== 'fail')
        throw usage(`--result is pass or fail, not "${opts.result}"`)
      if (!/^[a-z][a-z0-9._-]*$/.test(opts.kind) || opts.kind.length > 64)
        throw usage(`--kind: a lower-case identifier of at most 64 bytes, like eval or bias-audit`)
      const metrics = parseMetrics(opts.metric ?? [])
      const report = opts.report === undefined ? undefined : await fileCid(opts.report)
      const client = new NodeClient(opts.node)
      const state = await client.get<StateView>('/state')
      const subject = await resolveManifest(client, ref!, opts.manifest)
      const signer = await signerOf(opts)
      const record = signed(() =>
        signRecord(
          {
            kind: 'attestation',
            federation: parseCidArg(state.federation, 'federation'),
            at: Date.now(),
            body: {
              subject,
              kind: opts.kind,
              result: opts.result as 'pass' | 'fail',
              ...(report ? { report } : {}),
              ...(metrics ? { metrics } : {}),
            },
          },
          signer,
        ),
      )
      const answer = await submit(ctx, client, record)
      ctx.out(
        {
          attestation: answer.id,
          subject: subject.toString(),
          kind: opts.kind,
          result: opts.result,
          ...(report ? { report: report.toString() } : {}),
          status: answer.report?.status ?? 'applied',
        },
        `attested ${opts.kind} ${opts.result} for ${ref} (manifest ${subject}): ${verdictLine(answer)}`,
      )
    }),
  )
}
