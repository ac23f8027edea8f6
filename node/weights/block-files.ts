/**
 * The node's blockstore: blockstore-fs's layout and writes, with each block read in one go.
 *
 * Why: blockstore-fs 4 reads a block through `createReadStream`, 64 KiB at a time, which the
 * reader then joins again: for a 1 MiB leaf that is sixteen round trips to the thread pool, sixteen
 * buffers and a copy. Serving a model's CAR from the gateway spent most of its time there and in
 * the garbage collector those buffers feed (bench/fetch.ts). A block is at most a few MiB, so it
 * is read whole (`readFile`: one buffer of the file's size). Everything else — the sharded
 * layout, atomic writes, `has`, `delete`, listing — is blockstore-fs's own, so Helia and older
 * homes see the same files.
 */
import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { FsBlockstore } from 'blockstore-fs'
import { NextToLast, type ShardingStrategy } from 'blockstore-fs/sharding'
import { NotFoundError } from 'interface-store'
import type { CID } from 'multiformats/cid'

export class BlockFiles extends FsBlockstore {
  // blockstore-fs's default layout, kept here too: its own field is private.
  private readonly layout: ShardingStrategy
  private readonly root: string

  constructor(location: string) {
    const layout = new NextToLast()
    super(location, { shardingStrategy: layout })
    this.layout = layout
    this.root = resolve(location)
  }

  override async *get(key: CID, options?: { signal?: AbortSignal }): AsyncGenerator<Uint8Array> {
    const { dir, file } = this.layout.encode(key)
    let bytes: Uint8Array
    try {
      bytes = await readFile(join(this.root, dir, file), options?.signal ? { signal: options.signal } : {})
    } catch (e) {
      // As blockstore-fs: a block that cannot be read is not found (an abort stays an abort).
      if ((e as Error)?.name === 'AbortError') throw e
      throw new NotFoundError(String(e))
    }
    yield bytes
  }
}
