/**
 * One byte range of one file from one source: `GET <source>/ipfs/<root>/<path>?format=car&
 * dag-scope=entity&entity-bytes=FROM:TO` (ADR 0027), whose CAR holds the path's blocks, the file's
 * root and, below it, only the blocks that hold bytes of the range, depth-first.
 *
 * Nothing about the source is trusted. A block is taken only when it is wanted: the file's root,
 * or a link of a node taken whose bytes meet the range; each is hashed against its CID before a
 * byte of it is written; a node's sizes must add up and agree with its parent's, so every leaf
 * lands at an offset the verified nodes give and inside the file. Leaves are written in place
 * into the `.partial` file. A leaf the CAR leaves out as a repeat (`dups=n`) is copied from where
 * it was written. Any fault throws, and the scheduler drops the source (multi-fetch-sources.ts;
 * docs/adr/0030-multi-source-fetch.md).
 */
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import type { CID } from 'multiformats/cid'
import { equalBytes } from '../../protocol/bytes.js'
import { RAW_CODE, SHA2_256_CODE } from '../../protocol/cid.js'
import { isNodeError, NodeError } from '../errors.js'
import { CarReader } from './car-sections.js'
import type { PartialFile } from './multi-fetch-file.js'
import type { FetchHasher, Slot } from './multi-fetch-hasher.js'
import { openCar } from './multi-fetch-http.js'
import { checkBlock, ipfsPath, type ResolvedFile } from './multi-fetch-resolve.js'
import type { ByteSpan } from './multi-fetch-spans.js'
import { MAX_BLOCK_BYTES } from './profile.js'

export interface RangeOptions {
  readonly source: string
  readonly weights: CID
  readonly file: PartialFile
  readonly resolved: ResolvedFile
  readonly span: ByteSpan
  readonly hasher: FetchHasher
  readonly signal: AbortSignal
  readonly idleMs: number
  /** Bytes of the file written (and checked), as they are. */
  readonly onWritten?: ((bytes: number) => void) | undefined
}

/**
 * Bytes a range's CAR may carry beyond the range: the edge leaves, the path, and the nodes (a
 * file node of 1,024 links is about 46 KiB; two edges per level).
 */
export function rangeBudget(span: ByteSpan): number {
  const length = span.end - span.start
  return length + 4 * MAX_BLOCK_BYTES + Math.ceil(length / 64)
}

/** Fetches `span` of the file into its `.partial`; resolves with the CAR bytes received. */
export async function fetchRange(options: RangeOptions): Promise<number> {
  const { source, weights, file, span, signal, idleMs } = options
  const path = file.file.path
  const url = `${source}${ipfsPath(weights, path)}?format=car&dag-scope=entity&entity-bytes=${span.start}:${span.end - 1}&car-version=1&car-order=dfs&car-dups=n`
  const stream = await openCar(url, source, signal, idleMs)
  const intake = new RangeIntake(options)
  try {
    const reader = new CarReader(stream.body, {
      maxBlockBytes: MAX_BLOCK_BYTES,
      maxBytes: rangeBudget(span),
      place: intake.place,
    })
    await reader.header()
    for (let section = await reader.next(); section !== undefined; section = await reader.next()) {
      if (signal.aborted) throw signal.reason
      await intake.take(section.cid, section.bytes)
    }
    await intake.settled()
  } catch (e) {
    // What was checked is written before the source is given up: a resumed fetch keeps it.
    await intake.settled().catch(() => {})
    throw fromSource(e, source, signal)
  } finally {
    intake.releasePlaced()
    stream.close()
  }
  if (file.missing(span).length > 0)
    throw new NodeError(
      'source-incomplete',
      `${source} ended the range ${span.start}:${span.end - 1} of ${path} early`,
      {
        status: 502,
      },
    )
  return stream.received()
}

interface Written {
  readonly at: number
  readonly task: Promise<void>
}

interface FileNode {
  readonly node: dagPb.PBNode
  readonly unixfs: UnixFS
}

/** The blocks of one range's CAR: which are wanted where, and the writes under way. */
class RangeIntake {
  /** Where each wanted block's bytes begin in the file (a block may be wanted in several places). */
  private readonly wanted = new Map<string, number[]>()
  /** The file bytes each wanted block must hold, as its parent says. */
  private readonly sizes = new Map<string, number>()
  private readonly leaves = new Map<string, Written>()
  private readonly nodes = new Map<string, FileNode>()
  private readonly tasks = new Set<Promise<void>>()
  private failed: { error: unknown } | undefined
  /** The slot the section being read went to, until `take` has it. */
  private placed: Slot | undefined

  constructor(private readonly options: RangeOptions) {
    const root = options.resolved.cid.toString()
    this.wanted.set(root, [0])
    this.sizes.set(root, options.file.file.size)
  }

  /** Where a section's block goes; a block that is not wanted ends the range before it is read. */
  readonly place = async (cid: CID, length: number): Promise<Uint8Array> => {
    const key = cid.toString()
    const known = this.options.resolved.pathBlocks.has(key) || this.leaves.has(key) || this.nodes.has(key)
    if (!this.wanted.has(key)) {
      if (known) return new Uint8Array(length) // a path block, or a repeat: read past (the budget bounds it)
      throw new NodeError(
        'block-unwanted',
        `${this.options.source} sent ${cid}, which is not in this range`,
        {
          status: 502,
        },
      )
    }
    if (cid.multihash.code !== SHA2_256_CODE)
      throw new NodeError('not-unixfs', `${this.options.source} sent ${cid}, not a sha2-256 block`, {
        status: 422,
      })
    if (cid.code !== RAW_CODE) return new Uint8Array(length)
    this.placed = await this.options.hasher.place(length)
    return this.placed?.bytes ?? new Uint8Array(length)
  }

  async take(cid: CID, bytes: Uint8Array): Promise<void> {
    const key = cid.toString()
    const slot = this.placed
    this.placed = undefined
    const offsets = this.wanted.get(key)
    if (offsets === undefined) {
      // A path block: checked, not kept (its CID is known from the resolution).
      if (this.options.resolved.pathBlocks.has(key)) checkBlock(cid, bytes, this.options.source)
      return
    }
    this.wanted.delete(key)
    const size = this.sizes.get(key)!
    if (cid.code === RAW_CODE) this.takeLeaf(cid, bytes, slot, offsets, size)
    else this.takeNode(cid, bytes, offsets, size)
    if (this.tasks.size >= 64) await Promise.race(this.tasks)
    if (this.failed) throw this.failed.error
  }

  /** Waits for every write under way; throws the first that failed. */
  async settled(): Promise<void> {
    await Promise.all(this.tasks)
    if (this.failed) throw this.failed.error
  }

  releasePlaced(): void {
    if (this.placed) this.options.hasher.release(this.placed)
    this.placed = undefined
  }

  private takeLeaf(
    cid: CID,
    bytes: Uint8Array,
    slot: Slot | undefined,
    offsets: number[],
    size: number,
  ): void {
    const { hasher, file, source } = this.options
    if (bytes.length !== size) {
      if (slot) hasher.release(slot)
      throw invalid(cid, `holds ${bytes.length} bytes where its parent says ${size}`)
    }
    const task = (async () => {
      try {
        const digest = await hasher.digest(slot ?? bytes)
        if (!equalBytes(digest, cid.multihash.digest))
          throw new NodeError('block-corrupt', `${source} sent ${cid} with other bytes`, { status: 502 })
        await Promise.all(offsets.map((at) => file.write(bytes, at)))
      } finally {
        if (slot) hasher.release(slot)
      }
      for (const at of offsets) this.done(at, size)
    })()
    this.leaves.set(cid.toString(), { at: offsets[0]!, task })
    this.track(task)
  }

  /** A file node: hashed here (it is small, and its links decide what is wanted next), then expanded. */
  private takeNode(cid: CID, bytes: Uint8Array, offsets: number[], size: number): void {
    checkBlock(cid, bytes, this.options.source)
    let node: dagPb.PBNode
    let unixfs: UnixFS
    try {
      node = dagPb.decode(bytes)
      unixfs = UnixFS.unmarshal(node.Data ?? new Uint8Array())
    } catch (e) {
      throw invalid(cid, `is not a UnixFS node: ${(e as Error).message}`)
    }
    if (unixfs.type !== 'file' && unixfs.type !== 'raw')
      throw invalid(cid, `is a UnixFS ${unixfs.type}, not a file`)
    const own = unixfs.data?.length ?? 0
    const linked = unixfs.blockSizes.reduce((n, s) => n + Number(s), 0)
    if (
      unixfs.blockSizes.length !== node.Links.length ||
      Number(unixfs.fileSize()) !== size ||
      own + linked !== size
    )
      throw invalid(cid, `claims sizes that do not add up to the ${size} bytes its parent says`)
    const fileNode = { node, unixfs }
    this.nodes.set(cid.toString(), fileNode)
    for (const at of offsets) this.expand(fileNode, at)
  }

  /** Wants the links of a node at `at` whose bytes meet the range; writes its own data, if any. */
  private expand({ node, unixfs }: FileNode, at: number): void {
    const { span, file } = this.options
    const data = unixfs.data
    if (data !== undefined && data.length > 0 && at < span.end && at + data.length > span.start)
      this.track(file.write(data, at).then(() => this.done(at, data.length)))
    let begin = at + (data?.length ?? 0)
    for (const [i, link] of node.Links.entries()) {
      const end = begin + Number(unixfs.blockSizes[i])
      if (end > begin && end > span.start && begin < span.end) this.want(link.Hash, begin, end - begin)
      begin = end
    }
  }

  private want(cid: CID, at: number, size: number): void {
    const key = cid.toString()
    const known = this.sizes.get(key)
    if (known !== undefined && known !== size)
      throw invalid(cid, `is linked as ${known} and as ${size} bytes`)
    this.sizes.set(key, size)
    const leaf = this.leaves.get(key)
    const node = this.nodes.get(key)
    if (leaf) {
      // Sent once already (dups=n): copied from where it was written.
      this.track(
        leaf.task.then(() => this.options.file.copy(leaf.at, at, size)).then(() => this.done(at, size)),
      )
    } else if (node) this.expand(node, at)
    else this.wanted.set(key, [...(this.wanted.get(key) ?? []), at])
  }

  private done(at: number, size: number): void {
    this.options.file.markDone(at, at + size)
    this.options.onWritten?.(size)
  }

  private track(task: Promise<void>): void {
    const tracked: Promise<void> = task.then(
      () => void this.tasks.delete(tracked),
      (e: unknown) => {
        this.tasks.delete(tracked)
        this.failed ??= { error: e }
      },
    )
    this.tasks.add(tracked)
  }
}

function invalid(cid: CID, why: string): NodeError {
  return new NodeError('block-invalid', `block ${cid} ${why}`, { status: 502 })
}

/** A failure of the range as a NodeError that names the source (an abort stays itself). */
function fromSource(e: unknown, source: string, signal: AbortSignal): unknown {
  if (signal.aborted) return signal.reason
  if (isNodeError(e))
    return e.message.includes(source) ? e : new NodeError(e.code, `${source}: ${e.message}`, { status: 502 })
  return new NodeError('source-failed', `${source}: ${(e as Error)?.message ?? String(e)}`, {
    status: 502,
    cause: e,
  })
}
