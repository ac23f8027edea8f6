/**
 * The record log's lock file (`records.log.lock`, see the invariants in
 * node/record-log.ts): one writer per file. Holds taking the lock, telling
 * whether its owner still runs, taking over a lock whose owner is gone, and
 * releasing it.
 */
import { randomBytes } from 'node:crypto'
import { link, readFile, rename, unlink, writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import type { NodeError } from './errors.js'
import { errorCode, failure } from './record-log-errors.js'

/** Tries at taking the lock while other processes keep taking and dropping it. */
const LOCK_ATTEMPTS = 5

/** Who holds a lock: enough to tell, on this host, whether that process is still the one that took it. */
interface LockOwner {
  pid: number
  host?: string
  /** Linux: the boot id; a pid from before a reboot says nothing about the processes now. */
  boot?: string
  /** Linux: the process's start time (ticks since boot, /proc/<pid>/stat field 22); tells a reused pid. */
  start?: string
}

async function readTrimmed(file: string): Promise<string | undefined> {
  try {
    const text = (await readFile(file, 'utf8')).trim()
    return text === '' ? undefined : text
  } catch {
    return undefined
  }
}

/** A process's state letter and start time from /proc (Linux); undefined elsewhere, or if it is gone. */
async function processStat(pid: number | 'self'): Promise<{ state: string; start: string } | undefined> {
  const stat = await readTrimmed(`/proc/${pid}/stat`)
  if (stat === undefined) return undefined
  // The fields after the command name, which is in parentheses and may hold spaces and parentheses itself.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const state = fields[0]
  const start = fields[19]
  return state && start ? { state, start } : undefined
}

let thisProcessOwner: Promise<LockOwner> | undefined
function thisProcess(): Promise<LockOwner> {
  thisProcessOwner ??= (async () => {
    const [boot, stat] = await Promise.all([
      readTrimmed('/proc/sys/kernel/random/boot_id'),
      processStat('self'),
    ])
    const owner: LockOwner = { pid: process.pid, host: hostname() }
    if (boot !== undefined) owner.boot = boot
    if (stat !== undefined) owner.start = stat.start
    return owner
  })()
  return thisProcessOwner
}

function parseOwner(text: string): LockOwner | undefined {
  let value: Record<string, unknown>
  try {
    value = JSON.parse(text) as Record<string, unknown>
  } catch {
    return undefined
  }
  const pid = value?.pid
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) return undefined
  const owner: LockOwner = { pid }
  for (const key of ['host', 'boot', 'start'] as const) {
    const field = value[key]
    if (typeof field === 'string' && field !== '') owner[key] = field
  }
  return owner
}

/**
 * Whether the process that took the lock still runs here. Gone: another boot,
 * no such pid, a pid now held by a process started at another time, or a
 * process that has exited but not been reaped yet (a zombie writes nothing).
 * Where nothing tells (a pid of another user, /proc hidden), it runs.
 */
async function ownerRuns(owner: LockOwner, self: LockOwner): Promise<boolean> {
  if (owner.boot !== undefined && self.boot !== undefined && owner.boot !== self.boot) return false
  if (owner.pid === self.pid) {
    // Our own pid: a worker thread of this process, or a process before us that had our pid (a container restart).
    return owner.start === undefined || self.start === undefined || owner.start === self.start
  }
  try {
    process.kill(owner.pid, 0)
  } catch (e) {
    if (errorCode(e) === 'ESRCH') return false
  }
  const stat = await processStat(owner.pid)
  if (stat === undefined) return true
  if (stat.state === 'Z' || stat.state === 'X') return false
  return owner.start === undefined || owner.start === stat.start
}

function lockedError(path: string, lockPath: string, owner: LockOwner): NodeError {
  const where = owner.host !== undefined && owner.host !== hostname() ? ` on host ${owner.host}` : ''
  return failure(
    'record-log-locked',
    `record log ${path} is in use by process ${owner.pid}${where} (lock file ${lockPath}): only one node may use it. ` +
      `Stop that process first; if no allmende process with pid ${owner.pid} runs, delete ${lockPath} and start again`,
  )
}

/**
 * Moves a stale lock out of the way, but only the one judged stale: it is
 * renamed to a private name and compared; if another process took the lock
 * in between, that lock is linked back. Resolves to true if it was removed.
 */
async function removeStaleLock(lockPath: string, stale: string): Promise<boolean> {
  const aside = `${lockPath}.stale-${process.pid}-${randomBytes(6).toString('hex')}`
  try {
    await rename(lockPath, aside)
  } catch (e) {
    if (errorCode(e) === 'ENOENT') return false
    throw e
  }
  const moved = await readFile(aside, 'utf8').catch(() => undefined)
  if (moved !== stale) await link(aside, lockPath).catch(() => {})
  await unlink(aside).catch(() => {})
  return moved === stale
}

/**
 * Takes `<log>.lock` for this process and resolves to its release. The owner
 * is written to a private temp file first and hard-linked into place (link
 * fails if the lock exists), so a lock is never seen half-written. A lock
 * left by a process that is gone (`ownerRuns`) is taken over at once, so a
 * node killed with SIGKILL restarts without waiting; one held by a live
 * process makes this reject with 'record-log-locked', naming it.
 *
 * Why not a library: proper-lockfile (mkdir + mtime) calls a lock stale only
 * after its `stale` period (10 s by default, 2 s at least) without a refresh,
 * so a restart right after kill -9 is refused or has to wait, and it cannot
 * name the owner. Kernel locks (flock/OFD, released when the process dies)
 * would be better still, but Node has no API for them and fs-native-extensions
 * is a native addon that would have to live outside the bundle.
 */
export async function acquireLock(
  fullPath: string,
  path: string,
  emit: (event: object) => void,
): Promise<() => Promise<void>> {
  const lockPath = `${fullPath}.lock`
  const self = await thisProcess()
  const mine = `${JSON.stringify(self)}\n`
  const temp = `${lockPath}.${process.pid}-${randomBytes(6).toString('hex')}`
  await writeFile(temp, mine, { mode: 0o600, flag: 'wx' })
  try {
    for (let attempt = 0; attempt < LOCK_ATTEMPTS; attempt++) {
      try {
        await link(temp, lockPath)
        return () => releaseLock(lockPath, mine)
      } catch (e) {
        if (errorCode(e) !== 'EEXIST') throw e
      }
      const found = await readFile(lockPath, 'utf8').catch((e: unknown) => {
        if (errorCode(e) === 'ENOENT') return undefined // released in between: try again
        throw e
      })
      if (found === undefined) continue
      const owner = parseOwner(found)
      if (owner !== undefined && (await ownerRuns(owner, self))) throw lockedError(path, lockPath, owner)
      if (await removeStaleLock(lockPath, found)) {
        emit({
          event: 'record-log-lock-taken-over',
          path,
          lock: lockPath,
          previousOwner: owner ?? found.slice(0, 200),
        })
      }
    }
  } finally {
    await unlink(temp).catch(() => {})
  }
  throw failure(
    'record-log-locked',
    `record log ${path}: the lock ${lockPath} kept changing hands while this process tried to take it; ` +
      'make sure only one node uses this home, then start again',
  )
}

/** Removes the lock if it is still this process's (a lock taken over meanwhile is left alone). */
async function releaseLock(lockPath: string, mine: string): Promise<void> {
  const found = await readFile(lockPath, 'utf8').catch(() => undefined)
  if (found === mine) await unlink(lockPath).catch(() => {})
}
