/**
 * How the scrub reads blocks back from a node's blockstore (node/weights/scrub-blocks.ts): a leaf
 * from its file on a hashing worker — whole, overwritten, truncated (another size than its
 * parent's link says: its own hash decides), or gone — and a node through the blockstore.
 */
import { truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { NextToLast } from 'blockstore-fs/sharding'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, describe, expect, it } from 'vitest'
import { BlockFiles } from '../../../../node/weights/block-files.js'
import { ScrubBlocks } from '../../../../node/weights/scrub-blocks.js'
import { tempDirForFile } from '../../../support/temp-dir.js'

const root = tempDirForFile('allmende-scrub-blocks-')
const signal = new AbortController().signal
let blocks: ScrubBlocks | undefined

afterAll(async () => {
  await blocks?.stop()
})

async function leaf(text: string): Promise<{ cid: CID; bytes: Uint8Array }> {
  const bytes = new TextEncoder().encode(text.repeat(1000))
  return { cid: CID.createV1(raw.code, await sha256.digest(bytes)), bytes }
}

describe('reading blocks back for a scrub', () => {
  it('tells a whole leaf, an overwritten one, a truncated one and a missing one apart', async () => {
    const dir = join(root(), 'blocks')
    const store = new BlockFiles(dir)
    await store.open()
    blocks = new ScrubBlocks(dir, store)
    const file = (cid: CID) => {
      const { dir: shard, file: name } = new NextToLast().encode(cid)
      return join(dir, shard, name)
    }
    const [whole, overwritten, truncated, gone] = await Promise.all(['w', 'o', 't', 'g'].map(leaf))
    for (const l of [whole!, overwritten!, truncated!]) await store.put(l.cid, l.bytes)
    await writeFile(file(overwritten!.cid), new Uint8Array(overwritten!.bytes.length).fill(1))
    await truncate(file(truncated!.cid), 10)

    const size = whole!.bytes.length
    expect(await blocks.leaf(whole!.cid, size, signal)).toBe('ok')
    expect(await blocks.leaf(overwritten!.cid, size, signal)).toBe('damaged')
    expect(await blocks.leaf(truncated!.cid, size, signal)).toBe('damaged')
    expect(await blocks.leaf(gone!.cid, size, signal)).toBe('missing')
    // A parent link giving another size than the block's: the block's own hash decides.
    expect(await blocks.leaf(whole!.cid, size + 1, signal)).toBe('ok')

    expect(Buffer.from((await blocks.node(whole!.cid, signal))!).equals(whole!.bytes)).toBe(true)
    expect(await blocks.node(gone!.cid, signal)).toBeUndefined()
    await store.close()
  })
})
