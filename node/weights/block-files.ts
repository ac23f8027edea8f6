/**
 * The node's blockstore: blockstore-fs's layout, with each block read and written in one go.
 *
 * Why (measured: docs/adr/0012-weights-transfer-speed.md): blockstore-fs 4 reads a block through
 * `createReadStream`, 64 KiB at a time, joined again; a block is at most a few MiB, so it is read
 * whole (`readFile`). Writes stay atomic (a temporary file in the block's directory, renamed over
 * the block's name), as blockstore-fs's are, in four calls to the thread pool instead of six: the
 * directory is made once per store and the block goes in one write.
 *
 * Everything else — the sharded layout, `has`, `delete`, listing — is blockstore-fs's own, so
 * Helia and older homes see the same files (temporary files do not end in `.data`, so a listing
 * never takes one for a block).
 */
import { type FileHandle, mkdir, open, readFile, rename, unlink } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { FsBlockstore } from 'blockstore-fs'
import { NextToLast, type ShardingStrategy } from 'blockstore-fs/sharding'
import { NotFoundError, PutFailedError } from 'interface-store'
import type { CID } from 'multiformats/cid'

export class BlockFiles extends FsBlockstore {
  // blockstore-fs's default layout, kept here too: its own field is private.
  private readonly layout: ShardingStrategy
  private readonly root: string
  /** Directories known to exist (made here, or found when a write needed them). */
  private readonly made = new Set<string>()
  private writes = 0

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

  /**
   * Reads the block `key` into `target`: its length, or undefined when it fills `target` (it may
   * be larger: read it with `get`). Reads until the end of the file: a read may come back short
   * before it on some file systems (network, FUSE).
   */
  async readInto(
    key: CID,
    target: Uint8Array,
    options?: { signal?: AbortSignal },
  ): Promise<number | undefined> {
    options?.signal?.throwIfAborted()
    const { dir, file } = this.layout.encode(key)
    let handle: FileHandle
    try {
      handle = await open(join(this.root, dir, file), 'r')
    } catch (e) {
      throw new NotFoundError(String(e))
    }
    try {
      let length = 0
      for (;;) {
        const { bytesRead } = await handle.read(target, length, target.length - length, length)
        if (bytesRead === 0) return length
        length += bytesRead
        if (length === target.length) return undefined
      }
    } finally {
      await handle.close()
    }
  }

  override async put(key: CID, bytes: Uint8Array, options?: { signal?: AbortSignal }): Promise<CID> {
    options?.signal?.throwIfAborted()
    const { dir, file } = this.layout.encode(key)
    const directory = join(this.root, dir)
    const target = join(directory, file)
    // Unique per write: two writes of one block at once each rename a whole file over the name.
    const temporary = join(directory, `.${file}.${process.pid}.${this.writes++}.tmp`)
    try {
      if (!this.made.has(directory)) {
        await mkdir(directory, { recursive: true })
        this.made.add(directory)
      }
      const handle = await open(temporary, 'wx').catch(async (e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e
        // The directory went away since (emptied and removed by hand): make it again.
        await mkdir(directory, { recursive: true })
        return open(temporary, 'wx')
      })
      try {
        let written = 0
        while (written < bytes.length)
          written += (await handle.write(bytes, written, bytes.length - written, written)).bytesWritten
      } finally {
        await handle.close()
      }
      await rename(temporary, target)
    } catch (e) {
      await unlink(temporary).catch(() => {})
      throw new PutFailedError(String(e))
    }
    return key
  }
}
