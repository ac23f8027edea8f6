/**
 * The one way the project writes a whole file: a crash leaves the old file or the new one, never
 * half of either. The bytes go to a temporary file beside the target, created with the target's
 * mode (a private file is never readable by others, not even briefly), are fsync'd, and are
 * moved into place; then the directory is fsync'd, so the new entry survives a crash too.
 *
 * Why not write-file-atomic: it fsyncs the file but not the directory, and it cannot refuse to
 * replace an existing file atomically, which key files need (`overwrite: false`: `link` fails if
 * the target exists, where a check-then-rename could clobber a file made in between).
 */
import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { link, open, rename, stat, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

export interface WriteAtomicOptions {
  /** The file's mode from its creation on (the umask applies); default 0o666, as `writeFile`. */
  readonly mode?: number
  /** Replace a file already at the path (default true); false rejects with code `EEXIST`. */
  readonly overwrite?: boolean
}

/** Writes `data` as the whole of `path`, atomically and durably (see the header). */
export async function writeAtomic(
  path: string,
  data: string | Uint8Array,
  options: WriteAtomicOptions = {},
): Promise<void> {
  const dir = dirname(path)
  const temporary = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  try {
    const handle = await open(
      temporary,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL,
      options.mode ?? 0o666,
    )
    try {
      await handle.writeFile(data)
      await handle.sync()
    } finally {
      await handle.close()
    }
    if (options.overwrite === false) await linkNew(temporary, path)
    else await rename(temporary, path)
  } finally {
    // Gone after a rename; after a link, or a failure, the temporary name is left to remove.
    await unlink(temporary).catch(() => {})
  }
  await syncDirectory(dir)
}

/** Links `temporary` to `path` only if nothing is there yet. */
async function linkNew(temporary: string, path: string): Promise<void> {
  try {
    await link(temporary, path)
    return
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw existsError(path)
  }
  // A filesystem without hard links: check, then rename (not atomic there, the best it allows).
  if (await pathExists(path)) throw existsError(path)
  await rename(temporary, path)
}

function existsError(path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${path} already exists`), { code: 'EEXIST', path })
}

/** Whether anything is at `path` (a file, a directory, a link that resolves). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

/** fsync a directory so a newly created entry survives a crash (not possible on Windows; skipped there). */
export async function syncDirectory(dir: string): Promise<void> {
  if (process.platform === 'win32') return
  const handle = await open(dir, constants.O_RDONLY)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
