/**
 * The record log: the node's source of truth (DESIGN.md §6 "Record log").
 * An append-only file of record bytes, fsync'd in batches before any append
 * is acknowledged; every index is rebuilt from it by `replay`.
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
 *   (20.15+, 22.2+), else the table-driven `portableCrc32` below, which gives
 *   the same values.
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
 *   the same file rejects with 'record-log-busy'. See `acquireLock`.
 * - `append` resolves only after its bytes were written *and* `fdatasync`
 *   returned. Appends that arrive while a write+fsync is in flight form the
 *   next batch: one write and one fsync for the lot (group commit).
 * - Frames are written in the order `append` was called; a batch's appends
 *   resolve in that order, so acknowledged records always form a prefix.
 * - Opening scans the whole file. At the first torn or corrupt frame the scan
 *   looks for a good frame after it (see `findResync`):
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
import { randomBytes } from 'node:crypto'
import {
  chmod,
  constants,
  copyFile,
  type FileHandle,
  link,
  mkdir,
  open,
  readFile,
  realpath,
  rename,
  unlink,
  writeFile,
} from 'node:fs/promises'
import { hostname } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import * as zlib from 'node:zlib'
import { LIMITS } from '../protocol/limits.js'
import { NodeError } from './errors.js'

export { NodeError }

/** The 8-byte header: magic and format version. */
export const RECORD_LOG_MAGIC = 'ALMLOG01'
const MAGIC = Buffer.from(RECORD_LOG_MAGIC, 'latin1')
const HEADER_BYTES = MAGIC.length
const FRAME_HEADER_BYTES = 8
/** Largest payload `append` accepts: the largest record (a genesis). */
export const MAX_RECORD_BYTES = Math.max(LIMITS.maxRecordBytes, LIMITS.maxGenesisBytes)
/** Largest length the scan takes for a frame; anything above is corruption. */
const MAX_FRAME_PAYLOAD = MAX_RECORD_BYTES + 64 * 1024
/** Bytes per read while scanning or replaying. */
const READ_CHUNK = 4 * 1024 * 1024
/** Most bytes an anchor check reads past its position: three frames (see `isAnchor`). */
const SCAN_LOOKAHEAD = 3 * (FRAME_HEADER_BYTES + MAX_FRAME_PAYLOAD)
/** Most bytes one batch writes (a batch holds at least one append, whatever its size). */
const MAX_BATCH_BYTES = 8 * 1024 * 1024
const DEFAULT_MAX_BATCH = 4096
/** Damaged copies kept beside the log (`records.log.damaged-<n>`) before a repair gives up. */
const MAX_DAMAGED_COPIES = 1000
/** Damaged regions listed in the repair event (all of them are in `RecordLog.recovery`). */
const MAX_REGIONS_LOGGED = 20
/** Tries at taking the lock while other processes keep taking and dropping it. */
const LOCK_ATTEMPTS = 5

/** The codes of the NodeErrors (node/errors.ts) this module rejects with. */
export type RecordLogErrorCode =
  | 'record-log-closed'
  | 'record-log-io'
  | 'record-log-format'
  | 'record-log-corrupt'
  | 'record-log-invalid'
  | 'record-log-busy'
  | 'record-log-locked'

/** HTTP status for each code, should one reach the API: closing is 503, a bad record 400, the rest 500. */
const STATUS: Readonly<Record<RecordLogErrorCode, number>> = {
  'record-log-closed': 503,
  'record-log-invalid': 400,
  'record-log-io': 500,
  'record-log-format': 500,
  'record-log-corrupt': 500,
  'record-log-busy': 500,
  'record-log-locked': 500,
}

function failure(code: RecordLogErrorCode, message: string, cause?: unknown): NodeError {
  return new NodeError(
    code,
    message,
    cause === undefined ? { status: STATUS[code] } : { status: STATUS[code], cause },
  )
}

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

/** Why a frame was not taken: its length, or its CRC, or the file ended inside it. */
export type TearReason = 'short-header' | 'bad-length' | 'short-payload' | 'crc-mismatch'

/**
 * How the next good frame after a damaged stretch was found (see `findResync`):
 * - `length-bit`: the length had one flipped bit; with it restored the frame's CRC matches, nothing is lost;
 * - `length`: the first good frame after the damage is where the damaged frame's length points, so
 *   exactly that one frame is lost;
 * - `scan`: it is elsewhere; how many frames the skipped bytes held is unknown.
 */
export type ResyncMethod = 'length' | 'length-bit' | 'scan'

/** One damaged stretch of the file as found (offsets are in that file, i.e. the damaged copy). */
export interface DamagedRegion {
  offset: number
  /** Bytes dropped (0 for `length-bit`: the frame is kept with its length restored). */
  bytes: number
  reason: TearReason
  resync: ResyncMethod
  /** Frames dropped, where that is known (`length`: 1, `length-bit`: 0); absent for `scan`. */
  framesLost?: number
}

/** What opening cut or repaired (`RecordLog.recovery`); absent when the file was whole. */
export interface RecordLogRecovery {
  /** The file as found, copied before the repair; absent when only a torn tail was cut. */
  damagedCopy?: string
  /** Damaged stretches before the tail, in file order. */
  regions: readonly DamagedRegion[]
  /** Frames dropped whose length was intact (an exact count). */
  framesLost: number
  /** Bytes dropped where the frame boundaries were lost (frames unknown). */
  bytesSkipped: number
  /** Bytes of a torn tail cut off the end (0 if none). */
  tailBytes: number
  /** Records in the log after the repair. */
  recordsKept: number
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

// --- CRC-32 ----------------------------------------------------------------

let crcTable: Uint32Array | undefined

/** CRC-32 (ISO-HDLC), table-driven; the same values as `zlib.crc32`. */
export function portableCrc32(data: Uint8Array): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256)
    for (let n = 0; n < 256; n++) {
      let c = n
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
      crcTable[n] = c >>> 0
    }
  }
  const table = crcTable
  let crc = 0xffffffff
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8)
  return (crc ^ 0xffffffff) >>> 0
}

const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array) => number }).crc32
/** CRC-32 of the payload: node:zlib's when present (Node 20.15+), else the portable one. */
export const crc32: (data: Uint8Array) => number =
  typeof nativeCrc32 === 'function' ? (data) => nativeCrc32(data) >>> 0 : portableCrc32

// --- scanning ----------------------------------------------------------------

interface ScanResult {
  /** Offset just past the last good frame. */
  end: number
  count: number
  tear?: { offset: number; reason: TearReason }
}

/** A length the scan takes for a frame: never 0 (see the header), never beyond the largest record. */
function plausibleLength(length: number): boolean {
  return length > 0 && length <= MAX_FRAME_PAYLOAD
}

/**
 * Walks the frames from `start` to `limit`, calling `onRecord` for each
 * good one, and stops at the first bad one. Reads READ_CHUNK bytes at a time
 * into fresh buffers, so the views handed out are never overwritten.
 */
async function scanFrames(
  fh: FileHandle,
  limit: number,
  onRecord?: (record: Uint8Array, index: number) => void,
  /** False on replay: those frames were checked by the scan at open, and only this process writes the file. */
  checkCrc = true,
  start = HEADER_BYTES,
): Promise<ScanResult> {
  let buf = Buffer.alloc(0)
  let bufStart = start // file offset of buf[0]
  let pos = 0 // next frame within buf
  let count = 0
  for (;;) {
    // Parse every complete frame in the buffer.
    while (buf.length - pos >= FRAME_HEADER_BYTES) {
      const length = buf.readUInt32BE(pos)
      if (length === 0 || length > MAX_FRAME_PAYLOAD) {
        return { end: bufStart + pos, count, tear: { offset: bufStart + pos, reason: 'bad-length' } }
      }
      if (buf.length - pos - FRAME_HEADER_BYTES < length) break
      const payload = new Uint8Array(buf.buffer, buf.byteOffset + pos + FRAME_HEADER_BYTES, length)
      if (checkCrc && crc32(payload) !== buf.readUInt32BE(pos + 4)) {
        return { end: bufStart + pos, count, tear: { offset: bufStart + pos, reason: 'crc-mismatch' } }
      }
      onRecord?.(payload, count)
      count++
      pos += FRAME_HEADER_BYTES + length
    }
    const fileOffset = bufStart + buf.length // first byte not yet read
    const rest = buf.length - pos
    if (fileOffset >= limit) {
      if (rest === 0) return { end: fileOffset, count }
      const reason = rest < FRAME_HEADER_BYTES ? 'short-header' : 'short-payload'
      return { end: bufStart + pos, count, tear: { offset: bufStart + pos, reason } }
    }
    // Carry the partial frame over into a fresh buffer and read the next chunk after it.
    const need = rest >= FRAME_HEADER_BYTES ? FRAME_HEADER_BYTES + buf.readUInt32BE(pos) : 0
    const toRead = Math.min(limit - fileOffset, Math.max(READ_CHUNK, need - rest))
    const next = Buffer.allocUnsafe(rest + toRead)
    buf.copy(next, 0, pos)
    let filled = rest
    while (filled < next.length) {
      const { bytesRead } = await fh.read(next, filled, next.length - filled, bufStart + pos + filled)
      if (bytesRead === 0) break // the file shrank under us: treat what we have as the end
      filled += bytesRead
    }
    bufStart += pos
    buf = filled === next.length ? next : next.subarray(0, filled)
    pos = 0
    if (filled === rest) limit = bufStart + filled
  }
}

// --- repairing -------------------------------------------------------------------

/** Random access to the file as found, through one cached window (repair only, never a hot path). */
class FileWindow {
  private buf = Buffer.alloc(0)
  private start = 0
  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  /** The `length` bytes at `offset` if the window holds them already. */
  cached(offset: number, length: number): Buffer | undefined {
    const at = offset - this.start
    return at >= 0 && at + length <= this.buf.length ? this.buf.subarray(at, at + length) : undefined
  }

  /** The `length` bytes at `offset`; the caller keeps `offset + length` within the file. Views stay valid. */
  async bytes(offset: number, length: number): Promise<Buffer> {
    const hit = this.cached(offset, length)
    if (hit !== undefined) return hit
    const want = Math.min(this.size - offset, Math.max(READ_CHUNK, length))
    const next = Buffer.allocUnsafe(want)
    let filled = 0
    while (filled < want) {
      const { bytesRead } = await this.fh.read(next, filled, want - filled, offset + filled)
      if (bytesRead === 0) throw new Error(`the file shrank to ${offset + filled} bytes while it was read`)
      filled += bytesRead
    }
    this.buf = next
    this.start = offset
    return next.subarray(0, length)
  }
}

/**
 * The end of the good frame at `pos` (a plausible length, inside the file, a
 * matching CRC), or undefined. `length` replaces the frame's own length field.
 */
async function goodFrameEnd(file: FileWindow, pos: number, length?: number): Promise<number | undefined> {
  if (pos + FRAME_HEADER_BYTES > file.size) return undefined
  const head = await file.bytes(pos, FRAME_HEADER_BYTES)
  const payloadLength = length ?? head.readUInt32BE(0)
  const crc = head.readUInt32BE(4)
  const end = pos + FRAME_HEADER_BYTES + payloadLength
  if (!plausibleLength(payloadLength) || end > file.size) return undefined
  const payload = await file.bytes(pos + FRAME_HEADER_BYTES, payloadLength)
  return crc32(payload) === crc ? end : undefined
}

/** The good frame that the length field at `pos` leads to, if the length is plausible and one follows. */
async function leadsToGoodFrame(file: FileWindow, pos: number): Promise<boolean> {
  if (pos + FRAME_HEADER_BYTES > file.size) return false
  const length = (await file.bytes(pos, 4)).readUInt32BE(0)
  const after = pos + FRAME_HEADER_BYTES + length
  return plausibleLength(length) && after < file.size && (await goodFrameEnd(file, after)) !== undefined
}

/**
 * Whether good frames go on at `pos`, the end of a frame just found good: the
 * file ends there, or a good frame starts there, or the frame there is bad but
 * its length leads to a good one (so that a good frame between two damaged
 * ones is kept too).
 */
async function goesOn(file: FileWindow, pos: number): Promise<boolean> {
  if (pos === file.size) return true
  if ((await goodFrameEnd(file, pos)) !== undefined) return true
  return leadsToGoodFrame(file, pos)
}

/**
 * Whether the byte-by-byte scan may resume at `pos`: a good frame starts there
 * and good frames go on after it (`goesOn`). Every way to pass takes two CRC-32
 * matches over lengths read from the data, or one and a length that ends the
 * file exactly: on random bytes about 2^-64 per position, so even a scan across
 * gigabytes resynchronises falsely with odds below 2^-30. The cheap checks
 * (both lengths plausible and inside the file) come before the CRCs.
 */
async function isAnchor(file: FileWindow, pos: number): Promise<boolean> {
  const length = (await file.bytes(pos, 4)).readUInt32BE(0)
  const next = pos + FRAME_HEADER_BYTES + length
  if (!plausibleLength(length) || next > file.size) return false
  if (next !== file.size) {
    if (next + FRAME_HEADER_BYTES > file.size) return false
    const nextLength = (await file.bytes(next, 4)).readUInt32BE(0)
    if (!plausibleLength(nextLength) || next + FRAME_HEADER_BYTES + nextLength > file.size) return false
  }
  const end = await goodFrameEnd(file, pos)
  return end !== undefined && (await goesOn(file, end))
}

interface Resync {
  method: ResyncMethod
  /** Where good frames resume. */
  next: number
  /** `length-bit`: the frame's header with its length restored (the frame is kept, up to `next`). */
  header?: Buffer
}

/**
 * Finds where good frames resume after the bad frame at `pos`:
 * 1. One bit of the length was hit: for each of the 32 single-bit changes the
 *    frame's own CRC must match and good frames must go on after it
 *    (`goesOn`). The frame is kept with its length restored.
 * 2. Otherwise the earliest later position where good frames resume, byte by
 *    byte. Each position must be an anchor (`isAnchor`: two CRC matches), except
 *    the one the damaged frame's own length points to, where a single good
 *    frame is enough (one position, one CRC: 2^-32 odds of a false match), so a
 *    good frame between two damaged ones is kept. The earliest wins, rather
 *    than trusting the length, because a damaged length may point past good
 *    frames to a later frame boundary.
 * Undefined when nothing good follows: the damage is a torn tail.
 */
async function findResync(file: FileWindow, pos: number): Promise<Resync | undefined> {
  let target: number | undefined
  if (pos + FRAME_HEADER_BYTES <= file.size) {
    const head = Buffer.from(await file.bytes(pos, FRAME_HEADER_BYTES))
    const length = head.readUInt32BE(0)
    for (let bit = 0; bit < 32; bit++) {
      const restored = (length ^ (1 << bit)) >>> 0
      const end = await goodFrameEnd(file, pos, restored)
      if (end !== undefined && (await goesOn(file, end))) {
        const header = Buffer.from(head)
        header.writeUInt32BE(restored, 0)
        return { method: 'length-bit', next: end, header }
      }
    }
    if (plausibleLength(length)) target = pos + FRAME_HEADER_BYTES + length
  }
  for (let p = pos + 1; p + FRAME_HEADER_BYTES <= file.size; p++) {
    // Keep all an anchor check may read in the window, so the window only ever moves forward.
    const ahead = Math.min(file.size - p, SCAN_LOOKAHEAD)
    const window = file.cached(p, ahead) ?? (await file.bytes(p, ahead))
    const length = window.readUInt32BE(0)
    if (!plausibleLength(length) || p + FRAME_HEADER_BYTES + length > file.size) continue
    if (p === target && (await goodFrameEnd(file, p)) !== undefined) return { method: 'length', next: p }
    if (await isAnchor(file, p)) return { method: p === target ? 'length' : 'scan', next: p }
  }
  return undefined
}

/** A stretch of the damaged file to keep, [from, to); `header` replaces its first 8 bytes. */
interface Piece {
  from: number
  to: number
  header?: Buffer
}

interface RepairPlan {
  /** What to keep, in file order (the file header excluded). */
  pieces: Piece[]
  regions: DamagedRegion[]
  /** Where the torn tail starts (the file's size if there is none). */
  tail: number
}

/** From the first bad frame on: alternates finding where good frames resume and walking them. */
async function planRepair(fh: FileHandle, size: number, first: ScanResult): Promise<RepairPlan> {
  const file = new FileWindow(fh, size)
  const pieces: Piece[] = []
  const regions: DamagedRegion[] = []
  let goodFrom = HEADER_BYTES
  let scanned = first
  while (scanned.tear !== undefined) {
    const { offset, reason } = scanned.tear
    if (offset > goodFrom) pieces.push({ from: goodFrom, to: offset })
    const resync = await findResync(file, offset)
    if (resync === undefined) return { pieces, regions, tail: offset }
    if (resync.header !== undefined) {
      pieces.push({ from: offset, to: resync.next, header: resync.header })
      regions.push({ offset, bytes: 0, reason, resync: resync.method, framesLost: 0 })
    } else {
      const bytes = resync.next - offset
      regions.push(
        resync.method === 'length'
          ? { offset, bytes, reason, resync: resync.method, framesLost: 1 }
          : { offset, bytes, reason, resync: resync.method },
      )
    }
    goodFrom = resync.next
    scanned = await scanFrames(fh, size, undefined, true, goodFrom)
  }
  if (scanned.end > goodFrom) pieces.push({ from: goodFrom, to: scanned.end })
  return { pieces, regions, tail: scanned.end }
}

/** Copies the file as found to `<log>.damaged-<n>`, the first n not taken (never overwriting one), fsync'd. */
async function copyAside(fullPath: string): Promise<string> {
  for (let n = 1; ; n++) {
    const target = `${fullPath}.damaged-${n}`
    try {
      await copyFile(fullPath, target, constants.COPYFILE_EXCL)
    } catch (e) {
      if (errorCode(e) === 'EEXIST' && n < MAX_DAMAGED_COPIES) continue
      throw e
    }
    await chmod(target, 0o600)
    const copy = await open(target, 'r+')
    try {
      await copy.sync()
    } finally {
      await copy.close()
    }
    await syncDirectory(dirname(fullPath))
    return target
  }
}

/** Writes the header and the pieces to `<log>.repair`, fsync'd; returns its path (removed again on failure). */
async function writeRepaired(fh: FileHandle, fullPath: string, pieces: readonly Piece[]): Promise<string> {
  const temp = `${fullPath}.repair`
  const out = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600)
  try {
    let at = 0
    const put = async (data: Uint8Array) => {
      await writeAll(out, data, at)
      at += data.length
    }
    await put(MAGIC)
    const chunk = Buffer.allocUnsafe(READ_CHUNK)
    for (const piece of pieces) {
      let from = piece.from
      if (piece.header !== undefined) {
        await put(piece.header)
        from += FRAME_HEADER_BYTES
      }
      while (from < piece.to) {
        const want = Math.min(chunk.length, piece.to - from)
        const { bytesRead } = await fh.read(chunk, 0, want, from)
        if (bytesRead === 0) throw new Error(`the file shrank to ${from} bytes while it was read`)
        await put(chunk.subarray(0, bytesRead))
        from += bytesRead
      }
    }
    await out.sync()
  } catch (e) {
    await out.close().catch(() => {})
    await unlink(temp).catch(() => {})
    throw e
  }
  await out.close()
  return temp
}

/** The `record-log-repaired` event: what was lost, where the file as found is, what to do. */
function repairedEvent(path: string, recovery: RecordLogRecovery): object {
  const lost =
    recovery.bytesSkipped > 0
      ? `${recovery.framesLost} records and ${recovery.bytesSkipped} bytes of unknown records`
      : `${recovery.framesLost} records`
  return {
    event: 'record-log-repaired',
    path,
    ...recovery,
    regions: recovery.regions.slice(0, MAX_REGIONS_LOGGED),
    regionCount: recovery.regions.length,
    action:
      `${lost} were dropped with the damage and are fetched back from peers by the next sync; ` +
      `the file as found is kept in ${recovery.damagedCopy} (delete it once the node is in sync again); ` +
      'damage in the middle of the log points at failing storage or memory: check the disk',
  }
}

// --- locking ---------------------------------------------------------------------

/** Who holds a lock: enough to tell, on this host, whether that process is still the one that took it. */
interface LockOwner {
  pid: number
  host?: string
  /** Linux: the boot id; a pid from before a reboot says nothing about the processes now. */
  boot?: string
  /** Linux: the process's start time (ticks since boot, /proc/<pid>/stat field 22); tells a reused pid. */
  start?: string
}

function errorCode(e: unknown): string | undefined {
  return (e as { code?: unknown } | null)?.code as string | undefined
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
async function acquireLock(
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

// --- opening -------------------------------------------------------------------

const openPaths = new Set<string>()

function ioError(path: string, what: string, cause: unknown): NodeError {
  const reason = cause instanceof Error ? cause.message : String(cause)
  return failure('record-log-io', `record log ${path}: ${what} failed: ${reason}`, cause)
}

function defaultLog(event: object): void {
  process.stderr.write(`${JSON.stringify(event)}\n`)
}

async function writeAll(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done)
    if (bytesWritten <= 0) throw new Error('write made no progress')
    done += bytesWritten
  }
}

/** fsync a directory so a newly created entry survives a crash (not possible on Windows; skipped there). */
async function syncDirectory(dir: string): Promise<void> {
  if (process.platform === 'win32') return
  const dh = await open(dir, constants.O_RDONLY)
  try {
    await dh.sync()
  } finally {
    await dh.close()
  }
}

/** Makes the log's directory; resolves to one name for the file whatever the path given (symbolic links, `..`). */
async function canonicalPath(path: string): Promise<string> {
  const fullPath = resolve(path)
  await mkdir(dirname(fullPath), { recursive: true, mode: 0o700 })
  return join(await realpath(dirname(fullPath)), basename(fullPath))
}

/** An open in progress: the step (for error messages) and the file handle to close should it fail. */
interface Opening {
  step: string
  fh: FileHandle | undefined
}

/** What the log is opened with after its scan: the handle (a new one after a repair), its extent, and what was done. */
interface Opened {
  fh: FileHandle
  size: number
  count: number
  recovery?: RecordLogRecovery
}

/**
 * Scans the log; cuts a torn tail, or repairs damage before it (copy aside,
 * rewrite without it, reopen). `opening.fh` becomes the repaired file's handle.
 */
async function scanAndRecover(
  opening: Opening,
  fh: FileHandle,
  fileSize: number,
  fullPath: string,
  path: string,
  emit: (event: object) => void,
): Promise<Opened> {
  opening.step = 'scan'
  const scanned = await scanFrames(fh, fileSize)
  if (scanned.tear === undefined) return { fh, size: scanned.end, count: scanned.count }
  opening.step = 'look for good frames after the damage'
  const plan = await planRepair(fh, fileSize, scanned)
  const tailBytes = fileSize - plan.tail
  if (plan.regions.length === 0) {
    opening.step = 'truncate torn tail'
    await fh.truncate(plan.tail)
    await fh.sync()
    emit({
      event: 'record-log-truncated',
      path,
      offset: plan.tail,
      droppedBytes: tailBytes,
      reason: scanned.tear.reason,
      records: scanned.count,
    })
    const recovery = { regions: [], framesLost: 0, bytesSkipped: 0, tailBytes, recordsKept: scanned.count }
    return { fh, size: plan.tail, count: scanned.count, recovery }
  }
  opening.step = 'copy the damaged file aside'
  const damagedCopy = await copyAside(fullPath)
  opening.step = 'write the repaired file'
  const temp = await writeRepaired(fh, fullPath, plan.pieces)
  opening.step = 'replace the damaged file'
  opening.fh = undefined
  await fh.close()
  await rename(temp, fullPath)
  await syncDirectory(dirname(fullPath))
  opening.step = 'open the repaired file'
  const repaired = await open(fullPath, constants.O_RDWR)
  opening.fh = repaired
  opening.step = 'scan the repaired file'
  const size = (await repaired.stat()).size
  const rescanned = await scanFrames(repaired, size)
  if (rescanned.tear !== undefined) {
    throw failure(
      'record-log-corrupt',
      `record log ${path}: the repaired file is not whole at offset ${rescanned.tear.offset} ` +
        `(${rescanned.tear.reason}); the file as found is in ${damagedCopy}`,
    )
  }
  let framesLost = 0
  let bytesSkipped = 0
  for (const r of plan.regions) {
    framesLost += r.framesLost ?? 0
    if (r.framesLost === undefined) bytesSkipped += r.bytes
  }
  const recovery: RecordLogRecovery = {
    damagedCopy,
    regions: plan.regions,
    framesLost,
    bytesSkipped,
    tailBytes,
    recordsKept: rescanned.count,
  }
  emit(repairedEvent(path, recovery))
  return { fh: repaired, size: rescanned.end, count: rescanned.count, recovery }
}

/**
 * Opens (or creates) the log at `path`, takes its lock, scans it, cuts a torn
 * tail or repairs damage before it, and returns a handle ready for appends.
 * Rejects with NodeError 'record-log-format' for a file that is not a record
 * log, 'record-log-busy' if this process has it open already,
 * 'record-log-locked' if another process has, 'record-log-io' on I/O failure.
 */
export async function openRecordLog(path: string, options: RecordLogOptions = {}): Promise<RecordLog> {
  const log = options.log ?? defaultLog
  /** Events never break the log: a throwing logger is ignored. */
  const emit = (event: object) => {
    try {
      log(event)
    } catch {}
  }
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
    opening.step = 'read header'
    let fileSize = (await fh.stat()).size
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
      fileSize = HEADER_BYTES
    }
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

interface Pending {
  /** One or more complete frames. */
  frames: Buffer
  records: number
  resolve: () => void
  reject: (error: Error) => void
}

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

function writeFrame(target: Buffer, offset: number, payload: Uint8Array): number {
  target.writeUInt32BE(payload.length, offset)
  target.writeUInt32BE(crc32(payload), offset + 4)
  target.set(payload, offset + FRAME_HEADER_BYTES)
  return offset + FRAME_HEADER_BYTES + payload.length
}

function createLog(
  opened: Opened,
  fullPath: string,
  path: string,
  options: RecordLogOptions,
  emit: (event: object) => void,
  releaseLock: () => Promise<void>,
): RecordLog {
  const fh = opened.fh
  const batchDelay = Math.max(0, options.fsyncBatchMs ?? 0)
  const maxBatch = Math.max(1, Math.floor(options.maxBatch ?? DEFAULT_MAX_BATCH))
  let size = opened.size
  let count = opened.count
  let appends = 0
  let flushes = 0
  let queue: Pending[] = []
  let queuedRecords = 0
  let flushing: Promise<void> | undefined
  let broken: NodeError | undefined
  let closing: Promise<void> | undefined

  const closedError = () => failure('record-log-closed', `record log ${path} is closed`)

  function takeBatch(): Pending[] {
    let records = 0
    let bytes = 0
    let n = 0
    while (n < queue.length) {
      const p = queue[n]!
      if (n > 0 && (records + p.records > maxBatch || bytes + p.frames.length > MAX_BATCH_BYTES)) break
      records += p.records
      bytes += p.frames.length
      n++
    }
    const batch = queue.slice(0, n)
    queue = queue.slice(n)
    queuedRecords -= records
    return batch
  }

  async function flushLoop(): Promise<void> {
    while (queue.length > 0) {
      if (batchDelay > 0 && queuedRecords < maxBatch && closing === undefined) {
        await new Promise((r) => setTimeout(r, batchDelay))
      }
      const batch = takeBatch()
      let data: Buffer | undefined
      let step = 'write'
      try {
        data = batch.length === 1 ? batch[0]!.frames : Buffer.concat(batch.map((p) => p.frames))
        await writeAll(fh, data, size)
        step = 'fdatasync'
        await fh.datasync()
      } catch (e) {
        // Poisoned: see the module header. Everything queued fails with the same error.
        broken = ioError(path, step, e)
        emit({ event: 'record-log-io-error', path, step, offset: size, error: broken.message })
        for (const p of [...batch, ...queue]) p.reject(broken)
        queue = []
        queuedRecords = 0
        return
      }
      let records = 0
      for (const p of batch) records += p.records
      size += data.length
      count += records
      appends += records
      flushes++
      for (const p of batch) p.resolve()
    }
  }

  function schedule(): void {
    if (flushing !== undefined) return
    flushing = new Promise<void>((r) => setImmediate(r)).then(flushLoop).finally(() => {
      flushing = undefined
      if (queue.length > 0) schedule()
    })
  }

  function enqueue(frames: Buffer, records: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      queue.push({ frames, records, resolve, reject })
      queuedRecords += records
      schedule()
    })
  }

  function refusal(): NodeError | undefined {
    if (closing !== undefined) return closedError()
    return broken
  }

  function append(bytes: Uint8Array): Promise<void> {
    const error = refusal() ?? checkRecord(bytes, path)
    if (error !== undefined) return Promise.reject(error)
    const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + bytes.length)
    writeFrame(frame, 0, bytes)
    return enqueue(frame, 1)
  }

  function appendMany(records: readonly Uint8Array[]): Promise<void> {
    let error = refusal()
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
    return enqueue(frames, records.length)
  }

  async function replay(fn: (record: Uint8Array, index: number) => void): Promise<number> {
    if (closing !== undefined) throw closedError()
    const limit = size
    let scanned: ScanResult
    try {
      scanned = await scanFrames(fh, limit, fn, false)
    } catch (e) {
      if (closing !== undefined) throw closedError()
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

  async function records(): Promise<Uint8Array[]> {
    const out: Uint8Array[] = []
    await replay((r) => {
      out.push(r)
    })
    return out
  }

  async function doClose(): Promise<void> {
    try {
      while (flushing !== undefined) await flushing
      if (broken === undefined) {
        try {
          await fh.sync()
        } catch (e) {
          throw ioError(path, 'fsync on close', e)
        }
      }
    } finally {
      await fh.close().catch(() => {})
      await releaseLock().catch(() => {})
      openPaths.delete(fullPath)
    }
  }

  return {
    path,
    recovery: opened.recovery,
    append,
    appendMany,
    replay,
    records,
    size: () => size,
    count: () => count,
    stats: () => ({ appends, flushes }),
    close() {
      closing ??= doClose()
      return closing
    },
  }
}
