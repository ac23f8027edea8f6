/**
 * A model directory's files on disk: listing them (relative POSIX paths sorted by UTF-8 bytes, a
 * symlink counted as the regular file it names inside the directory, anything else an issue), and
 * reading a listed file safely (no final symlink, no blocking open, still a regular file of the
 * listed size). directory.ts says what the listing is for.
 */
import { createHash } from 'node:crypto'
import { constants, type Stats } from 'node:fs'
import { type FileHandle, lstat, open, readdir, realpath, stat } from 'node:fs/promises'
import { sep } from 'node:path'
import { compareBytes, utf8, utf8Strict } from '../../protocol/bytes.js'
import { isRelativePath } from '../../protocol/formats.js'
import { LIMITS } from '../../protocol/limits.js'
import { isNodeError, NodeError } from '../errors.js'
import { CHUNK_BYTES } from './profile.js'

/** Directory entries visited before a walk gives up (a model has at most `maxManifestFiles`). */
const MAX_ENTRIES_VISITED = 16 * LIMITS.maxManifestFiles

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
/** A listed file's stat (its target's, for a symlink inside the directory). */
export async function statListed(file: LocalFile): Promise<Stats> {
  try {
    return await stat(file.location)
  } catch (e) {
    throw new NodeError('unreadable', `${file.path}: cannot stat: ${errno(e)}`, { status: 400, cause: e })
  }
}
