/**
 * The directory check at the end of `allmende fetch`: `verify`'s check (no missing, no extra file,
 * each of the manifest's size and sha256), except that a file this run wrote and checked is not
 * read again. Its every block was checked against its CID before it was written and its sha256
 * taken from the written bytes and compared with the manifest's before the rename
 * (multi-fetch-file.ts), so a third read would find nothing new; only the files kept from before
 * the run are hashed here (docs/adr/0030-multi-source-fetch.md).
 */
import type { ManifestBody } from '../../protocol/types.js'
import { hashFiles } from './hash-pool.js'
import { type FileDigest, type LocalFile, listDirectory } from './local-files.js'
import { CHUNK_BYTES } from './profile.js'
import {
  asProblem,
  compareDigests,
  manifestFiles,
  type Problem,
  result,
  sizeMismatch,
} from './verify-problems.js'

/**
 * The problems of `dir` against the manifest's files in `askedFor` (all of them without
 * `--include`); `checked` names the files whose bytes this run has already checked.
 */
export async function checkFetchedDirectory(
  dir: string,
  body: ManifestBody,
  askedFor: ReadonlySet<string>,
  checked: ReadonlySet<string>,
): Promise<readonly Problem[]> {
  const problems: Problem[] = []
  const files = body.files.filter((f) => askedFor.has(f.path))
  const wanted = manifestFiles({ ...body, files, size: files.reduce((n, f) => n + f.size, 0) }, problems)
  const listing = await listDirectory(dir)
  for (const i of listing.issues) problems.push({ code: i.code, path: i.path, message: i.message })
  const listed = new Set(listing.files.map((f) => f.path))
  for (const path of wanted.keys())
    if (!listed.has(path)) problems.push({ code: 'file-missing', path, message: `${path} is missing` })
  // With --include, the manifest's other files (and their .partial leftovers) may be there too.
  const others = new Set(
    body.files
      .filter((f) => !askedFor.has(f.path))
      .flatMap((f) => [f.path, `${f.path}.partial`, `${f.path}.partial.journal`]),
  )
  const toHash: LocalFile[] = []
  for (const f of listing.files) {
    const m = wanted.get(f.path)
    if (m === undefined) {
      if (!others.has(f.path))
        problems.push({ code: 'file-extra', path: f.path, message: `${f.path} is not in the manifest` })
    } else if (m.size !== f.size) problems.push(sizeMismatch(f.path, f.size, m.size))
    else if (!checked.has(f.path)) toHash.push(f)
  }
  compareDigests(wanted, await digestsOf(toHash, problems), problems)
  return result(problems).problems
}

/** The sha256 of each file, on worker threads (hash-pool.ts); a file that cannot be read is a problem. */
async function digestsOf(files: readonly LocalFile[], problems: Problem[]): Promise<Map<string, FileDigest>> {
  const outcomes = await hashFiles(files, { chunkBytes: CHUNK_BYTES })
  const digests = new Map<string, FileDigest>()
  for (const [i, f] of files.entries()) {
    const o = outcomes[i]!
    if (o.ok) digests.set(f.path, { ...o.digest, sha256: o.digest.sha256! })
    else problems.push(asProblem(o.error, f.path))
  }
  return digests
}
