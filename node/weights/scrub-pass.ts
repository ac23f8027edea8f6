/**
 * One scrub pass over the DAG under a weights root (docs/adr/0031-scrubbing-and-clean-up.md):
 * every block read back from the node's own disk and hashed against its CID, at the scrub's rate.
 *
 * The walk is depth-first from the root, as the pin walker's (pin-walker.ts), and the same on
 * every run: the cursor of a pass cut off by a stop is the number of blocks done, and the next
 * pass skips that many leaves (the nodes above them are read again, to find the way; they are a
 * small part of the bytes). dag-pb nodes are read and hashed here, before their links are
 * trusted; raw leaves, nearly all the bytes, go to `leaf`, several at once (the caller hashes
 * them on worker threads). A node that is missing or damaged cannot be walked below: its subtree
 * is left to the repair, whose fetch walks the whole DAG again.
 *
 * Nothing here deletes or decides: the pass reports what it found.
 */
import * as dagPb from '@ipld/dag-pb'
import type { CID } from 'multiformats/cid'
import { equalBytes } from '../../protocol/bytes.js'
import { DAG_PB_CODE, IDENTITY_CODE } from '../../protocol/cid.js'
import { nativeSha256 } from '../sha256.js'
import type { TokenBucket } from './scrub-rate.js'

/** A block read back: it hashes to its CID, it does not, or it is not there. */
export type BlockVerdict = 'ok' | 'damaged' | 'missing'

/** How a pass reads blocks. */
export interface PassBlocks {
  /** A dag-pb node's bytes, or undefined when it is not held. */
  node(cid: CID, signal: AbortSignal): Promise<Uint8Array | undefined>
  /** Reads and hashes a leaf whose parent gives its size as `size`. */
  leaf(cid: CID, size: number, signal: AbortSignal): Promise<BlockVerdict>
}

export interface PassOptions {
  readonly root: CID
  readonly blocks: PassBlocks
  readonly bucket: TokenBucket
  readonly signal: AbortSignal
  /** Blocks of the walk a cut-off pass already did (its cursor): their leaves are not read again. */
  readonly skip?: number
  /** Leaves being read at once. */
  readonly window?: number
  /** After each leaf, in walk order: blocks of the walk done so far (a cursor), and bytes read since the last call. */
  readonly onProgress?: (blocksDone: number, bytes: number) => void
}

export interface PassResult {
  /** Blocks walked (skipped ones included). */
  readonly blocks: number
  /** Bytes read and hashed by this pass. */
  readonly bytes: number
  /** Blocks held whose bytes do not hash to their CID. */
  readonly damaged: readonly CID[]
  /** Blocks not held at all. */
  readonly missing: readonly CID[]
}

interface Walking {
  readonly options: PassOptions
  readonly damaged: CID[]
  readonly missing: CID[]
  /** Leaves being read, in walk order, each with its place in the walk and size. */
  readonly reading: { index: number; size: number; verdict: Promise<BlockVerdict>; cid: CID }[]
  bytes: number
}

const DEFAULT_WINDOW = 4

/** Reads back and hashes every block under `options.root`; aborts (throws) with the signal. */
export async function scrubPass(options: PassOptions): Promise<PassResult> {
  const walking: Walking = { options, damaged: [], missing: [], reading: [], bytes: 0 }
  const skip = options.skip ?? 0
  const seen = new Set<string>()
  // Each entry: a block and the size its parent's link gives it (leaves are read by that size).
  const stack: { cid: CID; size: number }[] = [{ cid: options.root, size: 0 }]
  let index = 0
  while (stack.length > 0) {
    options.signal.throwIfAborted()
    const { cid, size } = stack.pop()!
    const key = cid.toString()
    if (seen.has(key)) continue
    seen.add(key)
    const at = index++
    if (cid.multihash.code === IDENTITY_CODE) continue
    if (cid.code !== DAG_PB_CODE) {
      if (at >= skip) await readLeaf(walking, cid, size, at)
      continue
    }
    const links = await readNode(walking, cid, at)
    for (let i = links.length - 1; i >= 0; i--) stack.push(links[i]!)
  }
  while (walking.reading.length > 0) await settleOldest(walking)
  options.onProgress?.(index, 0)
  return { blocks: index, bytes: walking.bytes, damaged: walking.damaged, missing: walking.missing }
}

/** A node read and hashed here; its links, or none when it is missing, damaged or undecodable. */
async function readNode(walking: Walking, cid: CID, index: number): Promise<{ cid: CID; size: number }[]> {
  const { blocks, bucket, signal, onProgress } = walking.options
  const bytes = await blocks.node(cid, signal)
  if (bytes === undefined) {
    walking.missing.push(cid)
    return []
  }
  await bucket.take(bytes.length, signal)
  walking.bytes += bytes.length
  // Done up to this node, or up to the oldest leaf still being read.
  onProgress?.(walking.reading[0]?.index ?? index + 1, bytes.length)
  if (!equalBytes(nativeSha256(bytes), cid.multihash.digest)) {
    walking.damaged.push(cid)
    return []
  }
  try {
    return dagPb.decode(bytes).Links.map((l) => ({ cid: l.Hash, size: l.Tsize ?? 0 }))
  } catch {
    // It hashes to its CID, so these are the bytes published: not damage a fetch could mend. The
    // manifest check refuses such weights; the scrub has nothing below it to read.
    return []
  }
}

/** Starts reading a leaf, once its bytes are paid for and the window has room. */
async function readLeaf(walking: Walking, cid: CID, size: number, index: number): Promise<void> {
  const { blocks, bucket, signal } = walking.options
  while (walking.reading.length >= (walking.options.window ?? DEFAULT_WINDOW)) await settleOldest(walking)
  await bucket.take(size, signal)
  const verdict = blocks.leaf(cid, size, signal)
  // Observed at once, so a rejection while older leaves are awaited is not "unhandled".
  verdict.catch(() => {})
  walking.reading.push({ index, size, verdict, cid })
}

/** Waits for the oldest leaf being read and records its verdict. */
async function settleOldest(walking: Walking): Promise<void> {
  const { index, size, verdict, cid } = walking.reading.shift()!
  const found = await verdict
  if (found === 'damaged') walking.damaged.push(cid)
  if (found === 'missing') walking.missing.push(cid)
  if (found !== 'missing') walking.bytes += size
  walking.options.onProgress?.(index + 1, found === 'missing' ? 0 : size)
}
