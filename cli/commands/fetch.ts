/**
 * `allmende fetch N@V --out DIR`: the manifest the node names for the version (its signature and
 * CID checked), then the files from several trustless gateways at once (node/weights/multi-fetch.ts):
 * the node's own, the holders' its replication report names, and `--gateway URL`s. Each file is
 * fetched in byte ranges, every block checked against its CID before it is written in place into
 * `<file>.partial`; a source that fails, stalls or sends a bad block is dropped and its ranges go
 * to the others. Nothing is trusted but the signed manifest: each file's size and sha256 are
 * checked before it is renamed into place, and at the end the directory as `verify` does (no
 * missing, no extra file, sizes), re-reading only the files kept from before the run.
 *
 * Resumable: a file already in DIR with the manifest's size is kept untouched (and fetched again
 * if the directory check then finds other bytes in it); a cut fetch resumes inside a file from the
 * journal beside its `.partial`. `--include GLOB` takes a
 * subset. Exit 1 naming the file on any mismatch, 3 when the node cannot be reached.
 * docs/adr/0030-multi-source-fetch.md.
 */
import { mkdir, rm, stat } from 'node:fs/promises'
import { relative, resolve, sep } from 'node:path'
import cliProgress from 'cli-progress'
import type { Command } from 'commander'
import { CID } from 'multiformats/cid'
import { type Problem, pathProblem } from '../../node/weights/index.js'
import {
  fetchFiles,
  IDLE_MS,
  type MultiFetchResult,
  type TargetFile,
} from '../../node/weights/multi-fetch.js'
import { checkFetchedDirectory } from '../../node/weights/multi-fetch-check.js'
import { holderGateways, sourceList } from '../../node/weights/multi-fetch-holders.js'
import { includeMatcher } from '../../node/weights/multi-fetch-include.js'
import type { ManifestBody, ManifestFile } from '../../protocol/types.js'
import { NodeClient, withNode } from '../client.js'
import { action, CliError, type Ctx, examples, usage } from '../context.js'
import { readPin } from '../federation-pin.js'
import { getModel, parseModelRef } from '../records.js'
import { fetchManifest } from '../verify-online.js'

interface FetchOptions {
  node?: string
  out: string
  gateway: string[]
  include: string[]
  idleTimeout: string
}

/** Where `path` lands under `dir`, or a CliError when it would land outside it. */
function targetOf(dir: string, path: string): string {
  const why = pathProblem(path)
  if (why !== undefined) throw new CliError('path-invalid', `the manifest names "${path}": ${why}`)
  const target = resolve(dir, path)
  const rel = relative(dir, target)
  if (rel === '' || rel.startsWith('..') || rel.startsWith(sep) || resolve(dir, rel) !== target)
    throw new CliError('path-invalid', `the manifest names "${path}", which is outside the directory`)
  return target
}

/**
 * Whether `target` is a regular file of the manifest's size: kept, unread, and checked with the
 * others by the directory check at the end (a wrong one is fetched again then), so a resumed
 * fetch does not hash the files it keeps twice.
 */
async function sizeMatches(target: string, file: ManifestFile): Promise<boolean> {
  const st = await stat(target).catch(() => undefined)
  return st?.isFile() === true && st.size === file.size
}

/** The signed manifest of the version the node names (ratified, or the only one). */
async function manifestOf(client: NodeClient, key: string): Promise<{ id: string; body: ManifestBody }> {
  // Signed by a member of the pinned federation, when this home has pinned one (verify and
  // exec check the files against a certificate afterwards in any case).
  const [m, pin] = await Promise.all([getModel(client, key), readPin()])
  const id = m.manifest ?? (m.manifests.length === 1 ? m.manifests[0]!.id : undefined)
  if (id === undefined)
    throw new CliError(
      m.manifests.length === 0 ? 'unknown-model' : 'no-manifest',
      m.manifests.length === 0
        ? `no manifest of ${key} is known to the node`
        : `${key} has ${m.manifests.length} rival manifests and none is ratified`,
    )
  const body = await fetchManifest(client, id, pin ? CID.parse(pin.federation) : undefined)
  if (body.name !== m.name || body.version !== m.version)
    throw new CliError('bad-answer', `the node's manifest ${id} is for ${body.name}@${body.version}`)
  return { id, body }
}

/**
 * The node's replication report for `key` (asked while the manifest is fetched and checked), or
 * nothing when the node has no such route or fails to answer; its gateways are read only for the
 * weights of the checked manifest.
 */
async function replicationOf(client: NodeClient, key: string): Promise<unknown> {
  try {
    const res = await fetch(`${client.base}/replication?model=${encodeURIComponent(key)}`, {
      headers: { accept: 'application/json' },
      signal: AbortSignal.timeout(client.timeoutMs),
    })
    return res.ok ? await res.json() : undefined
  } catch {
    return undefined // the node itself stays a source; its other routes have answered
  }
}

function progressBar(ctx: Ctx, total: number): cliProgress.SingleBar | undefined {
  if (ctx.json || !process.stderr.isTTY || total === 0) return undefined
  return new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: 'fetching [{bar}] {percentage}% {value}/{total} bytes',
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  )
}

function problemError(problem: Problem): CliError {
  return new CliError(
    problem.code,
    `${problem.path !== undefined ? `${problem.path}: ` : ''}${problem.message}`,
  )
}

function idleMsOf(text: string): number {
  const seconds = Number(text)
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 3600)
    throw usage(`--idle-timeout: a number of seconds from 0 to 3600, not ${text.slice(0, 20)}`)
  return Math.round(seconds * 1000)
}

function targetFile({ file, target }: Target): TargetFile {
  return { path: file.path, size: file.size, sha256: file.sha256, target }
}

interface RoundResult {
  sources: MultiFetchResult['sources']
  resumedBytes: number
  receivedBytes: number
}

/** One fetch of `files` into place, with a progress bar on a terminal; Ctrl-C keeps the journals. */
async function fetchRound(
  ctx: Ctx,
  files: readonly TargetFile[],
  options: { weights: CID; sources: readonly string[]; idleMs: number },
): Promise<RoundResult> {
  const bar = progressBar(
    ctx,
    files.reduce((n, t) => n + t.size, 0),
  )
  bar?.start(
    files.reduce((n, t) => n + t.size, 0),
    0,
  )
  const abort = new AbortController()
  const interrupt = () =>
    abort.abort(new CliError('aborted', 'the fetch was interrupted; run it again to resume'))
  process.once('SIGINT', interrupt)
  try {
    const result = await fetchFiles({
      ...options,
      files,
      signal: abort.signal,
      onBytes: (n) => bar?.increment(n),
      // The message names the source.
      onDrop: (_source, e) => ctx.notice('source-dropped', `source dropped: ${(e as Error)?.message ?? e}`),
    })
    return { sources: result.sources, resumedBytes: result.resumedBytes, receivedBytes: result.receivedBytes }
  } finally {
    process.off('SIGINT', interrupt)
    bar?.stop()
  }
}

interface Target {
  readonly file: ManifestFile
  readonly target: string
}

/**
 * Fetches the files not already there, checks the directory, and fetches again a kept file the
 * check finds with other bytes (then checks again); throws the first problem left.
 */
async function fetchAndCheck(
  ctx: Ctx,
  dir: string,
  body: ManifestBody,
  askedFor: ReadonlySet<string>,
  targets: readonly Target[],
  options: { weights: CID; sources: readonly string[]; idleMs: number },
): Promise<{ fetched: RoundResult; files: number }> {
  const todo: Target[] = []
  for (const t of targets) {
    if (await sizeMatches(t.target, t.file)) continue
    await rm(t.target, { force: true }) // a wrong copy is not kept beside the new one (disk ≤ 1.1× the model)
    todo.push(t)
  }
  const fetched = await fetchRound(ctx, todo.map(targetFile), options)
  // The files just fetched were checked as they were written; only the kept ones are read again.
  const checked = new Set(todo.map((t) => t.file.path))
  let problems = await checkFetchedDirectory(dir, body, askedFor, checked)
  const wrong = targets.filter(
    (t) => !todo.includes(t) && problems.some((p) => p.path === t.file.path && p.code === 'sha256-mismatch'),
  )
  if (wrong.length > 0) {
    for (const t of wrong) await rm(t.target, { force: true })
    const again = await fetchRound(ctx, wrong.map(targetFile), options)
    fetched.sources = again.sources
    fetched.receivedBytes += again.receivedBytes
    for (const t of wrong) checked.add(t.file.path)
    problems = await checkFetchedDirectory(dir, body, askedFor, checked)
  }
  if (problems.length > 0) throw problemError(problems[0]!)
  return { fetched, files: todo.length + wrong.length }
}

export function registerFetch(cli: Command): void {
  const collect = (value: string, previous: string[]) => [...previous, value]
  const cmd = withNode(
    cli
      .command('fetch')
      .description(
        "download a model version's files from several gateways at once, every block verified; resumable",
      )
      .argument('<name@version>')
      .requiredOption('--out <dir>', 'the directory to write the files into (created if missing)')
      .option('--gateway <url>', 'another trustless gateway to fetch from (repeatable)', collect, [])
      .option('--include <glob>', 'fetch only the files whose path matches (repeatable; * ? **)', collect, [])
      .option(
        '--idle-timeout <seconds>',
        'drop a source that sends nothing for this long',
        String(IDLE_MS / 1000),
      ),
  )
  examples(cmd, [
    'allmende fetch mistral-7b-de@1.2.0 --out ./mistral-7b-de',
    'allmende fetch org/m@2.0.0 --out ./m --node http://10.0.0.5:7070 --gateway http://10.0.0.6:7070',
    "allmende fetch org/m@2.0.0 --out ./m --include '*.json' --include 'model-00001-*'",
  ])
  cmd.action(
    action<FetchOptions>(async (ctx, opts, [ref]) => {
      const { key } = parseModelRef(ref!)
      if (opts.out.length === 0) throw usage('--out: a directory is needed')
      const idleMs = idleMsOf(opts.idleTimeout)
      const wanted = includeMatcher(opts.include)
      const client = new NodeClient(opts.node)
      const replication = replicationOf(client, key)
      const { id: manifestId, body } = await manifestOf(client, key)
      const dir = resolve(opts.out)
      const included = body.files.filter((f) => wanted(f.path))
      if (included.length === 0)
        throw new CliError('include-matches-nothing', `no file of ${key} matches ${opts.include.join(', ')}`)
      const targets = included.map((f) => ({ file: f, target: targetOf(dir, f.path) }))
      await mkdir(dir, { recursive: true })
      const report = await replication
      const holders = report === undefined ? [] : holderGateways(report, body.weights.toString())
      const sources = sourceList(client.base, opts.gateway, holders)

      const askedFor = new Set(included.map((f) => f.path))
      const { fetched, files } = await fetchAndCheck(ctx, dir, body, askedFor, targets, {
        weights: body.weights,
        sources,
        idleMs,
      })
      ctx.out(
        {
          model: key,
          manifest: manifestId,
          dir,
          files: included.length,
          bytes: included.reduce((n, f) => n + f.size, 0),
          fetched: files,
          sources: fetched.sources.map((s) => ({
            source: s.source,
            units: s.units,
            bytes: s.bytes,
            ...(s.dropped ? { dropped: s.dropped } : {}),
          })),
          resumedBytes: fetched.resumedBytes,
          receivedBytes: fetched.receivedBytes,
        },
        `${key}: ${included.length} files, ${included.reduce((n, f) => n + f.size, 0)} bytes in ${dir} (${files} fetched from ${fetched.sources.filter((s) => s.units > 0).length} of ${sources.length} sources, ${targets.length - files} already complete)`,
      )
    }),
  )
}
