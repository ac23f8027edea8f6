/**
 * Weights against a manifest (DESIGN.md §4 "Ratify and weights", §7 `verify`).
 *
 * Two checks, both reading every byte once and returning problems as data with stable codes
 * (`{ok, problems: [{code, path?, message}]}`, the shape `allmende verify --json` prints):
 *
 * - `verifyDirectory`: a model directory on disk (a deployer before inference). The file set must
 *   equal the manifest's, each file must have its size and sha256; with `cid: true` the
 *   directory's `unixfs-v1-2025` root must also equal `weights` (same single read: the leaf
 *   digests are taken on the way). Files are hashed on worker threads, several at once, so a
 *   model of many shards is checked at the speed of every core (hash-pool.ts).
 * - `verifyDag`: the DAG under `weights` in a blockstore (a steward before sealing
 *   `weightsVerified`). Blocks are read with `offline: true`, so a missing block is the problem
 *   `block-missing`, never a network wait. Every block is hashed against its CID as it is read.
 *   The listing (directory blocks and file roots) is checked first — the file set and declared
 *   sizes against the manifest and `maxModelBytes` — so an oversize or mismatched model is refused
 *   before its data is read. Then every file is exported once; its bytes feed its sha256 and a
 *   fresh import with the profile, whose root must equal `weights`.
 *
 * Why re-import instead of checking the DAG's shape: the profile is defined by what the importer
 * produces (chunking, the balanced layout's exact fill order, when a single leaf replaces a
 * file node, when a directory becomes a HAMT, no mode or mtime). Re-checking each rule by hand
 * would be a second, subtly different definition; recomputing the root is the definition itself,
 * costs one sha256 per byte that is being read anyway, and proves what deployers rely on: that
 * `verify --cid` on the fetched directory gives the published root. With the per-block hash
 * check it also proves the stored blocks are the blocks of `weights`, which is what peers will
 * be served.
 *
 * Codes: `file-missing`, `file-extra`, `size-mismatch`, `sha256-mismatch`, `root-mismatch`,
 * `block-missing`, `block-corrupt`, `not-unixfs`, `oversize`, `aborted`, and the listing issues
 * of a directory (`path-invalid`, `symlink-escapes`, `special-file`, `unreadable`,
 * `too-many-files`, `file-changed`).
 */
import { createHash } from 'node:crypto'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { exporter, type ReadableStorage, type UnixFSEntry } from 'ipfs-unixfs-exporter'
import type { CID } from 'multiformats/cid'
import { equalBytes } from '../../protocol/bytes.js'
import { DAG_PB_CODE, RAW_CODE, SHA2_256_CODE } from '../../protocol/cid.js'
import { LIMITS } from '../../protocol/limits.js'
import type { ManifestBody, ManifestFile } from '../../protocol/types.js'
import { isNodeError, NodeError } from '../errors.js'
import {
  aborted,
  CHUNK_BYTES,
  comparePaths,
  type FileDigest,
  type ListOptions,
  type LocalFile,
  leafCids,
  listDirectory,
  MAX_BLOCK_BYTES,
  pathProblem,
  progress,
  rootOfHashed,
  unixfsRoot,
} from './directory.js'
import { type HashDone, hashFiles } from './hash-pool.js'

export type ProblemCode =
  | 'file-missing'
  | 'file-extra'
  | 'size-mismatch'
  | 'sha256-mismatch'
  | 'root-mismatch'
  | 'block-missing'
  | 'block-corrupt'
  | 'not-unixfs'
  | 'oversize'
  | 'aborted'
  | 'path-invalid'
  | 'symlink-escapes'
  | 'special-file'
  | 'unreadable'
  | 'too-many-files'
  | 'file-changed'

export interface Problem {
  readonly code: ProblemCode
  readonly path?: string
  readonly message: string
}

export interface VerifyResult {
  readonly ok: boolean
  readonly problems: readonly Problem[]
}

/** The fields of a manifest that weights are checked against. */
export type WeightsManifest = Pick<ManifestBody, 'weights' | 'files' | 'size'>

/** Codes a `NodeError` raised while reading may carry and that are reported as problems. */
const READ_CODES: ReadonlySet<string> = new Set<ProblemCode>([
  'block-missing',
  'block-corrupt',
  'not-unixfs',
  'aborted',
  'path-invalid',
  'special-file',
  'unreadable',
  'too-many-files',
  'file-changed',
])

export interface VerifyDirectoryOptions extends ListOptions {
  /** Also recompute the UnixFS root and compare it with `weights`. */
  readonly cid?: boolean
  readonly signal?: AbortSignal
  readonly onProgress?: (bytesRead: number, totalBytes: number) => void
}

/**
 * Checks a model directory against a manifest, reading each file once. Throws only
 * `NodeError('not-a-directory')`; everything else is a problem.
 */
export async function verifyDirectory(
  dir: string,
  manifest: WeightsManifest,
  options: VerifyDirectoryOptions = {},
): Promise<VerifyResult> {
  const problems: Problem[] = []
  const wanted = manifestFiles(manifest, problems)
  const listing = await listDirectory(dir, options)
  for (const i of listing.issues) problems.push({ code: i.code, path: i.path, message: i.message })
  const local = new Map(listing.files.map((f) => [f.path, f]))
  for (const path of wanted.keys()) {
    if (!local.has(path)) problems.push({ code: 'file-missing', path, message: `${path} is missing` })
  }
  const toRead: LocalFile[] = []
  for (const f of listing.files) {
    const m = wanted.get(f.path)
    if (m === undefined) {
      problems.push({ code: 'file-extra', path: f.path, message: `${f.path} is not in the manifest` })
    } else if (m.size !== f.size) {
      problems.push(sizeMismatch(f.path, f.size, m.size))
    } else toRead.push(f)
  }
  const total = toRead.reduce((s, f) => s + f.size, 0)
  // With the root: only when the file set is the manifest's, so that the root can match.
  const withRoot = options.cid === true && problems.length === 0
  // Every file read once, on worker threads, several at a time (hash-pool.ts says why).
  const outcomes = await hashFiles(toRead, {
    leaves: withRoot,
    chunkBytes: CHUNK_BYTES,
    signal: options.signal,
    onBytes: progress(total, options.onProgress),
  })
  const digests = new Map<string, HashDone & FileDigest>()
  let abortedAt: string | undefined
  for (const [i, f] of toRead.entries()) {
    const o = outcomes[i]!
    if (o.ok) digests.set(f.path, { ...o.digest, sha256: o.digest.sha256! })
    // One abort is one problem, named after the first file it cut short.
    else if (o.error.code === 'aborted') abortedAt ??= f.path
    else problems.push(asProblem(o.error, f.path))
  }
  if (abortedAt !== undefined) problems.push(asProblem(aborted(), abortedAt))
  if (withRoot && digests.size === toRead.length) {
    const hashed = toRead.map((f) => {
      const d = digests.get(f.path)!
      return { path: f.path, size: d.size, leaves: leafCids(f.path, d.size, d.leaves!) }
    })
    try {
      const root = await rootOfHashed(hashed)
      if (!root.equals(manifest.weights)) problems.push(rootMismatch(root, manifest.weights))
    } catch (e) {
      problems.push(asProblem(e, undefined))
    }
  }
  compareDigests(wanted, digests, problems)
  return result(problems)
}

export interface VerifyDagOptions {
  /** The federation's `maxModelBytes`: larger models are refused before their data is read. */
  readonly maxModelBytes: number
  readonly signal?: AbortSignal
  readonly onProgress?: (bytesRead: number, totalBytes: number) => void
  /**
   * Blocks the caller has just hashed against their CIDs (a fetch that stored them), key
   * (`cid.toString()`) to size: read but not hashed again. Each file's sha256 still covers them.
   */
  readonly trusted?: ReadonlyMap<string, number>
  /**
   * Files' sha256 the caller took from their leaves in order (a gateway stream, `DfsFileDigests`),
   * by file node CID. Used, instead of reading the file, only for a file in the profile's shape
   * whose every leaf is in `trusted` with the size its place needs.
   */
  readonly fileDigests?: ReadonlyMap<string, FileDigest>
}

/**
 * Checks the DAG under `manifest.weights` in `blockstore` against the manifest, never waiting on
 * the network. Throws nothing for bad data; every defect is a problem.
 */
export async function verifyDag(
  blockstore: ReadableStorage,
  manifest: WeightsManifest,
  options: VerifyDagOptions,
): Promise<VerifyResult> {
  const problems: Problem[] = []
  const wanted = manifestFiles(manifest, problems)
  if (manifest.size > options.maxModelBytes) {
    problems.push(oversize(manifest.size, options.maxModelBytes, 'the manifest'))
    return result(problems)
  }
  if (problems.length > 0) return result(problems)
  const reader = new VerifiedReader(blockstore, options.signal, options.trusted)
  // Listing: directory blocks and file roots (small files are read whole here, hence the budget).
  reader.budget = 4 * LIMITS.maxManifestFiles + 4096
  let listed: DagFile[]
  try {
    listed = await listDag(reader, manifest.weights, options.signal)
  } catch (e) {
    problems.push(asProblem(e, faultPaths.get(e as object)))
    return result(problems)
  }
  const declared = listed.reduce((s, f) => s + f.size, 0)
  if (declared > options.maxModelBytes) {
    problems.push(oversize(declared, options.maxModelBytes, 'the DAG'))
    return result(problems)
  }
  const present = new Map(listed.map((f) => [f.path, f]))
  for (const path of wanted.keys()) {
    if (!present.has(path))
      problems.push({ code: 'file-missing', path, message: `${path} is not in the DAG` })
  }
  for (const f of listed) {
    const m = wanted.get(f.path)
    if (m === undefined)
      problems.push({ code: 'file-extra', path: f.path, message: `${f.path} is not in the manifest` })
    else if (m.size !== f.size) problems.push(sizeMismatch(f.path, f.size, m.size))
  }
  if (problems.length > 0) return result(problems)

  // Data: each file once, hashed and re-imported. A DAG can link one leaf many times, so the
  // block budget follows the declared sizes (already bounded by maxModelBytes).
  reader.budget += 2 * Math.ceil(declared / CHUNK_BYTES) + 4 * listed.length
  let onBytes = progress(declared, options.onProgress)
  const digests = new Map<string, FileDigest>()
  try {
    // The common case, a DAG in the profile's shape (raw leaves of 1 MiB): each leaf is read once
    // for the file's sha256, and the root is rebuilt from the leaves' CIDs with the importer's own
    // layout (rootOfHashed) instead of hashing every byte again in a re-import. Anything else
    // (other chunking, inline data, dag-pb leaves) takes the general path below, which then finds
    // the root mismatch.
    const fast = await leafFiles(reader, listed, options.signal)
    const known = knownDigests(fast, options.trusted, options.fileDigests)
    if (fast !== undefined && (await readLeaves(reader, fast, known, digests, onBytes, options.signal))) {
      const root = await rootOfHashed(fast)
      if (!root.equals(manifest.weights)) problems.push(rootMismatch(root, manifest.weights))
      compareDigests(wanted, digests, problems)
      return result(problems)
    }
    digests.clear()
    onBytes = progress(declared, options.onProgress) // the general path reads everything again
    if (fast !== undefined) reader.budget += 2 * Math.ceil(declared / CHUNK_BYTES) + 4 * listed.length
    const entries = listed.map((f) => ({
      path: f.path,
      content: exportChunks(reader, f, (d) => digests.set(f.path, d), onBytes, options.signal),
    }))
    const root = await unixfsRoot(entries)
    if (!root.equals(manifest.weights)) problems.push(rootMismatch(root, manifest.weights))
  } catch (e) {
    problems.push(asProblem(e, faultPaths.get(e as object)))
  }
  compareDigests(wanted, digests, problems)
  return result(problems)
}

/**
 * Each file's raw leaves in order, reading only its dag-pb nodes; undefined unless every file is
 * raw leaves under plain file nodes (no inline data) whose count fits 1 MiB chunks of its size.
 */
async function leafFiles(
  reader: VerifiedReader,
  files: readonly DagFile[],
  signal: AbortSignal | undefined,
): Promise<LeafFile[] | undefined> {
  const out: LeafFile[] = []
  for (const f of files) {
    const leaves: CID[] = []
    const stack: CID[] = [f.cid]
    while (stack.length > 0) {
      if (signal?.aborted) throw aborted()
      const cid = stack.pop()!
      if (cid.code === RAW_CODE) {
        leaves.push(cid)
        continue
      }
      if (cid.code !== DAG_PB_CODE) return undefined
      let node: dagPb.PBNode
      let fs: UnixFS
      try {
        node = dagPb.decode(await readAll(reader, cid, f.path))
        fs = UnixFS.unmarshal(node.Data ?? new Uint8Array())
      } catch (e) {
        if (isNodeError(e)) throw e
        return undefined
      }
      if (fs.type !== 'file' || (fs.data !== undefined && fs.data.length > 0)) return undefined
      for (let i = node.Links.length - 1; i >= 0; i--) stack.push(node.Links[i]!.Hash)
    }
    if (leaves.length !== Math.max(1, Math.ceil(f.size / CHUNK_BYTES))) return undefined
    out.push({ path: f.path, cid: f.cid, size: f.size, leaves })
  }
  return out
}

interface LeafFile {
  readonly path: string
  readonly cid: CID
  readonly size: number
  readonly leaves: readonly CID[]
}

/**
 * The digests in `fileDigests` that can stand for reading a file: its size is the file's, and
 * every leaf was hashed by the caller at the size its place in 1 MiB chunking needs.
 */
function knownDigests(
  files: readonly LeafFile[] | undefined,
  trusted: ReadonlyMap<string, number> | undefined,
  fileDigests: ReadonlyMap<string, FileDigest> | undefined,
): Map<string, FileDigest> {
  const known = new Map<string, FileDigest>()
  if (files === undefined || trusted === undefined || fileDigests === undefined) return known
  for (const f of files) {
    const d = fileDigests.get(f.cid.toString())
    if (d === undefined || d.size !== f.size) continue
    const fits = f.leaves.every(
      (leaf, i) =>
        trusted.get(leaf.toString()) === (i < f.leaves.length - 1 ? CHUNK_BYTES : f.size - i * CHUNK_BYTES),
    )
    if (fits) known.set(f.path, d)
  }
  return known
}

/**
 * Reads every leaf once (a few ahead), feeding each file's sha256, except in the files whose
 * digest is `known`; false as soon as a leaf is not the size its place in 1 MiB chunking needs
 * (the DAG is then not in the profile's shape).
 */
async function readLeaves(
  reader: VerifiedReader,
  files: readonly LeafFile[],
  known: ReadonlyMap<string, FileDigest>,
  digests: Map<string, FileDigest>,
  onBytes: (n: number) => void,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  for (const f of files) {
    const digest = known.get(f.path)
    if (digest !== undefined) {
      digests.set(f.path, digest)
      onBytes(f.size)
      continue
    }
    const hash = createHash('sha256')
    const ahead: Promise<Uint8Array>[] = []
    const start = (i: number) => {
      const p = readAll(reader, f.leaves[i]!, f.path)
      p.catch(() => {}) // awaited in order below
      ahead.push(p)
    }
    for (let i = 0; i < Math.min(LEAVES_AHEAD, f.leaves.length); i++) start(i)
    for (let i = 0; i < f.leaves.length; i++) {
      if (signal?.aborted) throw aborted()
      const bytes = await ahead.shift()!
      if (i + LEAVES_AHEAD < f.leaves.length) start(i + LEAVES_AHEAD)
      const expected = i < f.leaves.length - 1 ? CHUNK_BYTES : f.size - i * CHUNK_BYTES
      if (bytes.length !== expected) {
        await Promise.allSettled(ahead)
        return false
      }
      hash.update(bytes)
      onBytes(bytes.length)
    }
    digests.set(f.path, { size: f.size, sha256: new Uint8Array(hash.digest()) })
  }
  return true
}

/** Leaves read ahead of the one being hashed (1 MiB each). */
const LEAVES_AHEAD = 4

async function readAll(reader: VerifiedReader, cid: CID, path: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  try {
    for await (const part of reader.get(cid)) parts.push(part)
  } catch (e) {
    throw asFault(e, path)
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
}

/** The manifest's files by path; unusable paths become problems (and are not looked up). */
function manifestFiles(manifest: WeightsManifest, problems: Problem[]): Map<string, ManifestFile> {
  const wanted = new Map<string, ManifestFile>()
  let sum = 0
  for (const f of manifest.files) {
    sum += f.size
    const why = pathProblem(f.path)
    if (why !== undefined || wanted.has(f.path)) {
      const message = `the manifest lists ${JSON.stringify(f.path.slice(0, 200))}: ${why ?? 'twice'}`
      problems.push({ code: 'path-invalid', path: f.path, message })
    } else wanted.set(f.path, f)
  }
  if (sum !== manifest.size) {
    problems.push({
      code: 'size-mismatch',
      message: `the manifest's size ${manifest.size} is not the sum of its file sizes (${sum})`,
    })
  }
  return wanted
}

function compareDigests(wanted: Map<string, ManifestFile>, digests: Map<string, FileDigest>, out: Problem[]) {
  for (const [path, d] of digests) {
    const m = wanted.get(path)
    if (m === undefined) continue
    if (d.size !== m.size) out.push(sizeMismatch(path, d.size, m.size))
    else if (!equalBytes(d.sha256, m.sha256)) {
      out.push({
        code: 'sha256-mismatch',
        path,
        message: `${path}: sha256 ${hex(d.sha256)}, the manifest says ${hex(m.sha256)}`,
      })
    }
  }
}

function result(problems: Problem[]): VerifyResult {
  problems.sort(
    (a, b) => comparePaths(a.path ?? '', b.path ?? '') || (a.code < b.code ? -1 : a.code > b.code ? 1 : 0),
  )
  return { ok: problems.length === 0, problems }
}

function sizeMismatch(path: string, actual: number, expected: number): Problem {
  return { code: 'size-mismatch', path, message: `${path}: ${actual} bytes, the manifest says ${expected}` }
}

function rootMismatch(actual: CID, expected: CID): Problem {
  return { code: 'root-mismatch', message: `the UnixFS root is ${actual}, the manifest says ${expected}` }
}

function oversize(bytes: number, max: number, what: string): Problem {
  return { code: 'oversize', message: `${what} holds ${bytes} bytes, more than maxModelBytes (${max})` }
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

/** Turns anything raised while reading into a problem; unexpected errors are rethrown. */
function asProblem(e: unknown, path: string | undefined): Problem {
  if (isNodeError(e) && READ_CODES.has(e.code)) {
    const p = { code: e.code as ProblemCode, message: e.message }
    return path === undefined ? p : { ...p, path }
  }
  throw e
}

/** The file a fault was raised for (set where the path is known, read where it is reported). */
const faultPaths = new WeakMap<object, string>()

function fault(code: ProblemCode, message: string, path?: string): NodeError {
  const e = new NodeError(code, message, { status: 422 })
  if (path !== undefined) faultPaths.set(e, path)
  return e
}

/** Anything the exporter raises about a block's content means the DAG is not UnixFS as made. */
function asFault(e: unknown, path: string): NodeError {
  const err = isNodeError(e) ? e : fault('not-unixfs', `${path}: ${(e as Error)?.message ?? String(e)}`)
  if (!faultPaths.has(err)) faultPaths.set(err, path)
  return err
}

/**
 * Block reads for the exporter: offline, bounded in size and count, each block hashed against
 * its CID. Only CIDv1 sha2-256 dag-pb and raw blocks exist in the profile; others are refused.
 */
class VerifiedReader implements ReadableStorage {
  budget = 0
  private blocks = 0

  constructor(
    private readonly store: ReadableStorage,
    private readonly signal: AbortSignal | undefined,
    private readonly trusted?: ReadonlyMap<string, number>,
  ) {}

  get(cid: CID): AsyncGenerator<Uint8Array> {
    return this.read(cid)
  }

  private async *read(cid: CID): AsyncGenerator<Uint8Array> {
    if (this.signal?.aborted) throw aborted()
    checkCid(cid)
    if (++this.blocks > this.budget)
      throw fault('not-unixfs', `the DAG needs more than ${this.budget} blocks`)
    const parts: Uint8Array[] = []
    let n = 0
    const options: { signal?: AbortSignal; offline: boolean } = { offline: true }
    if (this.signal !== undefined) options.signal = this.signal
    try {
      for await (const part of this.store.get(cid, options)) {
        n += part.length
        if (n > MAX_BLOCK_BYTES) throw fault('not-unixfs', `block ${cid} is over ${MAX_BLOCK_BYTES} bytes`)
        parts.push(part)
      }
    } catch (e) {
      if (isNodeError(e)) throw e
      if (this.signal?.aborted) throw aborted()
      const name = (e as Error)?.name
      if (name === 'NotFoundError' || name === 'BlockNotFoundWhileOfflineError') {
        throw fault('block-missing', `block ${cid} is not in the blockstore`)
      }
      throw fault('unreadable', `block ${cid}: ${(e as Error)?.message ?? String(e)}`)
    }
    const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
    if (this.trusted?.get(cid.toString()) !== bytes.length) {
      const digest = createHash('sha256').update(bytes).digest()
      if (!equalBytes(digest, cid.multihash.digest))
        throw fault('block-corrupt', `block ${cid} does not match its CID`)
    }
    yield bytes
  }
}

function checkCid(cid: CID): void {
  if (cid.version !== 1 || cid.multihash.code !== SHA2_256_CODE || cid.multihash.size !== 32) {
    throw fault('not-unixfs', `${cid} is not a CIDv1 with a sha2-256 multihash`)
  }
  if (cid.code !== DAG_PB_CODE && cid.code !== RAW_CODE)
    throw fault('not-unixfs', `${cid} is neither dag-pb nor raw`)
}

interface DagFile {
  readonly path: string
  readonly cid: CID
  readonly size: number
}

/** The regular files under `root`, sorted by path, with their declared sizes. */
async function listDag(
  reader: VerifiedReader,
  root: CID,
  signal: AbortSignal | undefined,
): Promise<DagFile[]> {
  const files: DagFile[] = []
  const seen = new Set<string>()
  const pending: { cid: CID; path: string }[] = [{ cid: root, path: '' }]
  while (pending.length > 0) {
    const { cid, path } = pending.pop()!
    const where = path === '' ? 'the root' : path
    let entry: UnixFSEntry
    try {
      checkCid(cid)
      entry = await exporter(cid, reader, { signal })
    } catch (e) {
      throw asFault(e, where)
    }
    if (entry.type === 'directory') {
      try {
        for await (const child of entry.entries({ signal })) {
          const childPath = path === '' ? child.name : `${path}/${child.name}`
          const why = child.name.includes('/') ? 'a name with "/"' : pathProblem(childPath)
          if (why !== undefined)
            throw fault('path-invalid', `${JSON.stringify(childPath.slice(0, 200))}: ${why}`)
          if (seen.has(childPath)) throw fault('not-unixfs', `${childPath} appears twice`, childPath)
          seen.add(childPath)
          if (seen.size > 2 * LIMITS.maxManifestFiles) {
            throw fault('too-many-files', `the DAG holds more than ${2 * LIMITS.maxManifestFiles} entries`)
          }
          pending.push({ cid: child.cid, path: childPath })
        }
      } catch (e) {
        throw asFault(e, where)
      }
      continue
    }
    if (path === '') throw fault('not-unixfs', `the root ${root} is not a UnixFS directory`)
    let size: bigint
    if (entry.type === 'raw') size = entry.size
    else if (entry.type === 'file' && entry.unixfs.type === 'file') size = entry.unixfs.fileSize()
    else {
      const kind = entry.type === 'file' ? entry.unixfs.type : entry.type
      throw fault('not-unixfs', `${path} is a ${kind}, not a file`, path)
    }
    if (size > BigInt(Number.MAX_SAFE_INTEGER))
      throw fault('not-unixfs', `${path} declares ${size} bytes`, path)
    files.push({ path, cid, size: Number(size) })
  }
  files.sort((a, b) => comparePaths(a.path, b.path))
  return files
}

/** A file's bytes from the DAG, hashed as they pass; `done` gets the digest at the end. */
async function* exportChunks(
  reader: VerifiedReader,
  file: DagFile,
  done: (d: FileDigest) => void,
  onBytes: (n: number) => void,
  signal: AbortSignal | undefined,
): AsyncGenerator<Uint8Array, void, undefined> {
  const hash = createHash('sha256')
  let size = 0
  try {
    const entry = await exporter(file.cid, reader, { signal })
    if (entry.type !== 'file' && entry.type !== 'raw') throw fault('not-unixfs', `${file.path} is not a file`)
    // A bounded number of leaves in flight (the exporter's default is unbounded).
    for await (const chunk of entry.content({ signal, blockReadConcurrency: 8 })) {
      hash.update(chunk)
      size += chunk.length
      onBytes(chunk.length)
      yield chunk
    }
  } catch (e) {
    throw asFault(e, file.path)
  }
  done({ size, sha256: new Uint8Array(hash.digest()) })
}
