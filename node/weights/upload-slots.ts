/** Upload slots (SPEC.md §7): how many uploads a node takes at once, per author and in all. */
import { NodeError } from '../errors.js'

/**
 * Uploads at once: at most `perAuthor` for one author (a publisher's DID, or the admin) and `total`
 * in all, so no one can hold every slot, or the disk, with uploads held open.
 */
export class UploadSlots {
  private readonly byAuthor = new Map<string, number>()
  private inUse = 0

  constructor(
    readonly perAuthor: number,
    readonly total: number,
  ) {}

  /** Takes a slot for `author`, or throws `upload-busy`; returns the slot's release (once). */
  acquire(author: string): () => void {
    const mine = this.byAuthor.get(author) ?? 0
    if (mine >= this.perAuthor)
      throw new NodeError(
        'upload-busy',
        `${author} has ${mine} uploads under way on this node, the most it takes at once; wait for one to end`,
        { status: 429 },
      )
    if (this.inUse >= this.total)
      throw new NodeError(
        'upload-busy',
        `this node has ${this.inUse} uploads under way, the most it takes at once; try again shortly`,
        { status: 429 },
      )
    this.byAuthor.set(author, mine + 1)
    this.inUse++
    let released = false
    return () => {
      if (released) return
      released = true
      this.inUse--
      const left = (this.byAuthor.get(author) ?? 1) - 1
      if (left === 0) this.byAuthor.delete(author)
      else this.byAuthor.set(author, left)
    }
  }
}
