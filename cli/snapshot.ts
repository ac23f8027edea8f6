/**
 * The snapshot `exec` checks and hands to the command (docs/adr/0007): a copy of the model directory
 * that nobody else can change between the check and the load.
 *
 * - A reflink (`copyFile` with `COPYFILE_FICLONE_FORCE`) where the filesystem has one: instant,
 *   no extra space, and a later write to the original copies its blocks away from ours.
 * - Otherwise a private read-only copy, when the model is under `--copy-limit` and the disk has
 *   room.
 * - Otherwise a refusal naming `--in-place`.
 *
 * Either way the snapshot lives in a fresh `mkdtemp` directory (mode 0700, files 0400) under the
 * temp directory (sticky: others cannot rename it away) or `$ALLMENDE_HOME/snapshots` (private),
 * whichever can take it. Hard links are not a snapshot: they share the inode anyone with write
 * access to the original can still rewrite. Each source file is opened without following
 * symlinks and copied through its open descriptor (`/proc/self/fd/N` on Linux), so a file swapped
 * for a link or a FIFO after listing is not followed.
 */
import { rmSync } from 'node:fs'
import {
  chmod,
  constants,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  realpath,
  rm,
  stat,
  statfs,
} from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { NodeError } from '../node/index.js'
import { type LocalFile, listDirectory, openListed, type PathIssue } from '../node/weights/index.js'
import { CliError } from './context.js'
import { allmendeHome } from './homes.js'

/** Left free on the disk after a copy. */
const FREE_RESERVE = 64 * 2 ** 20
const PREFIX = 'allmende-exec-'

export interface Snapshot {
  readonly path: string
  readonly how: 'reflink' | 'copy'
  /** Bytes copied (0 for reflinks). */
  readonly copied: number
  /** Entries of the original that are not regular files of a model (named by the check). */
  readonly issues: readonly PathIssue[]
  /** Removes the snapshot; safe to call twice, and from a signal handler (synchronous). */
  remove(): void
}

export interface SnapshotOptions {
  /** The largest copy (bytes) when no reflink is possible. */
  readonly copyLimit: number
  /** Where snapshots may go, in order; default the temp directory, then $ALLMENDE_HOME/snapshots. */
  readonly bases?: readonly string[]
  /** Called with the snapshot's path as soon as it exists (before any byte is copied). */
  readonly onCreated?: (path: string) => void
}

/** Throws `not-a-directory` unless `dir` is a readable directory (the check every command makes first). */
export async function requireDirectory(dir: string): Promise<void> {
  try {
    if (!(await stat(await realpath(dir))).isDirectory()) throw new Error('not a directory')
  } catch (e) {
    throw new NodeError('not-a-directory', `${dir} is not a readable directory`, { status: 400, cause: e })
  }
}

function defaultBases(): string[] {
  return [tmpdir(), join(allmendeHome(), 'snapshots')]
}

/** A snapshot of `dir` (see the module comment), or a CliError saying why none can be made. */
export async function takeSnapshot(dir: string, options: SnapshotOptions): Promise<Snapshot> {
  const listing = await listDirectory(dir)
  const files = listing.files
  const total = files.reduce((n, f) => n + f.size, 0)
  const bases = options.bases ?? defaultBases()
  for (const base of bases) await sweepAbandoned(base)

  // A reflink where one base allows it (it must be on the model's filesystem).
  if (files.length > 0) {
    for (const base of bases) {
      const root = await makeRoot(base, options.onCreated).catch(() => undefined)
      if (root === undefined) continue
      const cloned = await place(files[0]!, root.path, true).catch((e: unknown) => {
        root.remove()
        throw e
      })
      if (cloned) {
        const copied = await fill(files.slice(1), root, true, options.copyLimit)
        return { path: root.path, how: 'reflink', copied, issues: listing.issues, remove: root.remove }
      }
      root.remove()
    }
  }
  // No reflink: a private copy, if small enough and a base has room.
  if (total > options.copyLimit)
    throw new CliError(
      'snapshot-too-large',
      `${dir} holds ${formatSize(total)}, more than --copy-limit ${formatSize(options.copyLimit)}, and this filesystem cannot make a reflink: no private snapshot can be made. Raise --copy-limit, or run with --in-place (the files are checked through open file descriptors, but anyone who can write to ${dir} can change them after the check)`,
    )
  for (const base of bases) {
    if (!(await hasRoom(base, total))) continue
    const root = await makeRoot(base, options.onCreated).catch(() => undefined)
    if (root === undefined) continue
    await fill(files, root, false, options.copyLimit)
    return { path: root.path, how: 'copy', copied: total, issues: listing.issues, remove: root.remove }
  }
  throw new CliError(
    'snapshot-no-room',
    `a private copy of ${dir} needs ${formatSize(total + FREE_RESERVE)} free in ${bases.join(' or ')}, which do not have it. Free some space, or run with --in-place (the files are checked through open file descriptors, but anyone who can write to ${dir} can change them after the check)`,
  )
}

interface Root {
  readonly path: string
  remove(): void
}

/** A fresh 0700 directory under `base` (created private when missing), removed synchronously. */
async function makeRoot(base: string, onCreated?: (path: string) => void): Promise<Root> {
  await mkdir(base, { recursive: true, mode: 0o700 })
  const path = await mkdtemp(join(base, `${PREFIX}${process.pid}-`))
  onCreated?.(path)
  let removed = false
  return {
    path,
    remove() {
      if (removed) return
      removed = true
      rmSync(path, { recursive: true, force: true })
    },
  }
}

/**
 * Places every file under `root`: reflinks when `reflink` (a file that cannot be reflinked is
 * copied, within `limit`), else copies. Returns the bytes copied. Removes the root on failure.
 */
async function fill(
  files: readonly LocalFile[],
  root: Root,
  reflink: boolean,
  limit: number,
): Promise<number> {
  let copied = 0
  try {
    for (const f of files) {
      if (reflink && (await place(f, root.path, true))) continue
      copied += f.size
      if (reflink && copied > limit)
        throw new CliError(
          'snapshot-too-large',
          `${f.path} cannot be reflinked, and copying what cannot adds up to more than --copy-limit ${formatSize(limit)}; raise --copy-limit, or run with --in-place`,
        )
      await place(f, root.path, false)
    }
    return copied
  } catch (e) {
    root.remove()
    throw e
  }
}

/** Copies (or reflinks) one listed file to the same path under `root`, read-only; false when a reflink is impossible. */
async function place(file: LocalFile, root: string, reflink: boolean): Promise<boolean> {
  const target = join(root, file.path)
  await mkdir(dirname(target), { recursive: true, mode: 0o700 })
  const fh = await openListed(file)
  try {
    // Through the descriptor just opened (no symlink, no FIFO), not the name, which can change.
    const source = process.platform === 'linux' ? `/proc/self/fd/${fh.fd}` : file.location
    const mode = constants.COPYFILE_EXCL | (reflink ? constants.COPYFILE_FICLONE_FORCE : 0)
    try {
      await copyFile(source, target, mode)
    } catch (e) {
      if (reflink && NO_REFLINK.has((e as NodeJS.ErrnoException).code ?? '')) return false
      throw new CliError(
        'snapshot-failed',
        `cannot copy ${file.path} into the snapshot: ${(e as NodeJS.ErrnoException).code ?? e}`,
      )
    }
  } finally {
    await fh.close()
  }
  await chmod(target, 0o400)
  return true
}

/** What copyFile raises when the filesystem (or the pair of them) cannot clone. */
const NO_REFLINK = new Set(['ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'EINVAL', 'ENOSYS', 'ENOTTY', 'EPERM'])

async function hasRoom(base: string, bytes: number): Promise<boolean> {
  try {
    await mkdir(base, { recursive: true, mode: 0o700 })
    const fs = await statfs(base)
    return fs.bavail * fs.bsize >= bytes + FREE_RESERVE
  } catch {
    return false
  }
}

/**
 * Removes snapshots left by an `exec` that was killed outright (SIGKILL leaves no chance to clean
 * up): ours (same owner), named after a process that no longer runs.
 */
async function sweepAbandoned(base: string): Promise<void> {
  let names: string[]
  try {
    names = (await readdir(base)).filter((n) => n.startsWith(PREFIX))
  } catch {
    return
  }
  const uid = process.getuid?.()
  for (const name of names) {
    const pid = Number(name.slice(PREFIX.length).split('-')[0])
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid || alive(pid)) continue
    const path = join(base, name)
    try {
      if (uid !== undefined && (await stat(path)).uid !== uid) continue
      await rm(path, { recursive: true, force: true })
    } catch {}
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** `8 GiB`, `512 MiB`, `1234 bytes`: a size for people. */
function formatSize(bytes: number): string {
  for (const [unit, factor] of [
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ] as const) {
    if (bytes >= factor) return `${Number((bytes / factor).toFixed(1))} ${unit}`
  }
  return `${bytes} bytes`
}
