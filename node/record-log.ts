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
 * - `append` resolves only after its bytes were written *and* `fdatasync`
 *   returned. Appends that arrive while a write+fsync is in flight form the
 *   next batch: one write and one fsync for the lot (group commit).
 * - Frames are written in the order `append` was called; a batch's appends
 *   resolve in that order, so acknowledged records always form a prefix.
 * - Opening scans the whole file. The valid prefix is every complete frame
 *   with a good CRC; at the first torn or corrupt frame the file is cut there
 *   (ftruncate + fsync) and the log reports `{event: 'record-log-truncated'}`.
 *   Only the last batch can be torn by a crash, and none of its appends had
 *   been acknowledged. A file that does not start with the magic is never
 *   touched: open rejects with code 'record-log-format'.
 * - After a failed write or fsync the log refuses further appends (code
 *   'record-log-io'): after a failed fsync the kernel may have dropped the
 *   dirty pages, so retrying could acknowledge bytes that are not on disk.
 *   Reopening rescans and cuts whatever was left half-written.
 * - Nothing here throws synchronously on I/O: failures are rejected promises
 *   carrying a `NodeError` (node/errors.ts: stable `name`, a `code`, a
 *   message naming the path, the `cause`).
 *
 * Not covered: two *processes* appending to one file (only one open per path
 * within a process is enforced); on macOS `fdatasync` does not flush the
 * drive's own cache (F_FULLFSYNC, which Node does not expose).
 */
import { constants, type FileHandle, mkdir, open } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
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
/** Most bytes one batch writes (a batch holds at least one append, whatever its size). */
const MAX_BATCH_BYTES = 8 * 1024 * 1024
const DEFAULT_MAX_BATCH = 4096

/** The codes of the NodeErrors (node/errors.ts) this module rejects with. */
export type RecordLogErrorCode =
  | 'record-log-closed'
  | 'record-log-io'
  | 'record-log-format'
  | 'record-log-corrupt'
  | 'record-log-invalid'
  | 'record-log-busy'

/** HTTP status for each code, should one reach the API: closing is 503, a bad record 400, the rest 500. */
const STATUS: Readonly<Record<RecordLogErrorCode, number>> = {
  'record-log-closed': 503,
  'record-log-invalid': 400,
  'record-log-io': 500,
  'record-log-format': 500,
  'record-log-corrupt': 500,
  'record-log-busy': 500,
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
  /** Structured events: `record-log-truncated`, `record-log-io-error`. Default: JSON lines on stderr. */
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

type TearReason = 'short-header' | 'bad-length' | 'short-payload' | 'crc-mismatch'

interface ScanResult {
  /** Offset just past the last good frame. */
  end: number
  count: number
  tear?: { offset: number; reason: TearReason }
}

/**
 * Walks the frames from HEADER_BYTES to `limit`, calling `onRecord` for each
 * good one, and stops at the first bad one. Reads READ_CHUNK bytes at a time
 * into fresh buffers, so the views handed out are never overwritten.
 */
async function scanFrames(
  fh: FileHandle,
  limit: number,
  onRecord?: (record: Uint8Array, index: number) => void,
  /** False on replay: those frames were checked by the scan at open, and only this process writes the file. */
  checkCrc = true,
): Promise<ScanResult> {
  let buf = Buffer.alloc(0)
  let bufStart = HEADER_BYTES // file offset of buf[0]
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

/**
 * Opens (or creates) the log at `path`, scans it, cuts a torn tail, and
 * returns a handle ready for appends. Rejects with NodeError 'record-log-format'
 * for a file that is not a record log, 'record-log-busy' if this process has it
 * open already, 'record-log-io' on I/O failure.
 */
export async function openRecordLog(path: string, options: RecordLogOptions = {}): Promise<RecordLog> {
  const fullPath = resolve(path)
  if (openPaths.has(fullPath)) {
    throw failure('record-log-busy', `record log ${path} is already open in this process`)
  }
  const log = options.log ?? defaultLog
  /** Events never break the log: a throwing logger is ignored. */
  const emit = (event: object) => {
    try {
      log(event)
    } catch {}
  }
  openPaths.add(fullPath)
  let fh: FileHandle | undefined
  try {
    let step = 'create directory'
    try {
      await mkdir(dirname(fullPath), { recursive: true, mode: 0o700 })
      step = 'open'
      fh = await open(fullPath, constants.O_RDWR | constants.O_CREAT, 0o600)
      step = 'read header'
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
        step = 'write header'
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
      step = 'scan'
      const scanned = await scanFrames(fh, fileSize)
      if (scanned.tear !== undefined) {
        step = 'truncate torn tail'
        const droppedBytes = fileSize - scanned.end
        await fh.truncate(scanned.end)
        await fh.sync()
        emit({
          event: 'record-log-truncated',
          path,
          offset: scanned.end,
          droppedBytes,
          reason: scanned.tear.reason,
          records: scanned.count,
        })
      }
      return createLog(fh, fullPath, path, scanned.end, scanned.count, options, emit)
    } catch (e) {
      if (e instanceof NodeError) throw e
      throw ioError(path, step, e)
    }
  } catch (e) {
    openPaths.delete(fullPath)
    await fh?.close().catch(() => {})
    throw e
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
  fh: FileHandle,
  fullPath: string,
  path: string,
  startSize: number,
  startCount: number,
  options: RecordLogOptions,
  emit: (event: object) => void,
): RecordLog {
  const batchDelay = Math.max(0, options.fsyncBatchMs ?? 0)
  const maxBatch = Math.max(1, Math.floor(options.maxBatch ?? DEFAULT_MAX_BATCH))
  let size = startSize
  let count = startCount
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
      openPaths.delete(fullPath)
      await fh.close().catch(() => {})
    }
  }

  return {
    path,
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
