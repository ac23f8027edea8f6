/**
 * `entity-bytes=from:to` on a CAR request (specs.ipfs.tech http-gateways/trustless-gateway): the
 * range as asked, the range resolved against a file's size, and which links of a file node hold
 * bytes of it. Negative offsets and what is refused: docs/adr/0027-gateway-ranges-cors-defaults.md.
 */
import * as dagPb from '@ipld/dag-pb'
import type { UnixFS } from 'ipfs-unixfs'
import type { CID } from 'multiformats/cid'
import { DAG_PB_CODE, RAW_CODE } from '../../protocol/cid.js'
import { unixfsOf } from './gateway-blocks.js'
import { GatewayError, WalkError } from './gateway-errors.js'

/** `entity-bytes` as asked: a negative offset counts from the end of the file, `*` is its end. */
export interface EntityBytes {
  readonly from: number
  readonly to: number | '*'
}

/** A range resolved against a file: its bytes `start` (inclusive) to `end` (exclusive). */
export interface ByteSpan {
  readonly start: number
  readonly end: number
}

/** Decimal, optionally negative, at most 16 digits: every value fits a double exactly. */
const OFFSET = /^-?[0-9]{1,16}$/

const HOW_TO_ASK =
  'entity-bytes takes from:to, byte offsets of the file with to inclusive, * for its end and a negative number counting from its end (0:1048575, 1048576:*, -1024:*)'

function badEntityBytes(text: string, why: string): GatewayError {
  return new GatewayError(400, 'bad-entity-bytes', `entity-bytes=${text.slice(0, 60)} ${why}: ${HOW_TO_ASK}`)
}

function offsetOf(part: string, text: string): number {
  const value = OFFSET.test(part) ? Number(part) : Number.NaN
  if (!Number.isSafeInteger(value))
    throw badEntityBytes(text, `has ${part.slice(0, 20) || 'nothing'} for an offset`)
  // -0 is the offset 0, not the end of the file.
  return value === 0 ? 0 : value
}

/**
 * Parses `from:to`, refusing what can never name bytes: not two offsets, or a `to` before `from`
 * where both count from the same end (10:5, -5:-10). Whether the range meets the file is known only
 * once the file's size is (resolveEntityBytes).
 */
export function parseEntityBytes(text: string): EntityBytes {
  const parts = text.split(':')
  if (parts.length !== 2) throw badEntityBytes(text, 'is not two offsets joined by a colon')
  const from = offsetOf(parts[0]!, text)
  const to = parts[1] === '*' ? '*' : offsetOf(parts[1]!, text)
  const bothFromStart = from >= 0 && to !== '*' && to >= 0
  const bothFromEnd = from < 0 && to !== '*' && to < 0
  if ((bothFromStart || bothFromEnd) && to < from) throw badEntityBytes(text, 'ends before it starts')
  return { from, to }
}

/**
 * The bytes of a `size`-byte file the range names, clamped to the file (a range that runs past
 * either end gets the part inside), or null when it names none (then only the file's root is
 * sent: its UnixFS data tells the client the size). A `from` at or past the end of a non-empty
 * file is refused: that is known before anything is sent. A negative `to` ends the range before
 * the last -to bytes, as the reference gateway (boxo) reads it: 0:-1 is all but the last byte.
 */
export function resolveEntityBytes(asked: EntityBytes, size: number): ByteSpan | null {
  const start = asked.from >= 0 ? asked.from : Math.max(0, size + asked.from)
  if (size > 0 && start >= size) {
    throw new GatewayError(
      400,
      'entity-bytes-out-of-range',
      `entity-bytes starts at byte ${start}, but this file has ${size} bytes (0 to ${size - 1}): ask for a from below ${size}, or a negative one to count from the end`,
    )
  }
  const end = asked.to === '*' ? size : asked.to >= 0 ? Math.min(size, asked.to + 1) : size + asked.to
  return end > start ? { start, end } : null
}

/** The size of the entity a CAR's path ends at, if it is a file (a range applies); null if not. */
export function fileSize(cid: CID, bytes: Uint8Array): number | null {
  if (cid.code === RAW_CODE) return bytes.byteLength
  if (cid.code !== DAG_PB_CODE) return null
  let node: dagPb.PBNode
  try {
    node = dagPb.decode(bytes)
  } catch {
    // Not a file a range can apply to; the walk finds the block invalid and cuts the CAR there.
    return null
  }
  const fs = unixfsOf(node)
  if (fs?.type !== 'file' && fs?.type !== 'raw') return null
  const size = Number(fs.fileSize())
  if (!Number.isSafeInteger(size))
    throw new WalkError('block-invalid', cid, `file ${cid} claims ${size} bytes`)
  return size
}

/** A link of a file node that holds bytes of the range; `at` (where its bytes begin) only on the range's edges. */
export interface LinkInSpan {
  readonly cid: CID
  readonly at?: number
}

/**
 * The links of a file node, whose bytes begin at `at`, that hold bytes of `span`, in link order:
 * the node's own data comes first, then each link's `blockSizes` bytes. A link wholly inside the
 * span has no `at` (all of it is sent); only the two edges of the range carry one, so the work is
 * the blocks sent plus at most two nodes per level of the DAG.
 */
export function linksInSpan(
  cid: CID,
  node: dagPb.PBNode,
  fs: UnixFS,
  at: number,
  span: ByteSpan,
): LinkInSpan[] {
  if (fs.blockSizes.length !== node.Links.length) {
    throw new WalkError(
      'block-invalid',
      cid,
      `file node ${cid} has ${node.Links.length} links but ${fs.blockSizes.length} block sizes`,
    )
  }
  const links: LinkInSpan[] = []
  let begin = at + (fs.data?.byteLength ?? 0)
  for (const [i, link] of node.Links.entries()) {
    if (begin >= span.end) break
    const end = begin + Number(fs.blockSizes[i])
    if (!Number.isSafeInteger(end))
      throw new WalkError('block-invalid', cid, `file node ${cid} claims too many bytes`)
    if (end > span.start && end > begin) {
      links.push(begin >= span.start && end <= span.end ? { cid: link.Hash } : { cid: link.Hash, at: begin })
    }
    begin = end
  }
  return links
}
