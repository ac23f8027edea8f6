/**
 * Recovering a damaged record log at open (see the invariants in
 * node/record-log.ts): cutting a torn tail, or, for damage in the middle,
 * finding where good frames resume (`findResync`), copying the file as found
 * aside, and rewriting it without the damage.
 */
import { chmod, constants, copyFile, type FileHandle, open, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import { syncDirectory } from './files.js'
import { errorCode, failure } from './record-log-errors.js'
import {
  crc32,
  FRAME_HEADER_BYTES,
  HEADER_BYTES,
  MAGIC,
  MAX_FRAME_PAYLOAD,
  plausibleLength,
  READ_CHUNK,
  type ScanResult,
  scanFrames,
  type TearReason,
  writeAll,
} from './record-log-frames.js'

/** Most bytes an anchor check reads past its position: three frames (see `isAnchor`). */
const SCAN_LOOKAHEAD = 3 * (FRAME_HEADER_BYTES + MAX_FRAME_PAYLOAD)
/** Damaged copies kept beside the log (`records.log.damaged-<n>`) before a repair gives up. */
const MAX_DAMAGED_COPIES = 1000
/** Damaged regions listed in the repair event (all of them are in `RecordLog.recovery`). */
const MAX_REGIONS_LOGGED = 20

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

/** An open in progress: the step (for error messages) and the file handle to close should it fail. */
export interface Opening {
  step: string
  fh: FileHandle | undefined
}

/** What the log is opened with after its scan: the handle (a new one after a repair), its extent, and what was done. */
export interface Opened {
  fh: FileHandle
  size: number
  count: number
  recovery?: RecordLogRecovery
}

/**
 * Scans the log; cuts a torn tail, or repairs damage before it (copy aside,
 * rewrite without it, reopen). `opening.fh` becomes the repaired file's handle.
 */
export async function scanAndRecover(
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
