/**
 * Length-prefixed frames for the sync stream: an unsigned varint (LEB128, as
 * everywhere in libp2p) giving the payload's length, then the payload.
 *
 * Built on `it-length-prefixed` rather than written here: it is the framing
 * js-libp2p's own protocols use, it is maintained with them, and it already
 * does the one thing that matters for untrusted peers — it checks the
 * announced length against `maxDataLength` as soon as the varint is read,
 * before waiting for (and buffering) the payload. This module only fixes the
 * limits and turns the library's errors into `SyncError`s:
 *
 * - announced length above `maxFrameBytes`, or a length prefix longer than
 *   that limit can need → `sync-oversize`;
 * - the stream ends inside a frame → `sync-malformed`.
 *
 * Errors thrown by the source itself (a reset stream, an abort) pass through
 * unchanged: they are the transport's, not the peer's bytes.
 */
import { decode, encode } from 'it-length-prefixed'
import type { Uint8ArrayList } from 'uint8arraylist'
import { malformed, SyncError } from './errors.js'

/**
 * Default largest frame: a `blocks` answer must carry one list block of up to
 * 1 MiB (protocol/limits.ts `maxListBlockBytes`) plus its few bytes of framing.
 * Reconciliation messages are capped far lower by their own `frameSizeLimit`.
 */
export const MAX_FRAME_BYTES = 1024 * 1024 + 1024

export interface FrameOptions {
  /** Largest payload accepted or sent, in bytes (default `MAX_FRAME_BYTES`). */
  maxFrameBytes?: number
}

type Chunk = Uint8Array | Uint8ArrayList

function limitOf(options: FrameOptions): number {
  const max = options.maxFrameBytes ?? MAX_FRAME_BYTES
  if (!Number.isSafeInteger(max) || max < 1) throw new RangeError('maxFrameBytes must be a positive integer')
  return max
}

/** Bytes of the LEB128 varint of `n`. */
export function varintLength(n: number): number {
  let len = 1
  while (n >= 128) {
    n = Math.floor(n / 128)
    len++
  }
  return len
}

/** One frame: length prefix and payload (no copy of the payload). Throws `sync-oversize` above the limit. */
export function encodeFrame(payload: Chunk, options: FrameOptions = {}): Uint8ArrayList {
  const max = limitOf(options)
  if (payload.byteLength > max) {
    throw new SyncError('sync-oversize', `frame of ${payload.byteLength} bytes exceeds ${max}`)
  }
  return encode.single(payload, { maxDataLength: max })
}

/**
 * The frames in a stream of chunks (a libp2p stream is such a source). Yields
 * each payload as one Uint8Array; throws `SyncError` on the faults above.
 */
export async function* decodeFrames(
  source: AsyncIterable<Chunk> | Iterable<Chunk>,
  options: FrameOptions = {},
): AsyncGenerator<Uint8Array, void, undefined> {
  const max = limitOf(options)
  const frames = decode(source, { maxDataLength: max, maxLengthLength: varintLength(max) })
  try {
    for await (const frame of frames) yield frame.subarray()
  } catch (e) {
    throw translate(e, max)
  }
}

/** The library's own errors by name (its error classes are not exported); anything else as is. */
function translate(e: unknown, max: number): unknown {
  const name = e instanceof Error ? e.name : ''
  switch (name) {
    case 'InvalidDataLengthError':
      return new SyncError('sync-oversize', `frame announces more than ${max} bytes`)
    case 'InvalidDataLengthLengthError':
      return new SyncError('sync-oversize', `frame length prefix too long for a limit of ${max} bytes`)
    case 'InvalidMessageLengthError':
      return malformed('invalid frame length')
    case 'UnexpectedEOFError':
      return malformed('stream ended inside a frame')
    default:
      return e
  }
}
