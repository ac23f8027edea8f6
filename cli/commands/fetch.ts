/**
 * `allmende fetch N@V --out DIR`: the manifest the node names for the version
 * (its signature and CID checked), then each file's DAG from the node's trustless gateway as a
 * CAR (`GET /ipfs/<root>/<path>?format=car&dag-scope=all`). Every block is hashed against its
 * CID as it streams in and is kept in a temporary on-disk block store (memory stays flat), then
 * the file is exported from there into DIR while its sha256 and size are checked against the
 * manifest. Nothing is trusted but the signed manifest.
 *
 * Resumable: a file already in DIR with the manifest's size and sha256 is kept untouched; every
 * other file is fetched again from the start. At the end the whole directory is checked as
 * `verify` does (no missing, no extra, no changed file). Exit 1 naming the file on any mismatch,
 * 3 when the node cannot be reached.
 */
import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { CarBlockIterator } from '@ipld/car/iterator'
import cliProgress from 'cli-progress'
import type { Command } from 'commander'
import { exporter } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'
import { CAR_TYPE, pathProblem, verifyDirectory } from '../../node/weights/index.js'
import { equalBytes } from '../../protocol/bytes.js'
import type { ManifestBody, ManifestFile } from '../../protocol/types.js'
import { NodeClient, withNode } from '../client.js'
import { action, CliError, EXIT, examples, usage } from '../context.js'
import { readPin } from '../federation-pin.js'
import { getModel, parseModelRef } from '../records.js'
import { fetchManifest } from '../verify-online.js'

const SHA256 = 0x12
const IDENTITY = 0x00

function toHex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex')
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

/** True when `target` is a regular file with the manifest's size and sha256. */
async function complete(target: string, file: ManifestFile): Promise<boolean> {
  const st = await stat(target).catch(() => undefined)
  if (!st?.isFile() || st.size !== file.size) return false
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(target)) hash.update(chunk as Buffer)
  return equalBytes(new Uint8Array(hash.digest()), file.sha256)
}

function checkBlock(cid: CID, bytes: Uint8Array, path: string): void {
  const code = cid.multihash.code
  let ok: boolean
  if (code === SHA256)
    ok = equalBytes(new Uint8Array(createHash('sha256').update(bytes).digest()), cid.multihash.digest)
  else if (code === IDENTITY) ok = equalBytes(bytes, cid.multihash.digest)
  else
    throw new CliError(
      'block-corrupt',
      `${path}: block ${cid} uses an unsupported hash (0x${code.toString(16)})`,
    )
  if (!ok) throw new CliError('block-corrupt', `${path}: block ${cid} does not hash to its CID`)
}

function unreachable(base: string, e: unknown): CliError {
  const err = e as Error & { cause?: { code?: string; message?: string } }
  const why = err.cause?.code ?? err.cause?.message ?? err.message
  return new CliError(
    'node-unreachable',
    `cannot reach the node at ${base} (${why}); is it running? (set --node or $ALLMENDE_NODE)`,
    EXIT.unreachable,
  )
}

/** Streams the CAR of one file into `store` (a directory of blocks named by CID), every block checked. */
async function fetchBlocks(client: NodeClient, root: CID, path: string, store: string): Promise<void> {
  const url = `${client.base}/ipfs/${root}/${path.split('/').map(encodeURIComponent).join('/')}?format=car&dag-scope=all`
  let res: Response
  try {
    res = await fetch(url, { headers: { accept: CAR_TYPE } })
  } catch (e) {
    throw unreachable(client.base, e)
  }
  if (!res.ok || !res.body) {
    const text = await res.text().catch(() => '')
    let message = `the node answered ${res.status} ${res.statusText}`
    try {
      const m = (JSON.parse(text) as { error?: { message?: unknown } }).error?.message
      if (typeof m === 'string') message = m
    } catch {}
    throw new CliError('fetch-failed', `${path}: ${message}`)
  }
  try {
    const blocks = await CarBlockIterator.fromIterable(res.body as unknown as AsyncIterable<Uint8Array>)
    for await (const { cid, bytes } of blocks) {
      checkBlock(cid, bytes, path)
      await writeFile(join(store, cid.toString()), bytes)
    }
  } catch (e) {
    if (e instanceof CliError) throw e
    throw new CliError(
      'fetch-failed',
      `${path}: the node's CAR ended early or is malformed (${(e as Error).message})`,
    )
  }
}

/** Exports `path` from the block store into `target`, checking its size and sha256. */
async function exportFile(
  root: CID,
  file: ManifestFile,
  store: string,
  target: string,
  progress: (n: number) => void,
): Promise<void> {
  const blocks = {
    async *get(cid: CID): AsyncGenerator<Uint8Array> {
      let bytes: Uint8Array
      try {
        bytes = new Uint8Array(await readFile(join(store, cid.toString())))
      } catch {
        throw new CliError('block-missing', `${file.path}: the node did not send block ${cid}`)
      }
      yield bytes
    },
  }
  let entry: Awaited<ReturnType<typeof exporter>>
  try {
    entry = await exporter(`${root}/${file.path}`, blocks)
  } catch (e) {
    if (e instanceof CliError) throw e
    throw new CliError('fetch-failed', `${file.path}: ${(e as Error).message}`)
  }
  if (entry.type !== 'file' && entry.type !== 'raw' && entry.type !== 'identity')
    throw new CliError('not-unixfs', `${file.path}: the weights hold a ${entry.type}, not a file`)
  await mkdir(dirname(target), { recursive: true })
  const hash = createHash('sha256')
  let size = 0
  const out = createWriteStream(target)
  const done = new Promise<void>((ok, fail) => {
    out.once('finish', ok)
    out.once('error', fail)
  })
  try {
    for await (const chunk of entry.content()) {
      size += chunk.length
      if (size > file.size) break
      hash.update(chunk)
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()))
      progress(chunk.length)
    }
  } finally {
    out.end()
    await done
  }
  if (size !== file.size)
    throw new CliError(
      'size-mismatch',
      `${file.path}: the weights hold ${size > file.size ? 'more than ' : ''}${size} bytes, the manifest says ${file.size}`,
    )
  const digest = new Uint8Array(hash.digest())
  if (!equalBytes(digest, file.sha256))
    throw new CliError(
      'sha256-mismatch',
      `${file.path}: sha256 ${toHex(digest)}, the manifest says ${toHex(file.sha256)}`,
    )
}

export function registerFetch(cli: Command): void {
  const cmd = withNode(
    cli
      .command('fetch')
      .description("download a model version's files from a node, every block verified; resumable")
      .argument('<name@version>')
      .requiredOption('--out <dir>', 'the directory to write the files into (created if missing)'),
  )
  examples(cmd, [
    'allmende fetch mistral-7b-de@1.2.0 --out ./mistral-7b-de',
    'allmende fetch org/m@2.0.0 --out ./m --node http://10.0.0.5:7070',
  ])
  cmd.action(
    action<{ node?: string; out: string }>(async (ctx, opts, [ref]) => {
      const { key } = parseModelRef(ref!)
      if (opts.out.length === 0) throw usage('--out: a directory is needed')
      const client = new NodeClient(opts.node)
      const m = await getModel(client, key)
      const manifestId = m.manifest ?? (m.manifests.length === 1 ? m.manifests[0]!.id : undefined)
      if (manifestId === undefined)
        throw new CliError(
          m.manifests.length === 0 ? 'unknown-model' : 'no-manifest',
          m.manifests.length === 0
            ? `no manifest of ${key} is known to the node`
            : `${key} has ${m.manifests.length} rival manifests and none is ratified`,
        )
      // Signed by a member of the pinned federation, when this home has pinned one (verify and
      // exec check the files against a certificate afterwards in any case).
      const pin = await readPin()
      const body: ManifestBody = await fetchManifest(
        client,
        manifestId,
        pin ? CID.parse(pin.federation) : undefined,
      )
      if (body.name !== m.name || body.version !== m.version)
        throw new CliError(
          'bad-answer',
          `the node's manifest ${manifestId} is for ${body.name}@${body.version}`,
        )
      const dir = resolve(opts.out)
      const targets = body.files.map((f) => ({ file: f, target: targetOf(dir, f.path) }))
      await mkdir(dir, { recursive: true })

      const todo: typeof targets = []
      for (const t of targets) if (!(await complete(t.target, t.file))) todo.push(t)
      const total = todo.reduce((n, t) => n + t.file.size, 0)
      const bar =
        !ctx.json && process.stderr.isTTY && total > 0
          ? new cliProgress.SingleBar(
              {
                stream: process.stderr,
                format: 'fetching [{bar}] {percentage}% {value}/{total} bytes',
                hideCursor: true,
              },
              cliProgress.Presets.shades_classic,
            )
          : undefined
      bar?.start(total, 0)
      const store = await mkdtemp(join(tmpdir(), 'allmende-fetch-'))
      try {
        for (const t of todo) {
          await fetchBlocks(client, body.weights, t.file.path, store)
          await exportFile(body.weights, t.file, store, t.target, (n) => bar?.increment(n))
        }
      } finally {
        bar?.stop()
        await rm(store, { recursive: true, force: true })
      }
      const check = await verifyDirectory(dir, body)
      if (check.problems.length > 0) {
        const p = check.problems[0]!
        throw new CliError(p.code, `${p.path !== undefined ? `${p.path}: ` : ''}${p.message}`)
      }
      ctx.out(
        {
          model: key,
          manifest: manifestId,
          dir,
          files: body.files.length,
          bytes: body.size,
          fetched: todo.length,
        },
        `${key}: ${body.files.length} files, ${body.size} bytes in ${dir} (${todo.length} fetched, ${targets.length - todo.length} already complete)`,
      )
    }),
  )
}
