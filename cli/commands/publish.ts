/**
 * `allmende model publish DIR --name N --version V --license SPDX --language L,...`:
 * hashes the directory on every core (sha256 per file and the `unixfs-v1-2025` root), streams the
 * DAG as a CARv1 to the node's POST /weights under a signed upload statement (a second read of the
 * files), then signs the manifest and submits it. Prints `{manifest, weights, files, size}`.
 */
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { CarWriter } from '@ipld/car/writer'
import { SingleBar } from 'cli-progress'
import type { Command } from 'commander'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import type { Signer } from '../../node/index.js'
import {
  CAR_TYPE,
  CID_PROFILE,
  type DirectoryPlan,
  describeModel,
  directoryCar,
  type FileDigest,
  planDirectory,
  UPLOAD_HEADERS,
} from '../../node/weights/index.js'
import {
  type ManifestBody,
  peerIdBytes,
  signRecord,
  UPLOAD_NONCE_BYTES,
  UPLOAD_STATEMENT_VERSION,
  uploadStatementBytes,
} from '../../protocol/index.js'
import { NodeClient, withNode } from '../client.js'
import { action, CliError, type Ctx, examples, usage } from '../context.js'
import { type KeyOptions, signerOf, withKey } from '../keys.js'
import { parseCidArg, resolveManifest, type StateView, submit } from '../records.js'

/** A model card is one raw block; the profile's leaves are 1 MiB too. */
const MAX_CARD_BYTES = 1024 * 1024

interface PublishOptions extends KeyOptions {
  node?: string
  name: string
  version: string
  license: string
  language: string
  base?: string
  card?: string
  description?: string
}

/** The node an upload statement is for: its federation and its libp2p peer id (GET /status). */
export interface UploadTarget {
  readonly federation: CID
  readonly peerId: string
}

/** The federation and peer id of the node behind `client`, for the statements of uploads to it. */
export async function uploadTarget(client: NodeClient): Promise<UploadTarget> {
  const status = await client.get<{ federation: string; peerId: string }>('/status')
  if (typeof status.peerId !== 'string' || peerIdBytes(status.peerId) === undefined)
    throw new CliError('bad-answer', `the node at ${client.base} did not name its peer id in /status`)
  let federation: CID
  try {
    federation = CID.parse(String(status.federation))
  } catch {
    // The node's answer, not the user's input: not a usage error.
    throw new CliError('bad-answer', `the node at ${client.base} did not name its federation in /status`)
  }
  return { federation, peerId: status.peerId }
}

/**
 * The headers of a CAR upload under a publisher's signed upload statement (SPEC.md §7, version
 * 2): the node takes it from anyone who is a publisher, without its admin token. The statement
 * names the federation and this one node, and carries a fresh random nonce, so it is good for
 * one upload to that node only. Signed now: the node refuses stale statements.
 */
export function uploadHeaders(
  signer: Signer,
  target: UploadTarget,
  root: CID,
  size: number,
): Record<string, string> {
  const at = Date.now()
  const nonce = new Uint8Array(randomBytes(UPLOAD_NONCE_BYTES))
  const node = peerIdBytes(target.peerId)
  if (node === undefined) throw new CliError('bad-answer', `not a peer id: ${target.peerId}`)
  const sig = signer.sign(
    uploadStatementBytes({ federation: target.federation, node, root, at, size, nonce }),
  )
  return {
    'content-type': CAR_TYPE,
    [UPLOAD_HEADERS.version]: String(UPLOAD_STATEMENT_VERSION),
    [UPLOAD_HEADERS.author]: signer.did,
    [UPLOAD_HEADERS.federation]: target.federation.toString(),
    [UPLOAD_HEADERS.node]: target.peerId,
    [UPLOAD_HEADERS.root]: root.toString(),
    [UPLOAD_HEADERS.at]: String(at),
    [UPLOAD_HEADERS.size]: String(size),
    [UPLOAD_HEADERS.nonce]: Buffer.from(nonce).toString('hex'),
    [UPLOAD_HEADERS.signature]: Buffer.from(sig).toString('base64'),
  }
}

/** A CARv1 with one root and every block given. */
export async function writeCar(
  root: CID,
  blocks: Iterable<{ cid: CID; bytes: Uint8Array }>,
): Promise<Uint8Array> {
  const { writer, out } = CarWriter.create([root])
  const chunks: Uint8Array[] = []
  const collected = (async () => {
    for await (const c of out) chunks.push(c)
  })()
  for (const b of blocks) await writer.put(b)
  await writer.close()
  await collected
  return new Uint8Array(Buffer.concat(chunks))
}

function progress(ctx: Ctx, what: string): { update(done: number, total: number): void; stop(): void } {
  if (ctx.json || !process.stdout.isTTY) return { update() {}, stop() {} }
  const bar = new SingleBar({
    format: `${what} {bar} {percentage}% | {value}/{total} bytes`,
    hideCursor: true,
    clearOnComplete: true,
  })
  let started = false
  return {
    update(done, total) {
      if (!started) {
        bar.start(total, 0)
        started = true
      }
      bar.update(done)
    },
    stop() {
      if (started) bar.stop()
    },
  }
}

async function publish(ctx: Ctx, opts: PublishOptions, dir: string): Promise<void> {
  const languages = opts.language
    .split(',')
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
  if (languages.length === 0) throw usage('--language: give at least one language, e.g. de,en')
  const client = new NodeClient(opts.node)
  const state = await client.get<StateView>('/state')
  const target = await uploadTarget(client)
  const signer = await signerOf(opts)
  const base = opts.base === undefined ? undefined : await resolveManifest(client, opts.base)
  // The card is one raw block (so its CID is a plain sha256 anyone can check), uploaded beside
  // the weights so every node's gateway can serve it.
  let card: { cid: CID; bytes: Uint8Array } | undefined
  if (opts.card !== undefined) {
    let bytes: Uint8Array
    try {
      bytes = new Uint8Array(await readFile(opts.card))
    } catch (e) {
      throw usage(`--card: cannot read ${opts.card}: ${(e as Error).message}`)
    }
    if (bytes.length > MAX_CARD_BYTES)
      throw usage(`--card: ${opts.card} is ${bytes.length} bytes; a model card may be at most 1 MiB`)
    card = { cid: CID.createV1(raw.code, await sha256.digest(bytes)), bytes }
  }

  // Two reads of the files: the first hashes every 1 MiB leaf (on every core) and gives the
  // root, which the CAR's header and the signed upload statement name before any block is sent;
  // the second streams the leaves to the node, which hashes each against its CID as it stores
  // it, and computes each file's sha256 for the manifest on the way. Nothing is buffered whole,
  // and the node's work overlaps the second read.
  const hashing = progress(ctx, 'hashing')
  let plan: DirectoryPlan
  try {
    plan = await planDirectory(dir, { onProgress: (d, t) => hashing.update(d, t) })
  } finally {
    hashing.stop()
  }
  const paths = plan.planned.map((p) => ({ path: p.file.path }))
  const described = await describeModel(dir, paths)

  ctx.note(`uploading ${plan.size} bytes of weights ${plan.root}`)
  const sending = progress(ctx, 'uploading')
  let sent = 0
  const digests = new Map<string, FileDigest>()
  let uploaded: { root: string }
  try {
    uploaded = await client.postStream<{ root: string }>(
      '/weights',
      directoryCar(plan, {
        reuse: true,
        onBytes: (n) => sending.update((sent += n), plan.size),
        onFile: (path, digest) => digests.set(path, digest),
      }),
      uploadHeaders(signer, target, plan.root, plan.size),
    )
  } finally {
    sending.stop()
  }
  if (uploaded.root !== plan.root.toString())
    throw new CliError('root-mismatch', `the node stored ${uploaded.root}, not ${plan.root}`)
  const files = plan.planned.map(({ file }) => {
    const d = digests.get(file.path)
    if (d === undefined) throw new CliError('import-failed', `${file.path} was not read`)
    return { path: file.path, size: d.size, sha256: d.sha256 }
  })

  const body: ManifestBody = {
    name: opts.name,
    version: opts.version,
    weights: plan.root,
    cidProfile: CID_PROFILE,
    files,
    size: plan.size,
    format: described.format,
    ...(described.parameters !== undefined ? { parameters: described.parameters } : {}),
    license: opts.license,
    languages,
    ...(base ? { base } : {}),
    ...(card ? { card: card.cid } : {}),
    ...(opts.description !== undefined ? { description: opts.description } : {}),
  }
  if (card) {
    const stored = await client.postBytes<{ root: string }>(
      '/weights',
      await writeCar(card.cid, [card]),
      uploadHeaders(signer, target, card.cid, card.bytes.length),
    )
    if (stored.root !== card.cid.toString())
      throw new CliError('root-mismatch', `the node stored ${stored.root}, not the card ${card.cid}`)
  }
  let record: ReturnType<typeof signRecord<'manifest'>>
  try {
    record = signRecord(
      { kind: 'manifest', federation: parseCidArg(state.federation, 'federation'), at: Date.now(), body },
      signer,
    )
  } catch (e) {
    throw usage(`not a valid manifest: ${(e as Error).message}`)
  }
  const answer = await submit(ctx, client, record)
  const out = {
    manifest: answer.id,
    weights: plan.root.toString(),
    files: files.length,
    size: plan.size,
    ...(card ? { card: card.cid.toString() } : {}),
  }
  ctx.out(out, [
    `manifest ${out.manifest}`,
    `weights  ${out.weights} (${out.files} files, ${out.size} bytes)`,
    ...(card ? [`card     ${card.cid} (${card.bytes.length} bytes)`] : []),
    `propose it with: allmende propose ratify ${opts.name}@${opts.version}`,
  ])
}

export function registerPublish(model: Command): Command {
  const cmd = model
    .command('publish')
    .description('upload a model directory to the node and publish its signed manifest')
    .argument('<dir>')
    .requiredOption('--name <name>', 'the model name (may hold one "/")')
    .requiredOption('--version <version>', 'the version')
    .requiredOption('--license <spdx>', 'an SPDX license expression')
    .requiredOption('--language <list>', 'languages, comma-separated (e.g. de,en)')
    .option('--base <name@version>', 'the model version this one derives from')
    .option('--card <file>', 'the model card, at most 1 MiB (uploaded; its CID goes in the manifest)')
    .option('--description <text>', 'a short description')
  withKey(cmd)
  withNode(cmd)
  examples(cmd, [
    'allmende model publish ./mistral-7b-de --name mistral-7b-de --version 1.2.0 --license Apache-2.0 --language de,en',
    'allmende --json model publish ./m --name org/m --version 2.0.0 --license MIT --language en --base org/m@1.0.0',
  ])
  cmd.action(action<PublishOptions>(async (ctx, opts, [dir]) => publish(ctx, opts, dir!)))
  return cmd
}
