/**
 * The sync stream's frames (protocol/SPEC.md §14.1): an unsigned varint
 * (LEB128, as everywhere in libp2p) giving the payload's length, then the
 * payload. @libp2p/utils `lpStream` reads and writes them (streams.ts, join.ts);
 * this module fixes the limit and counts the bytes a frame costs.
 */

/**
 * Largest frame: a `blocks` answer must carry one list block of up to 1 MiB
 * (protocol/limits.ts `maxListBlockBytes`) plus its few bytes of framing.
 * Reconciliation messages are capped far lower by their own `frameSizeLimit`.
 */
export const MAX_FRAME_BYTES = 1024 * 1024 + 1024

/** Bytes of the LEB128 varint of `n`: a frame's length prefix. */
export function varintLength(n: number): number {
  let len = 1
  while (n >= 128) {
    n = Math.floor(n / 128)
    len++
  }
  return len
}
