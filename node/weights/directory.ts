/**
 * A model directory as a file list and a UnixFS DAG (DESIGN.md §6 "Weights", §7 `model publish`,
 * `verify`).
 *
 * Why one pass: models are tens of GiB, and `publish` needs both every file's sha256 (for the
 * manifest) and the UnixFS root (for `weights`). Each file is read once, in 1 MiB chunks, and every
 * chunk feeds the file's sha256 and the importer together; the importer's blocks go to the given
 * blockstore, or nowhere when only the root is wanted.
 *
 * Two ways to the root: `importDirectory` runs the importer over the bytes on this thread and
 * stores every block; `rootOfHashed` and `planDirectory` (what `verify --cid` and `model publish`
 * use) take the leaf digests the hashing workers computed (hash-pool.ts: several files at once,
 * on every core) and run the importer's own layout and directory code above them, leaving the
 * leaves on disk. Both give the same root; the unit tests hold them to it.
 *
 * Invariants
 * - The file set is the directory's regular files, as relative POSIX paths sorted by UTF-8 bytes
 *   (the order a manifest lists them in). A symlink counts as the file it names when that is a
 *   regular file inside the directory. Anything else — a link leading out or nowhere, a link to a
 *   directory, a FIFO, socket or device, a name that is not UTF-8 or not a valid manifest path —
 *   is an issue: `importDirectory` refuses the directory, `verifyDirectory` reports it. Empty
 *   directories are not part of a model.
 * - The root follows the `unixfs-v1-2025` profile (IPIP-499: CIDv1, sha2-256, raw leaves, 1 MiB
 *   chunks, balanced layout with 1024 links, HAMT sharding above 256 KiB directory blocks), the
 *   files wrapped in one directory, no mode or mtime. `ipfs-car pack DIR` (3.1, a separate
 *   encoder) gives the same root as long as the directory has no dotfiles (it skips them without
 *   `--hidden`), its files do not all sit in one subdirectory (it strips a common prefix) and no
 *   directory holds more than 1,000 entries (it shards by count, not by block size).
 * - A file is opened without following a final symlink and without blocking, and must still be a
 *   regular file of the listed size when read; otherwise the import fails with a typed error.
 */
import { createHash } from 'node:crypto'
import { constants, type Stats } from 'node:fs'
import { type FileHandle, lstat, open, readdir, realpath, stat } from 'node:fs/promises'
import { sep } from 'node:path'
import {
  type BufferImporter,
  type ImporterOptions,
  importer,
  type WritableStorage,
} from 'ipfs-unixfs-importer'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { compareBytes, utf8, utf8Strict } from '../../protocol/bytes.js'
import { SHA2_256_CODE } from '../../protocol/cid.js'
import { isRelativePath } from '../../protocol/formats.js'
import { LIMITS } from '../../protocol/limits.js'
import type { ManifestFile } from '../../protocol/types.js'
import { isNodeError, NodeError } from '../errors.js'
import { type HashDone, hashFiles } from './hash-pool.js'

export const CID_PROFILE = 'unixfs-v1-2025' as const
/** The profile's chunk size; files are also read in chunks of this size, so none is copied. */
export const CHUNK_BYTES = 1024 * 1024
/**
 * The largest block a DAG in the profile holds: a leaf is one chunk and directory and file
 * nodes are smaller; twice that leaves room and still bounds what a reader takes into memory.
 */
export const MAX_BLOCK_BYTES = 2 * CHUNK_BYTES
/** Directory entries visited before a walk gives up (a model has at most `maxManifestFiles`). */
const MAX_ENTRIES_VISITED = 16 * LIMITS.maxManifestFiles

export type { WritableStorage }

/** A block sink that keeps nothing: for computing a root without storing the DAG. */
export const discardBlocks: WritableStorage = { put: async (cid: CID) => cid }

/** Fresh importer options for the profile (the importer writes into the object it is given). */
export function profileOptions(): ImporterOptions {
  return {
    profile: CID_PROFILE,
    wrapWithDirectory: true,
    // Files one after another: sequential reads, a progress that only grows, bounded memory.
    fileImportConcurrency: 1,
  }
}

export type PathIssueCode =
  | 'path-invalid'
  | 'symlink-escapes'
  | 'special-file'
  | 'unreadable'
  | 'too-many-files'

export interface PathIssue {
  readonly code: PathIssueCode
  readonly path: string
  readonly message: string
}

export interface LocalFile {
  /** Relative POSIX path, as a manifest lists it. */
  readonly path: string
  /** Size when listed. */
  readonly size: number
  /** Where to read it: the path itself, or the target of a symlink inside the directory. */
  readonly location: Buffer
}

export interface Listing {
  readonly files: readonly LocalFile[]
  readonly issues: readonly PathIssue[]
}

export interface ListOptions {
  /** Leave out paths the caller does not publish (a `.git` folder, say); called for folders too. */
  readonly ignore?: (path: string) => boolean
}

/** Why `path` cannot name a file of a model, or undefined when it can. */
export function pathProblem(path: string): string | undefined {
  if (!isRelativePath(path)) {
    return 'not a relative POSIX path without empty, "." or ".." segments, backslashes or control characters'
  }
  if (utf8.encode(path).length > LIMITS.maxPathBytes) return `longer than ${LIMITS.maxPathBytes} bytes`
  return undefined
}

/** Compares two paths by their UTF-8 bytes (manifest order). */
export function comparePaths(a: string, b: string): number {
  return compareBytes(utf8.encode(a), utf8.encode(b))
}

/**
 * Lists the regular files of `dir` and the entries that cannot be part of a model. Throws only
 * `NodeError('not-a-directory')` when `dir` itself is not a readable directory.
 */
export async function listDirectory(dir: string, options: ListOptions = {}): Promise<Listing> {
  let root: Buffer
  try {
    root = await realpath(dir, { encoding: 'buffer' })
    if (!(await stat(root)).isDirectory()) throw new Error('not a directory')
  } catch (e) {
    throw new NodeError('not-a-directory', `${dir} is not a readable directory`, { status: 400, cause: e })
  }
  const rootPrefix = Buffer.concat([root, Buffer.from(sep)])
  const files: LocalFile[] = []
  const issues: PathIssue[] = []
  const pending: { location: Buffer; path: string }[] = [{ location: root, path: '' }]
  let visited = 0
  while (pending.length > 0) {
    const folder = pending.pop()!
    let names: Buffer[]
    try {
      names = await readdir(folder.location, { encoding: 'buffer' })
    } catch (e) {
      issues.push(issue('unreadable', folder.path || '.', `cannot list: ${errno(e)}`))
      continue
    }
    for (const raw of names) {
      if (++visited > MAX_ENTRIES_VISITED) {
        issues.push(issue('too-many-files', folder.path || '.', `more than ${MAX_ENTRIES_VISITED} entries`))
        return sorted(files, issues)
      }
      const location = Buffer.concat([folder.location, Buffer.from(sep), raw])
      let name: string
      try {
        name = utf8Strict.decode(raw)
      } catch {
        const shown = join(folder.path, raw.toString('utf8'))
        issues.push(issue('path-invalid', shown, 'the name is not valid UTF-8'))
        continue
      }
      const path = join(folder.path, name)
      if (options.ignore?.(path)) continue
      let st: Stats
      try {
        st = await lstat(location)
      } catch (e) {
        issues.push(issue('unreadable', path, `cannot stat: ${errno(e)}`))
        continue
      }
      const bad = pathProblem(path)
      if (bad !== undefined) {
        issues.push(issue('path-invalid', path, bad))
        continue
      }
      if (st.isDirectory()) pending.push({ location, path })
      else if (st.isFile()) files.push({ path, size: st.size, location })
      else if (st.isSymbolicLink()) {
        const target = await followLink(location, rootPrefix)
        if (typeof target === 'string') issues.push(issue(target, path, linkMessage(target)))
        else files.push({ path, size: target.size, location: target.location })
      } else issues.push(issue('special-file', path, 'not a regular file (a FIFO, socket or device)'))
      if (files.length > LIMITS.maxManifestFiles) {
        issues.push(issue('too-many-files', path, `more than ${LIMITS.maxManifestFiles} files`))
        return sorted(files, issues)
      }
    }
  }
  return sorted(files, issues)
}

async function followLink(
  link: Buffer,
  rootPrefix: Buffer,
): Promise<{ location: Buffer; size: number } | 'symlink-escapes' | 'special-file'> {
  let target: Buffer
  try {
    target = await realpath(link, { encoding: 'buffer' })
  } catch {
    return 'symlink-escapes'
  }
  // Inside means under the root; a link to the root itself passes here and is refused below.
  if (
    !Buffer.concat([target, Buffer.from(sep)])
      .subarray(0, rootPrefix.length)
      .equals(rootPrefix)
  ) {
    return 'symlink-escapes'
  }
  try {
    const st = await stat(target)
    return st.isFile() ? { location: target, size: st.size } : 'special-file'
  } catch {
    return 'symlink-escapes'
  }
}

function linkMessage(code: 'symlink-escapes' | 'special-file'): string {
  return code === 'symlink-escapes'
    ? 'a symlink that leads outside the directory or nowhere'
    : 'a symlink to something that is not a regular file'
}

function sorted(files: LocalFile[], issues: PathIssue[]): Listing {
  const keyed = files.map((f) => ({ f, k: utf8.encode(f.path) }))
  keyed.sort((a, b) => compareBytes(a.k, b.k))
  issues.sort((a, b) => comparePaths(a.path, b.path))
  return { files: keyed.map((x) => x.f), issues }
}

function join(folder: string, name: string): string {
  return folder === '' ? name : `${folder}/${name}`
}

function issue(code: PathIssueCode, path: string, message: string): PathIssue {
  return { code, path, message: `${path}: ${message}` }
}

function errno(e: unknown): string {
  return (e as NodeJS.ErrnoException)?.code ?? String(e)
}

export interface FileDigest {
  readonly size: number
  readonly sha256: Uint8Array
}

/** An `onBytes` that adds up what was read and reports the running total against `total`. */
export function progress(
  total: number,
  onProgress: ((read: number, total: number) => void) | undefined,
): (bytes: number) => void {
  let read = 0
  return (n) => {
    read += n
    onProgress?.(read, total)
  }
}

/**
 * A caller's own check of a file it is about to read (an import's roots and key files): throws
 * to refuse it. Called with the stat of the opened handle, so it sees the file that is read.
 */
export type AdmitFile = (file: LocalFile, st: Stats) => void | Promise<void>

export interface ReadOptions {
  readonly signal?: AbortSignal
  /** Called after each chunk with the bytes it held. */
  readonly onBytes?: (bytes: number) => void
  readonly admit?: AdmitFile
}

/**
 * The chunks of a listed file, each hashed as it passes; `done` receives the digest once the
 * file has been read to its end. Lazy: the file is opened on the first pull.
 */
export async function* readChunks(
  file: LocalFile,
  done: (digest: FileDigest) => void,
  options: ReadOptions = {},
): AsyncGenerator<Uint8Array, void, undefined> {
  const fh = await openListed(file, options.admit)
  const hash = createHash('sha256')
  let size = 0
  try {
    for (;;) {
      if (options.signal?.aborted) throw aborted()
      // A fresh buffer each time: the importer keeps a chunk as a raw leaf until it is written.
      const buf = Buffer.allocUnsafe(CHUNK_BYTES)
      let n = 0
      while (n < CHUNK_BYTES) {
        const { bytesRead } = await fh.read(buf, n, CHUNK_BYTES - n, null)
        if (bytesRead === 0) break
        n += bytesRead
      }
      if (n === 0) break
      const chunk = n === CHUNK_BYTES ? buf : buf.subarray(0, n)
      hash.update(chunk)
      size += n
      options.onBytes?.(n)
      yield chunk
      if (n < CHUNK_BYTES) break
    }
  } catch (e) {
    if (isNodeError(e)) throw e
    throw new NodeError('unreadable', `${file.path}: read failed: ${errno(e)}`, { status: 400, cause: e })
  } finally {
    await fh.close()
  }
  if (size !== file.size) {
    throw new NodeError(
      'file-changed',
      `${file.path} changed while it was read (${file.size} → ${size} bytes)`,
      {
        status: 409,
      },
    )
  }
  done({ size, sha256: new Uint8Array(hash.digest()) })
}

/** Reads a listed file once and returns its size and sha256. */
export async function hashFile(file: LocalFile, options: ReadOptions = {}): Promise<FileDigest> {
  let digest: FileDigest | undefined
  for await (const _ of readChunks(file, (d) => (digest = d), options)) {
    // the digest is the point
  }
  return digest!
}

/**
 * Opens a listed file to read it: still a regular file, never through a symlink or a FIFO, and
 * one `admit` (when given) lets through.
 */
export async function openListed(file: LocalFile, admit?: AdmitFile): Promise<FileHandle> {
  // O_NONBLOCK: a FIFO swapped in after listing must not hang the open; O_NOFOLLOW: nor a symlink.
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW
  let fh: FileHandle
  try {
    fh = await open(file.location, flags)
  } catch (e) {
    throw new NodeError('unreadable', `${file.path}: cannot open: ${errno(e)}`, { status: 400, cause: e })
  }
  const st = await fh.stat().catch(() => undefined)
  if (!st?.isFile()) {
    await fh.close()
    throw new NodeError('special-file', `${file.path} is no longer a regular file`, { status: 400 })
  }
  try {
    await admit?.(file, st)
  } catch (e) {
    await fh.close()
    throw e
  }
  return fh
}

export function aborted(): NodeError {
  return new NodeError('aborted', 'the operation was aborted', { status: 499 })
}

export interface UnixfsEntry {
  readonly path: string
  readonly content: AsyncIterable<Uint8Array>
}

/**
 * The profile's root over `entries` (files by relative path, wrapped in one directory). Blocks
 * go to `blockstore`. Errors thrown by the content iterables come out as they are when they are
 * `NodeError`s; anything the importer throws becomes `NodeError('import-failed')`.
 */
export async function unixfsRoot(
  entries: Iterable<UnixfsEntry> | AsyncIterable<UnixfsEntry>,
  blockstore: WritableStorage = discardBlocks,
  options: ImporterOptions = profileOptions(),
): Promise<CID> {
  let root: CID | undefined
  try {
    for await (const entry of importer(entries, blockstore, options)) {
      if (entry.path === '') root = entry.cid
    }
  } catch (e) {
    if (isNodeError(e)) throw e
    // The importer's and the blockstore's own messages can name the node's directories: the
    // answer says what happened in general terms, the cause (logged by the caller) has the rest.
    const code = (e as NodeJS.ErrnoException)?.code
    throw new NodeError(
      'import-failed',
      `the UnixFS import failed${typeof code === 'string' && /^E[A-Z]+$/.test(code) ? ` (${code})` : ''}; the node's log has the details`,
      { cause: e },
    )
  }
  if (root === undefined) throw new NodeError('import-failed', 'the UnixFS importer gave no root')
  return root
}

/**
 * The files of a model directory and their total size, or a `NodeError` (400) with the first
 * listing issue's code, `empty-directory` when it holds no file, `oversize` (413) when the files
 * add up to more than `maxBytes` (checked before any byte is read).
 */
export async function listModel(
  dir: string,
  options: ListOptions & { readonly maxBytes?: number } = {},
): Promise<{ files: readonly LocalFile[]; total: number }> {
  const listing = await listDirectory(dir, options)
  const first = listing.issues[0]
  if (first !== undefined) throw new NodeError(first.code, first.message, { status: 400 })
  if (listing.files.length === 0)
    throw new NodeError('empty-directory', `${dir} holds no files`, { status: 400 })
  const total = listing.files.reduce((s, f) => s + f.size, 0)
  if (options.maxBytes !== undefined && total > options.maxBytes)
    throw new NodeError('oversize', `${dir} holds ${total} bytes; models are at most ${options.maxBytes}`, {
      status: 413,
    })
  return { files: listing.files, total }
}

/** A listed file's stat (its target's, for a symlink inside the directory). */
async function statListed(file: LocalFile): Promise<Stats> {
  try {
    return await stat(file.location)
  } catch (e) {
    throw new NodeError('unreadable', `${file.path}: cannot stat: ${errno(e)}`, { status: 400, cause: e })
  }
}

export interface ImportOptions extends ListOptions {
  /** Refuse (`oversize`) a directory whose files add up to more, before reading them. */
  readonly maxBytes?: number
  /** Where the blocks go; by default nowhere (only the root is computed). */
  readonly blockstore?: WritableStorage
  /** Bytes read so far, and the total to read. */
  readonly onProgress?: (bytesRead: number, totalBytes: number) => void
  readonly signal?: AbortSignal
  /** Every listed file is put to it before any byte is read, and again when it is opened. */
  readonly admit?: AdmitFile
}

export interface DirectoryImport {
  /** The `unixfs-v1-2025` root: a manifest's `weights`. */
  readonly root: CID
  /** Every file, sorted by path: a manifest's `files`. */
  readonly files: readonly ManifestFile[]
  /** Total bytes: a manifest's `size`. */
  readonly size: number
}

/**
 * Reads every file of `dir` once: sha256 and size per file, and the UnixFS import. Throws a
 * `NodeError` with the first listing issue's code when the directory holds anything that cannot
 * be part of a model, `empty-directory` when it holds no file, `file-changed` when a file changes
 * while it is read, `aborted` when `signal` fires.
 */
export async function importDirectory(dir: string, options: ImportOptions = {}): Promise<DirectoryImport> {
  const { files: listed, total } = await listModel(dir, options)
  const { admit, signal } = options
  if (admit) for (const f of listed) await admit(f, await statListed(f))
  const onBytes = progress(total, options.onProgress)
  const digests = new Map<string, FileDigest>()
  const entries = listed.map((f) => ({
    path: f.path,
    content: readChunks(f, (d) => digests.set(f.path, d), { signal, onBytes, ...(admit ? { admit } : {}) }),
  }))
  const root = await unixfsRoot(entries, options.blockstore ?? discardBlocks)
  const files = listed.map((f) => {
    const d = digests.get(f.path)
    if (d === undefined) throw new NodeError('import-failed', `${f.path} was not read`)
    return { path: f.path, size: d.size, sha256: d.sha256 }
  })
  return { root, files, size: files.reduce((s, f) => s + f.size, 0) }
}

// ------------------------------------------------------------ hashed on worker threads

const DIGEST_BYTES = 32

/**
 * A chunk read and hashed elsewhere (on a hashing worker): its raw leaf's CID and length. It
 * passes through the importer where the chunk's bytes would, as an empty Uint8Array (so the
 * importer's own stages carry it along), and `knownLeaves` turns it into the leaf.
 */
class KnownLeaf extends Uint8Array {
  constructor(
    readonly cid: CID,
    readonly bytes: number,
  ) {
    super(0)
  }
}

const NO_BLOCK = new Uint8Array(0)

/**
 * The profile, for chunks that were cut and hashed where they were read. Why this is still the
 * profile's definition: with raw leaves the importer's chunker cuts fixed 1 MiB pieces (one
 * empty piece for an empty file) and its buffer importer makes each piece a raw block whose CID
 * is the sha256 of the piece. The hashing workers read exactly those pieces and hash them; the
 * importer's own layout (balanced, 1024 links), file nodes and directories (HAMT thresholds
 * included) then build everything above the leaves, unchanged. The unit tests compare both ways
 * on edge shapes.
 */
function knownLeaves(): ImporterOptions {
  const bufferImporter: BufferImporter = async function* (file) {
    for await (const leaf of file.content) {
      if (!(leaf instanceof KnownLeaf)) throw new NodeError('import-failed', 'a chunk came without its leaf')
      // `block` is only read to rewrite a lone leaf with a mode or mtime, which the profile never sets.
      yield async () => ({ cid: leaf.cid, size: BigInt(leaf.bytes), block: NO_BLOCK })
    }
  }
  return { ...profileOptions(), chunker: (source) => source, bufferImporter }
}

/** The raw leaf CIDs of a file of `size` bytes from the concatenated chunk digests. */
export function leafCids(path: string, size: number, digests: Uint8Array): CID[] {
  const count = Math.max(1, Math.ceil(size / CHUNK_BYTES))
  if (digests.length !== count * DIGEST_BYTES)
    throw new NodeError('import-failed', `${path}: ${digests.length / DIGEST_BYTES} leaves for ${size} bytes`)
  return Array.from({ length: count }, (_, i) =>
    CID.createV1(
      raw.code,
      createDigest(SHA2_256_CODE, digests.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES)),
    ),
  )
}

export interface HashedFile {
  /** Relative POSIX path, as a manifest lists it. */
  readonly path: string
  readonly size: number
  /** Its raw leaves, in order (`leafCids`). */
  readonly leaves: readonly CID[]
}

/**
 * The profile's root over files whose chunks were hashed already (`hashFiles` with leaves): the
 * same root `unixfsRoot` gives over their bytes, without reading them again. Only the file and
 * directory nodes go to `blockstore`; the leaves are where the files are.
 */
export async function rootOfHashed(
  files: readonly HashedFile[],
  blockstore: WritableStorage = discardBlocks,
): Promise<CID> {
  const entries = files.map((f) => ({
    path: f.path,
    content: (async function* () {
      for (const [i, cid] of f.leaves.entries()) {
        yield new KnownLeaf(cid, i < f.leaves.length - 1 ? CHUNK_BYTES : f.size - i * CHUNK_BYTES)
      }
    })(),
  }))
  return unixfsRoot(entries, blockstore, knownLeaves())
}

export interface PlanOptions extends ListOptions {
  /** Bytes read so far, and the total to read. */
  readonly onProgress?: (bytesRead: number, totalBytes: number) => void
  readonly signal?: AbortSignal
}

export interface PlannedFile {
  readonly file: LocalFile
  readonly leaves: readonly CID[]
  /** Identity and mtime when hashed: a later read refuses a file that changed since. */
  readonly stamp: string
}

export interface DirectoryPlan {
  /** The `unixfs-v1-2025` root: a manifest's `weights`. */
  readonly root: CID
  /** Total bytes: a manifest's `size`. */
  readonly size: number
  /** Every file with its raw leaves, in manifest order. */
  readonly planned: readonly PlannedFile[]
  /** The DAG's other blocks (file nodes and directories, the root included), by CID. */
  readonly nodes: ReadonlyMap<string, { readonly cid: CID; readonly bytes: Uint8Array }>
}

/**
 * The root of `dir` with the files hashed on worker threads, their leaves left on disk: the raw
 * leaf CIDs of every file and the DAG's few other blocks are kept, so that the DAG can be sent
 * (`directoryCar`) by reading the files once more. The files' own sha256 is not computed here:
 * `directoryCar` computes it from the bytes it sends, so it certifies what the node received,
 * and the first pass, which nothing can overlap (the CAR's header and the signed upload
 * statement name the root), does half the hashing. Memory: 32 bytes per MiB of model, plus the
 * file and directory nodes. Throws as `importDirectory` does.
 */
export async function planDirectory(dir: string, options: PlanOptions = {}): Promise<DirectoryPlan> {
  const { files, total } = await listModel(dir, options)
  const outcomes = await hashFiles(files, {
    whole: false,
    leaves: true,
    chunkBytes: CHUNK_BYTES,
    signal: options.signal,
    onBytes: progress(total, options.onProgress),
  })
  const done: HashDone[] = outcomes.map((o) => {
    if (!o.ok) throw o.error
    return o.digest
  })
  const planned = files.map((file, i) => ({
    file,
    leaves: leafCids(file.path, done[i]!.size, done[i]!.leaves!),
    stamp: done[i]!.stamp,
  }))
  const nodes = new Map<string, { cid: CID; bytes: Uint8Array }>()
  const root = await rootOfHashed(
    planned.map((p) => ({ path: p.file.path, size: p.file.size, leaves: p.leaves })),
    {
      put: async (cid: CID, bytes: Uint8Array) => {
        nodes.set(cid.toString(), { cid, bytes })
        return cid
      },
    },
  )
  return { root, size: total, planned, nodes }
}
