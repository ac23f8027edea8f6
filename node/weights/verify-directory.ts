/**
 * A model directory on disk against a manifest (a deployer before inference; `allmende verify`):
 * the file set must equal the manifest's, each file must have its size and sha256; with `cid: true`
 * the directory's `unixfs-v1-2025` root must also equal `weights` (same single read: the leaf
 * digests are taken on the way). Files are hashed on worker threads, several at once, so a model
 * of many shards is checked at the speed of every core (hash-pool.ts).
 *
 * Codes: those of verify-problems.ts, and the listing issues of a directory (`path-invalid`,
 * `symlink-escapes`, `special-file`, `unreadable`, `too-many-files`, `file-changed`).
 */
import { leafCids, rootOfHashed } from './directory.js'
import { type HashDone, hashFiles } from './hash-pool.js'
import {
  aborted,
  type FileDigest,
  type ListOptions,
  type LocalFile,
  listDirectory,
  progress,
} from './local-files.js'
import { CHUNK_BYTES } from './profile.js'
import {
  asProblem,
  compareDigests,
  manifestFiles,
  type Problem,
  result,
  rootMismatch,
  sizeMismatch,
  type VerifyResult,
  type WeightsManifest,
} from './verify-problems.js'

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
