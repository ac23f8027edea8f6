/**
 * The graph walker for pinning and unpinning weights (Helia's `pins.add`/`pins.rm` `walker`).
 *
 * Why: Helia's default walker reads every block of the DAG to find its links, 1 MiB leaves
 * included; pinning a model read it all back (it took longer than the upload itself), and
 * unpinning a revoked model read every leaf only to delete it. Raw leaves have no links, so here
 * only dag-pb nodes — directories and file nodes, a small part of the bytes — are read, and each
 * leaf is yielded by its CID. Each block is yielded once, depth-first from the root.
 */
import * as dagPb from '@ipld/dag-pb'
import type { CID } from 'multiformats/cid'
import { concatBytes } from '../../protocol/bytes.js'
import { DAG_PB_CODE, IDENTITY_CODE } from '../../protocol/cid.js'

/** What the walker needs of the blockstore Helia hands it. */
interface WalkerBlockstore {
  get(
    cid: CID,
    options?: WalkOptions,
  ): AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Uint8Array | Promise<Uint8Array>
}

/** What Helia passes on to the walk (`offline` keeps a pin from waiting on bitswap). */
interface WalkOptions {
  signal?: AbortSignal
  offline?: boolean
}

/**
 * The slice of Helia's `GraphWalkerFactory` its pins use: each node's `block.cid`. Its argument is
 * typed `never` so that Helia's factory type (components with a codec loader, nodes with decoded
 * blocks) and this one are assignable to each other; Helia hands it `{ blockstore, getCodec }`.
 */
export type PinWalker = (components: never) => {
  walk(root: CID, options?: WalkOptions): AsyncGenerator<{ block: { cid: CID }; depth: number; path: CID[] }>
}

export const unixfsPinWalker: PinWalker = (components) => ({
  async *walk(root, options = {}) {
    const { blockstore } = components as { blockstore: WalkerBlockstore }
    const seen = new Set<string>()
    const stack: { cid: CID; depth: number }[] = [{ cid: root, depth: 0 }]
    while (stack.length > 0) {
      const { cid, depth } = stack.pop()!
      const key = cid.toString()
      if (seen.has(key)) continue
      seen.add(key)
      yield { block: { cid }, depth, path: [] }
      if (cid.code !== DAG_PB_CODE) continue
      const bytes =
        cid.multihash.code === IDENTITY_CODE ? cid.multihash.digest : await read(blockstore, cid, options)
      const links = dagPb.decode(bytes).Links
      for (let i = links.length - 1; i >= 0; i--) stack.push({ cid: links[i]!.Hash, depth: depth + 1 })
    }
  },
})

async function read(store: WalkerBlockstore, cid: CID, options: WalkOptions): Promise<Uint8Array> {
  const got = await store.get(cid, options)
  if (got instanceof Uint8Array) return got
  const parts: Uint8Array[] = []
  for await (const part of got) parts.push(part)
  return parts.length === 1 ? parts[0]! : concatBytes(...parts)
}
