/**
 * Where `POST /weights/import` may read. An import pins what it reads and the gateway serves
 * pinned blocks to anyone, so the admin token must not turn the node into a file server for its
 * own disk (a key file's secret came back through the gateway in plain text):
 *
 * - nothing, until the operator names `importRoots` in the config (`import-disabled`);
 * - the directory's real path (symlinks resolved) below a root's real path
 *   (`import-outside-roots`), and each file's real path too (the listing already refuses links
 *   that lead out of the directory);
 * - never the node home, a directory inside it or one holding it (`import-forbidden`);
 * - never a key file: the node's own (peer key, admin token, steward key, the identity of the
 *   user it runs as) by device and inode, so a hard link or a symlink to one is refused too, and
 *   any small file shaped like an allmende key file (`import-forbidden`). Checked when listed,
 *   before a byte is read, and again on the open file handle (a file swapped in since the
 *   listing is caught by its inode).
 */
import type { Stats } from 'node:fs'
import { open, realpath, stat } from 'node:fs/promises'
import { sep } from 'node:path'
import { NodeError } from '../errors.js'
import type { LocalFile } from './local-files.js'

export interface ImportPolicy {
  /** `importRoots` as configured (absolute paths). */
  readonly roots: readonly string[]
  /** The node home. */
  readonly home: string
  /** Key files that are never imported, wherever they are (missing ones are skipped). */
  readonly keyFiles: readonly string[]
}

export interface AdmittedImport {
  /** The directory's real path: what the import reads. */
  readonly dir: string
  /** Throws `import-forbidden` or `import-outside-roots` for a file that must not be read. */
  admit(file: LocalFile, st: Stats): Promise<void>
}

/** Key files are small JSON; a model's small files are read once more to look, nothing else is. */
const KEY_FILE_MAX_BYTES = 64 * 1024

/** True when `path` is `parent` or below it (both real paths). */
export function isWithin(path: string, parent: string): boolean {
  return path === parent || path.startsWith(parent.endsWith(sep) ? parent : parent + sep)
}

function forbidden(message: string): NodeError {
  return new NodeError('import-forbidden', message, { status: 403 })
}

async function realOrUndefined(path: string | Buffer): Promise<string | undefined> {
  try {
    return await realpath(path)
  } catch {
    return undefined
  }
}

async function inodeOf(path: string): Promise<string | undefined> {
  try {
    const st = await stat(path)
    return `${st.dev}:${st.ino}`
  } catch {
    return undefined
  }
}

/** Whether the bytes of a small file are an allmende key file (node/identity.ts's format). */
function looksLikeKeyFile(text: string): boolean {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return false
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return false
  const f = json as Record<string, unknown>
  return typeof f.did === 'string' && ('secretKey' in f || 'ciphertext' in f)
}

async function readSmall(location: Buffer): Promise<string | undefined> {
  try {
    const handle = await open(location, 'r')
    try {
      const st = await handle.stat()
      if (!st.isFile() || st.size > KEY_FILE_MAX_BYTES) return undefined
      return await handle.readFile('utf8')
    } finally {
      await handle.close()
    }
  } catch {
    return undefined
  }
}

/**
 * Checks `dir` against the policy and returns its real path and the per-file check; throws a
 * `NodeError` (403) saying which rule refused it and, when import is off, which key to set.
 * Messages name only the path the admin sent and paths inside it.
 */
export async function admitImport(dir: string, policy: ImportPolicy): Promise<AdmittedImport> {
  if (policy.roots.length === 0) {
    throw new NodeError(
      'import-disabled',
      'importing weights from a path is off on this node: list the directories models are copied to as "importRoots" in the node\'s config.json, then restart the node',
      { status: 403 },
    )
  }
  const real = await realOrUndefined(dir)
  if (real === undefined)
    throw new NodeError('not-a-directory', `${dir} is not a readable directory`, { status: 400 })
  const roots = (await Promise.all(policy.roots.map(realOrUndefined))).filter(
    (r): r is string => r !== undefined,
  )
  const root = roots.find((r) => isWithin(real, r))
  if (root === undefined) {
    throw new NodeError(
      'import-outside-roots',
      `${dir} is not below one of the node's import roots ("importRoots" in its config.json), once symlinks are resolved`,
      { status: 403 },
    )
  }
  const home = await realOrUndefined(policy.home)
  if (home !== undefined && (isWithin(real, home) || isWithin(home, real)))
    throw forbidden(`${dir} is or holds the node's home directory, which is never imported`)

  const keys = new Set(
    (await Promise.all(policy.keyFiles.map(inodeOf))).filter((k): k is string => k !== undefined),
  )
  const isKey = (st: Stats) => keys.has(`${st.dev}:${st.ino}`)
  return {
    dir: real,
    async admit(file, st) {
      if (isKey(st)) throw forbidden(`${file.path} is a key file of this node, which is never imported`)
      const location = await realOrUndefined(file.location)
      if (location === undefined || !isWithin(location, real))
        throw new NodeError('import-outside-roots', `${file.path} is no longer inside ${dir}`, {
          status: 403,
        })
      if (home !== undefined && isWithin(location, home))
        throw forbidden(`${file.path} is inside the node's home directory, which is never imported`)
      if (st.size <= KEY_FILE_MAX_BYTES) {
        const text = await readSmall(file.location)
        if (text !== undefined && looksLikeKeyFile(text))
          throw forbidden(`${file.path} is an allmende key file; key files are never imported`)
      }
    },
  }
}
