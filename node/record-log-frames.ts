/**
 * The record log's frames (the format is described in node/record-log.ts):
 * the header and size bounds, CRC-32, writing a frame, walking the frames of
 * a file, and writing all of a buffer (the directory sync is node/files.ts).
 */
import type { FileHandle } from 'node:fs/promises'
import * as zlib from 'node:zlib'
import { LIMITS } from '../protocol/limits.js'

/** The 8-byte header: magic and format version. */
export const RECORD_LOG_MAGIC = 'ALMLOG01'
export const MAGIC = Buffer.from(RECORD_LOG_MAGIC, 'latin1')
export const HEADER_BYTES = MAGIC.length
export const FRAME_HEADER_BYTES = 8
/** Largest payload `append` accepts: the largest record (a genesis). */
export const MAX_RECORD_BYTES = Math.max(LIMITS.maxRecordBytes, LIMITS.maxGenesisBytes)
/** Largest length the scan takes for a frame; anything above is corruption. */
export const MAX_FRAME_PAYLOAD = MAX_RECORD_BYTES + 64 * 1024
/** Bytes per read while scanning or replaying. */
export const READ_CHUNK = 4 * 1024 * 1024

/** Why a frame was not taken: its length, or its CRC, or the file ended inside it. */
export type TearReason = 'short-header' | 'bad-length' | 'short-payload' | 'crc-mismatch'

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

export interface ScanResult {
  /** Offset just past the last good frame. */
  end: number
  count: number
  tear?: { offset: number; reason: TearReason }
}

/** A length the scan takes for a frame: never 0 (see the format in node/record-log.ts), never beyond the largest record. */
export function plausibleLength(length: number): boolean {
  return length > 0 && length <= MAX_FRAME_PAYLOAD
}

/**
 * Walks the frames from `start` to `limit`, calling `onRecord` for each
 * good one, and stops at the first bad one. Reads READ_CHUNK bytes at a time
 * into fresh buffers, so the views handed out are never overwritten.
 */
export async function scanFrames(
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

/** Writes `payload` as one frame at `offset` in `target`; returns the offset just past it. */
export function writeFrame(target: Buffer, offset: number, payload: Uint8Array): number {
  target.writeUInt32BE(payload.length, offset)
  target.writeUInt32BE(crc32(payload), offset + 4)
  target.set(payload, offset + FRAME_HEADER_BYTES)
  return offset + FRAME_HEADER_BYTES + payload.length
}

/** Writes all of `data` at `position` (a write may take fewer bytes than it was given). */
export async function writeAll(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done)
    if (bytesWritten <= 0) throw new Error('write made no progress')
    done += bytesWritten
  }
}
