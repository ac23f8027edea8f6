/**
 * Letting a weights root go: its pin removed and every block no other pin holds deleted, each in
 * the unpin's turn, so no pin can take a released block between its release and its delete.
 * What retention (revoked weights), clean-up (weights nobody ratified) and `node unpin` share.
 */
import type { CID } from 'multiformats/cid'
import { type PinWalker, unixfsPinWalker } from './pin-walker.js'

/** The slice of the node's pins (pins.ts) used. */
export interface UnpinPins {
  rm(
    root: CID,
    options?: {
      signal?: AbortSignal
      offline?: boolean
      walker?: PinWalker
      onReleased?: (cid: CID) => Promise<void>
    },
  ): AsyncIterable<CID>
}

export interface UnpinBlockstore {
  delete(cid: CID): Promise<void>
}

/** Unpins `root` offline (every block is here: it was pinned); the blocks walked and deleted. */
export async function unpinRoot(
  pins: UnpinPins,
  blockstore: UnpinBlockstore,
  root: CID,
  signal?: AbortSignal,
): Promise<{ blocks: number; deleted: number }> {
  let blocks = 0
  let deleted = 0
  const deleteBlock = async (cid: CID) => {
    try {
      await blockstore.delete(cid)
      deleted++
    } catch {
      // Already gone, or held open: garbage either way; nothing more to do.
    }
  }
  for await (const _ of pins.rm(root, {
    offline: true,
    walker: unixfsPinWalker,
    onReleased: deleteBlock,
    ...(signal ? { signal } : {}),
  }))
    blocks++
  return { blocks, deleted }
}
