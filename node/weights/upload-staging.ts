/**
 * Where an upload's blocks wait (SPEC.md §7): `HOME/upload-staging/<upload>/`, outside the
 * blockstore, until the DAG under the upload's root is complete and checked. Then the blocks
 * reachable from the root move into the blockstore, the root last, and the upload's directory,
 * with whatever else the CAR held, is removed. An upload that fails, is cut off or stalls leaves
 * nothing in the blockstore; a node killed mid-upload clears the whole staging directory when it
 * starts again.
 *
 * Staged blocks use the blockstore's own file layout (blockstore-fs's default `NextToLast`, which
 * BlockFiles keeps), so moving one in is a single rename on the same file system, not a second
 * write; where the two are on different file systems the block is copied through `put`.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { NextToLast } from 'blockstore-fs/sharding'
import type { CID } from 'multiformats/cid'

/** What staging needs of the blockstore: its directory (blockstore-fs's default layout) and `put`. */
export interface StagingTarget {
  readonly path: string
  put(cid: CID, bytes: Uint8Array): Promise<unknown>
}

const layout = new NextToLast()

/** Makes `directory` (once per process and path), then runs `write`; makes it again if it vanished. */
class Directories {
  private readonly made = new Set<string>()

  async within<T>(directory: string, write: () => Promise<T>): Promise<T> {
    if (!this.made.has(directory)) {
      await mkdir(directory, { recursive: true })
      this.made.add(directory)
    }
    try {
      return await write()
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
      await mkdir(directory, { recursive: true })
      return write()
    }
  }
}

export class UploadStaging {
  private readonly targetDirectories = new Directories()

  private constructor(
    readonly dir: string,
    private readonly target: StagingTarget,
  ) {}

  /** Opens the staging directory, removing what uploads cut off by a stop or crash left in it. */
  static async open(
    dir: string,
    target: StagingTarget,
  ): Promise<{ staging: UploadStaging; cleared: number }> {
    let cleared = 0
    try {
      cleared = (await readdir(dir)).length
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
    }
    await rm(dir, { recursive: true, force: true })
    await mkdir(dir, { recursive: true, mode: 0o700 })
    return { staging: new UploadStaging(dir, target), cleared }
  }

  /** A fresh directory for one upload. */
  async begin(): Promise<StagedUpload> {
    const dir = join(this.dir, randomBytes(12).toString('hex'))
    await mkdir(dir, { mode: 0o700 })
    return new StagedUpload(dir, this.target, this.targetDirectories)
  }

  /** How many uploads are staged now (directories in the staging area). */
  async uploads(): Promise<number> {
    return (await readdir(this.dir)).length
  }
}

export class StagedUpload {
  /** Staged blocks: CID text → size in bytes. */
  private readonly sizes = new Map<string, number>()
  private readonly directories = new Directories()
  private discarded = false

  constructor(
    readonly dir: string,
    private readonly target: StagingTarget,
    private readonly targetDirectories: Directories,
  ) {}

  private pathOf(cid: CID): { dir: string; path: string } {
    const { dir, file } = layout.encode(cid)
    return { dir: join(this.dir, dir), path: join(this.dir, dir, file) }
  }

  /** The size of a staged block, or undefined when it is not staged. */
  sizeOf(key: string): number | undefined {
    return this.sizes.get(key)
  }

  get blocks(): number {
    return this.sizes.size
  }

  /** Stages a block whose bytes were checked against its CID. */
  async put(cid: CID, bytes: Uint8Array): Promise<void> {
    const { dir, path } = this.pathOf(cid)
    // After `discard` a write would make the upload's directory again, and nothing would remove it.
    if (this.discarded) throw new Error('the upload was discarded')
    await this.directories.within(dir, () => writeFile(path, bytes))
    this.sizes.set(cid.toString(), bytes.byteLength)
  }

  async read(cid: CID): Promise<Uint8Array> {
    return readFile(this.pathOf(cid).path)
  }

  /** The size of a block the blockstore holds, or undefined when it does not hold it. */
  async heldSize(cid: CID): Promise<number | undefined> {
    const { dir, file } = layout.encode(cid)
    try {
      return (await stat(join(this.target.path, dir, file))).size
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw e
    }
  }

  /** Moves a staged block into the blockstore (an identical block already there is replaced). */
  async moveIn(cid: CID): Promise<void> {
    const from = this.pathOf(cid).path
    const { dir, file } = layout.encode(cid)
    const targetDir = join(this.target.path, dir)
    try {
      await this.targetDirectories.within(targetDir, () => rename(from, join(targetDir, file)))
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e
      await this.target.put(cid, await readFile(from))
    }
  }

  /** Removes the upload's directory and every block still in it. Idempotent. */
  async discard(): Promise<void> {
    if (this.discarded) return
    this.discarded = true
    await rm(this.dir, { recursive: true, force: true })
  }
}
