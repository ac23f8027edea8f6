/**
 * The record log: the node's source of truth (docs/adr/0002 for its repair and lock).
 * An append-only file of record bytes, fsync'd in batches before any append
 * is acknowledged; every index is rebuilt from it by `replay`.
 *
 * This file holds the format and invariants below, opening, appending,
 * replay and close. Its parts: frames, CRC and scanning in
 * node/record-log-frames.ts; the group commit in node/record-log-commit.ts;
 * the lock file in node/record-log-lock.ts; cutting a torn tail and
 * repairing damage in node/record-log-repair.ts; error codes in
 * node/record-log-errors.ts.
 *
 * File format (all integers big-endian):
 *
 *     header  = "ALMLOG01"                       8 bytes: magic "ALMLOG" + format version "01"
 *     frame   = length:u32 ‖ crc:u32 ‖ payload   8 + length bytes
 *     file    = header ‖ frame*
 *
 * - `length` is the payload's byte count, 1 ..= MAX_RECORD_BYTES (256 KiB,
 *   a genesis, the largest record). A length of 0 is never written: a
 *   zero-filled tail (what some file systems leave after a power cut) would
 *   otherwise read as valid empty frames, since the CRC of no bytes is 0.
 * - `crc` is CRC-32 (ISO-HDLC, polynomial 0x04C11DB7 reflected, the CRC of
 *   zlib, gzip and PNG) of the payload alone: `zlib.crc32` where Node has it
 *   (20.15+, 22.2+), else the table-driven `portableCrc32`
 *   (node/record-log-frames.ts), which gives the same values.
 * - `payload` is one record's bytes, stored as given (already-verified
 *   DAG-CBOR; this module does not look inside).
 * - Raising the length bound or changing the framing needs a new version
 *   in the header: an older node would otherwise take a longer frame for a
 *   torn one and truncate the log there.
 *
 * Invariants:
 * - One writer per file: before the file is opened, a lock file beside it
 *   (`records.log.lock`) is created with link(2), which fails if it exists,
 *   and holds the owner's pid (and on Linux its boot id and start time). A
 *   lock whose owner is gone (killed, rebooted, or the pid now belongs to
 *   another process) is taken over; a live owner makes open reject with
 *   'record-log-locked', naming the pid. Within one process a second open of
 *   the same file rejects with 'record-log-busy'. See `acquireLock` in
 *   node/record-log-lock.ts.
 * - `append` resolves only after its bytes were written *and* `fdatasync`
 *   returned. Appends that arrive while a write+fsync is in flight form the
 *   next batch: one write and one fsync for the lot (group commit).
 * - Frames are written in the order `append` was called; a batch's appends
 *   resolve in that order, so acknowledged records always form a prefix.
 * - Opening scans the whole file. At the first torn or corrupt frame the scan
 *   looks for a good frame after it (see `findResync` in
 *   node/record-log-repair.ts):
 *   - none: a torn tail. Only the last batch can be torn by a crash, and
 *     none of its appends had been acknowledged, so the file is cut there
 *     (ftruncate + fsync) and the log reports `{event: 'record-log-truncated'}`.
 *   - one: damage in the middle (a flipped bit, a bad sector), which a crash
 *     cannot cause. Acknowledged records are never dropped with it: the file
 *     as found is copied to `records.log.damaged-<n>` (a new n each time,
 *     never overwritten), every good frame after each damaged stretch is
 *     kept, and the file is rewritten without the damage (temp file, fsync,
 *     rename, fsync of the directory). The log reports `{event:
 *     'record-log-repaired'}` with the frames (or bytes) lost, and
 *     `RecordLog.recovery` says the same. The lost records are missing from
 *     the store's ids, so the next sync fetches them back from peers.
 *   A file that does not start with the magic is never touched: open rejects
 *   with code 'record-log-format'.
 * - After a failed write or fsync the log refuses further appends (code
 *   'record-log-io'): after a failed fsync the kernel may have dropped the
 *   dirty pages, so retrying could acknowledge bytes that are not on disk.
 *   Reopening rescans and cuts whatever was left half-written.
 * - Nothing here throws synchronously on I/O: failures are rejected promises
 *   carrying a `NodeError` (node/errors.ts: stable `name`, a `code`, a
 *   message naming the path, the `cause`).
 *
 * Not covered: a record log on a file system shared between hosts (the lock
 *   checks pids on this host only); on macOS `fdatasync` does not flush the
 *   drive's own cache (F_FULLFSYNC, which Node does not expose).
 */
import { constants, type FileHandle, mkdir, open, realpath } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { NodeError } from './errors.js'
import { syncDirectory } from './files.js'
import { createGroupCommit, type GroupCommit, type LogState } from './record-log-commit.js'
import { failure, ioError } from './record-log-errors.js'
import {
  FRAME_HEADER_BYTES,
  HEADER_BYTES,
  MAGIC,
  MAX_RECORD_BYTES,
  RECORD_LOG_MAGIC,
  type ScanResult,
  scanFrames,
  writeAll,
  writeFrame,
} from './record-log-frames.js'
import { acquireLock } from './record-log-lock.js'
import { type Opened, type Opening, type RecordLogRecovery, scanAndRecover } from './record-log-repair.js'

export type { RecordLogErrorCode } from './record-log-errors.js'
export {
  crc32,
  MAX_RECORD_BYTES,
  portableCrc32,
  RECORD_LOG_MAGIC,
  type TearReason,
} from './record-log-frames.js'
export type { DamagedRegion, RecordLogRecovery, ResyncMethod } from './record-log-repair.js'
export { NodeError }

export interface RecordLogOptions {
  /** Wait this long before a flush that is not full, to gather more appends (default 0). */
  fsyncBatchMs?: number
  /** Most appends per write+fsync (default 4096). */
  maxBatch?: number
  /**
   * Structured events: `record-log-truncated`, `record-log-repaired`,
   * `record-log-lock-taken-over`, `record-log-io-error`. Default: JSON lines on stderr.
   */
  log?: (event: object) => void
}

export interface RecordLogStats {
  /** Records written and fsync'd since open. */
  appends: number
  /** Write+fsync batches since open. */
  flushes: number
}

export interface RecordLog {
  readonly path: string
  /** What opening cut or repaired; undefined when the file was whole. */
  readonly recovery?: RecordLogRecovery | undefined
  /** Resolves once `bytes` is written and fsync'd; rejects with a NodeError otherwise. */
  append(bytes: Uint8Array): Promise<void>
  /** All or none are accepted; resolves once every one is written and fsync'd, in order. */
  appendMany(records: readonly Uint8Array[]): Promise<void>
  /**
   * Calls `fn` for each durable record in file order, reading in large chunks;
   * resolves to the number of records. Each `record` is a view that stays valid
   * (nothing is reused). Records appended during the replay are not included.
   */
  replay(fn: (record: Uint8Array, index: number) => void): Promise<number>
  /** Every durable record, in file order (replay collected into an array). */
  records(): Promise<Uint8Array[]>
  /** Bytes of the file up to the end of the last durable frame, header included. */
  size(): number
  /** Durable records. */
  count(): number
  stats(): RecordLogStats
  /** Flushes pending appends, fsyncs, closes. Idempotent; later appends reject ('record-log-closed'). */
  close(): Promise<void>
}

// --- opening -------------------------------------------------------------------

const openPaths = new Set<string>()

function defaultLog(event: object): void {
  process.stderr.write(`${JSON.stringify(event)}\n`)
}

/** Makes the log's directory; resolves to one name for the file whatever the path given (symbolic links, `..`). */
async function canonicalPath(path: string): Promise<string> {
  const fullPath = resolve(path)
  await mkdir(dirname(fullPath), { recursive: true, mode: 0o700 })
  return join(await realpath(dirname(fullPath)), basename(fullPath))
}

/** Events never break the log: a throwing logger is ignored. */
function eventSink(log: (event: object) => void): (event: object) => void {
  return (event) => {
    try {
      log(event)
    } catch {}
  }
}

/**
 * Checks the file starts with the magic (else 'record-log-format', the file
 * left untouched), writing the header into a new file; resolves to the size.
 */
async function checkOrWriteHeader(
  opening: Opening,
  fh: FileHandle,
  fullPath: string,
  path: string,
  emit: (event: object) => void,
): Promise<number> {
  opening.step = 'read header'
  const fileSize = (await fh.stat()).size
  const head = Buffer.alloc(HEADER_BYTES)
  if (fileSize > 0) await fh.read(head, 0, Math.min(HEADER_BYTES, fileSize), 0)
  const headLen = Math.min(HEADER_BYTES, fileSize)
  if (!head.subarray(0, headLen).equals(MAGIC.subarray(0, headLen))) {
    throw failure(
      'record-log-format',
      `${path} is not an allmende record log (expected header ${RECORD_LOG_MAGIC}); left untouched`,
    )
  }
  if (fileSize < HEADER_BYTES) {
    // A new file, or one whose creation was cut short inside the header.
    opening.step = 'write header'
    if (fileSize > 0) {
      emit({
        event: 'record-log-truncated',
        path,
        offset: 0,
        droppedBytes: fileSize,
        reason: 'short-header',
      })
      await fh.truncate(0)
    }
    await writeAll(fh, MAGIC, 0)
    await fh.sync()
    await syncDirectory(dirname(fullPath)) // the new directory entry must survive a crash too
    return HEADER_BYTES
  }
  return fileSize
}

/**
 * Opens (or creates) the log at `path`, takes its lock, scans it, cuts a torn
 * tail or repairs damage before it, and returns a handle ready for appends.
 * Rejects with NodeError 'record-log-format' for a file that is not a record
 * log, 'record-log-busy' if this process has it open already,
 * 'record-log-locked' if another process has, 'record-log-io' on I/O failure.
 */
export async function openRecordLog(path: string, options: RecordLogOptions = {}): Promise<RecordLog> {
  const emit = eventSink(options.log ?? defaultLog)
  const opening: Opening = { step: 'create directory', fh: undefined }
  // Files are opened by the path given; the checks against a second open use the resolved one.
  const fullPath = resolve(path)
  let canonical: string
  try {
    canonical = await canonicalPath(path)
  } catch (e) {
    throw ioError(path, opening.step, e)
  }
  if (openPaths.has(canonical)) {
    throw failure('record-log-busy', `record log ${path} is already open in this process`)
  }
  openPaths.add(canonical)
  let release: (() => Promise<void>) | undefined
  try {
    opening.step = 'take the lock'
    release = await acquireLock(canonical, path, emit)
    opening.step = 'open'
    const fh = await open(fullPath, constants.O_RDWR | constants.O_CREAT, 0o600)
    opening.fh = fh
    const fileSize = await checkOrWriteHeader(opening, fh, fullPath, path, emit)
    const opened = await scanAndRecover(opening, fh, fileSize, fullPath, path, emit)
    return createLog(opened, canonical, path, options, emit, release)
  } catch (e) {
    await opening.fh?.close().catch(() => {})
    await release?.().catch(() => {})
    openPaths.delete(canonical)
    if (e instanceof NodeError) throw e
    throw ioError(path, opening.step, e)
  }
}

// --- appending -------------------------------------------------------------------

function checkRecord(bytes: unknown, path: string): NodeError | undefined {
  if (!(bytes instanceof Uint8Array)) {
    return failure('record-log-invalid', `record log ${path}: a record must be a Uint8Array`)
  }
  if (bytes.length === 0 || bytes.length > MAX_RECORD_BYTES) {
    return failure(
      'record-log-invalid',
      `record log ${path}: a record is 1 to ${MAX_RECORD_BYTES} bytes, this one ${bytes.length}`,
    )
  }
  return undefined
}

function closedError(path: string): NodeError {
  return failure('record-log-closed', `record log ${path} is closed`)
}

/** Why an append is refused before its record is looked at: the log is closing, or broken. */
function refusal(state: LogState): NodeError | undefined {
  if (state.closing !== undefined) return closedError(state.path)
  return state.broken
}

function appendOne(state: LogState, commit: GroupCommit, bytes: Uint8Array): Promise<void> {
  const error = refusal(state) ?? checkRecord(bytes, state.path)
  if (error !== undefined) return Promise.reject(error)
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + bytes.length)
  writeFrame(frame, 0, bytes)
  return commit.enqueue(frame, 1)
}

/** All or none: every record is checked before any is queued, and they go out as one entry of the queue. */
function appendAll(state: LogState, commit: GroupCommit, records: readonly Uint8Array[]): Promise<void> {
  const { path } = state
  let error = refusal(state)
  if (error === undefined && !Array.isArray(records)) {
    error = failure('record-log-invalid', `record log ${path}: appendMany takes an array`)
  }
  let total = 0
  for (let i = 0; error === undefined && i < records.length; i++) {
    error = checkRecord(records[i], path)
    if (error !== undefined) error.message += ` (record ${i})`
    else total += FRAME_HEADER_BYTES + records[i]!.length
  }
  if (error !== undefined) return Promise.reject(error)
  if (records.length === 0) return Promise.resolve()
  const frames = Buffer.allocUnsafe(total)
  let offset = 0
  for (const r of records) offset = writeFrame(frames, offset, r)
  return commit.enqueue(frames, records.length)
}

// --- replaying and closing ---------------------------------------------------------

async function replayLog(state: LogState, fn: (record: Uint8Array, index: number) => void): Promise<number> {
  const { fh, path } = state
  if (state.closing !== undefined) throw closedError(path)
  const limit = state.size
  let scanned: ScanResult
  try {
    scanned = await scanFrames(fh, limit, fn, false)
  } catch (e) {
    if (state.closing !== undefined) throw closedError(path)
    throw ioError(path, 'replay', e)
  }
  if (scanned.tear !== undefined) {
    throw failure(
      'record-log-corrupt',
      `record log ${path}: frame at offset ${scanned.tear.offset} went bad after open (${scanned.tear.reason})`,
    )
  }
  return scanned.count
}

/** Waits for the appends queued before it, fsyncs (unless broken), closes the file and releases the lock. */
async function closeLog(
  state: LogState,
  commit: GroupCommit,
  releaseLock: () => Promise<void>,
): Promise<void> {
  const { fh, path } = state
  try {
    while (commit.inFlight() !== undefined) await commit.inFlight()
    if (state.broken === undefined) {
      try {
        await fh.sync()
      } catch (e) {
        throw ioError(path, 'fsync on close', e)
      }
    }
  } finally {
    await fh.close().catch(() => {})
    await releaseLock().catch(() => {})
    openPaths.delete(state.fullPath)
  }
}

function createLog(
  opened: Opened,
  fullPath: string,
  path: string,
  options: RecordLogOptions,
  emit: (event: object) => void,
  releaseLock: () => Promise<void>,
): RecordLog {
  const state: LogState = {
    fh: opened.fh,
    fullPath,
    path,
    size: opened.size,
    count: opened.count,
    appends: 0,
    flushes: 0,
    broken: undefined,
    closing: undefined,
  }
  const commit = createGroupCommit(state, options, emit)
  const replay = (fn: (record: Uint8Array, index: number) => void) => replayLog(state, fn)
  return {
    path,
    recovery: opened.recovery,
    append: (bytes) => appendOne(state, commit, bytes),
    appendMany: (records) => appendAll(state, commit, records),
    replay,
    async records() {
      const out: Uint8Array[] = []
      await replay((r) => {
        out.push(r)
      })
      return out
    },
    size: () => state.size,
    count: () => state.count,
    stats: () => ({ appends: state.appends, flushes: state.flushes }),
    close() {
      state.closing ??= closeLog(state, commit, releaseLock)
      return state.closing
    },
  }
}
