/**
 * Each file's sha256, taken from a DAG's blocks as they stream past in depth-first order (the
 * order of a trustless gateway's `dag-scope=all` CAR), so a steward's check need not read the
 * weights from disk a second time (`verifyDag`'s `fileDigests`).
 *
 * The stream is followed against the DAG itself: each block must be the next link of the
 * depth-first walk of what came before it. Then a file node's raw leaves arrive in the order of
 * its links, which is the order of its bytes, and their concatenation hashes to the file's
 * sha256. A digest is recorded, keyed by the file node's CID, only for a file whose every leaf
 * came in that order; anything else gives no digest, and the check reads that file instead:
 *
 * - a block out of order (the stream stops being followed from there on);
 * - a leaf the gateway left out as a repeat (`dups=n`), or an inlined (identity) block;
 * - a file node with inline data, or a file cut short by the end of the stream.
 *
 * So nothing here decides a verdict: a digest is a file's bytes hashed once instead of twice,
 * and the check still compares it with the manifest and rebuilds the root from the leaves.
 */

import type * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import type { CID } from 'multiformats/cid'
import { IDENTITY_CODE, RAW_CODE } from '../../protocol/cid.js'
import type { FileDigest } from './local-files.js'

/** Where files' bytes are hashed (`LeafHasher`): a leaf goes there with the file it feeds. */
export interface FileHashing {
  openFile(): number
  closeFile(file: number): Promise<Uint8Array>
}

interface OpenFile {
  readonly id: number
  size: number
  /** A leaf of it was skipped or inlined: its bytes are not all in `hash`. */
  tainted: boolean
}

interface Frame {
  readonly key: string
  readonly links: readonly CID[]
  next: number
  /** The file this node's leaves belong to, if it is (inside) a file node. */
  readonly file: OpenFile | undefined
  /** Whether this node is the file's top node (its digest is recorded when it completes). */
  readonly owns: boolean
}

export class DfsFileDigests {
  private readonly frames: Frame[] = []
  private started = false
  private ordered = true
  private readonly digests = new Map<string, FileDigest>()
  private readonly closing: Promise<void>[] = []

  constructor(
    private readonly root: CID,
    private readonly hashing: FileHashing,
    /** Whether a block already came earlier in the stream (a repeat the gateway may skip). */
    private readonly received: (key: string) => boolean,
  ) {}

  /**
   * The next block of the stream (`node` when it is dag-pb). For a raw leaf of a file, the file
   * its bytes must be hashed into (with `hashing`, before anything else is asked of it).
   */
  block(cid: CID, bytes: Uint8Array, node: dagPb.PBNode | undefined): number | undefined {
    if (!this.ordered) return undefined
    if (!this.follows(cid)) {
      // Out of order: nothing more is followed, and the files open are left without a digest.
      this.ordered = false
      for (const f of this.frames) if (f.owns && f.file) this.close(f.file, undefined)
      this.frames.length = 0
      return undefined
    }
    const parent = this.frames.at(-1)
    if (cid.code === RAW_CODE) {
      if (parent?.file) {
        parent.file.size += bytes.length
        return parent.file.id
      }
      // A file of one raw block: its sha256 is the block's own digest.
      if (parent) this.digests.set(cid.toString(), { size: bytes.length, sha256: cid.multihash.digest })
      return undefined
    }
    if (node === undefined) return undefined
    let unixfs: UnixFS | undefined
    try {
      unixfs = UnixFS.unmarshal(node.Data ?? new Uint8Array())
    } catch {
      unixfs = undefined // not UnixFS: the check will say so
    }
    const isFile = unixfs?.type === 'file' || unixfs?.type === 'raw'
    const inline = unixfs?.data !== undefined && unixfs.data.length > 0
    let file = parent?.file
    let owns = false
    if (file === undefined && isFile) {
      file = { id: this.hashing.openFile(), size: 0, tainted: false }
      owns = true
    }
    if (file && (inline || !isFile)) file.tainted = true
    this.frames.push({ key: cid.toString(), links: node.Links.map((l) => l.Hash), next: 0, file, owns })
    return undefined
  }

  /** The digests of the files that came whole and in order, by their file node's CID. */
  async finish(): Promise<ReadonlyMap<string, FileDigest>> {
    if (this.ordered) this.popCompleted()
    for (const f of this.frames) if (f.owns && f.file) this.close(f.file, undefined)
    this.frames.length = 0
    await Promise.all(this.closing)
    return this.digests
  }

  /** Whether `cid` is the next block of the depth-first walk (skipping the repeats left out). */
  private follows(cid: CID): boolean {
    if (!this.started) {
      this.started = true
      return cid.equals(this.root)
    }
    for (;;) {
      this.popCompleted()
      const top = this.frames.at(-1)
      if (top === undefined) return false
      const next = top.links[top.next++]!
      if (next.equals(cid)) return true
      const key = next.toString()
      // dups=n: a block sent before is not sent again, nor anything under it.
      if (next.multihash.code === IDENTITY_CODE || this.received(key)) {
        if (top.file) top.file.tainted = true
        continue
      }
      return false
    }
  }

  /** Ends the frames whose links have all come, recording each whole file's digest. */
  private popCompleted(): void {
    for (let top = this.frames.at(-1); top && top.next >= top.links.length; top = this.frames.at(-1)) {
      this.frames.pop()
      if (top.owns && top.file) this.close(top.file, top.file.tainted ? undefined : top.key)
    }
  }

  /** Ends a file's hashing; its digest is recorded under `key`, if given. */
  private close(file: OpenFile, key: string | undefined): void {
    const size = file.size
    this.closing.push(
      this.hashing.closeFile(file.id).then(
        (sha256) => {
          if (key !== undefined) this.digests.set(key, { size, sha256: new Uint8Array(sha256) })
        },
        () => {}, // the hashing failed: the fetch fails with it, and no digest is recorded
      ),
    )
  }
}
