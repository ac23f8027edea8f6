/**
 * How a scrub pass reads blocks back from the node's blockstore (scrub-pass.ts): nodes through
 * the blockstore, leaves straight from their files on the file-hashing worker threads
 * (hash-worker.ts), one file per request, each worker reading and hashing its own.
 *
 * Why the workers (measured: docs/adr/0031-scrubbing-and-clean-up.md): sha256 runs at about the
 * speed a disk's page cache gives bytes, so on one thread the scrub is bound by hashing; two
 * workers hash two leaves at once while the main thread stays free for the node. A leaf's path
 * follows blockstore-fs's default layout (`NextToLast`), as BlockFiles and upload staging do.
 */
import { join } from 'node:path'
import { NextToLast } from 'blockstore-fs/sharding'
import type { CID } from 'multiformats/cid'
import { equalBytes } from '../../protocol/bytes.js'
import { nativeSha256 } from '../sha256.js'
import { startChannels, type WorkerChannel } from '../worker-pool.js'
import type { HashAnswer, HashRequest, HashWorkerData } from './hash-worker.js'
import { CHUNK_BYTES, MAX_BLOCK_BYTES } from './profile.js'
import type { BlockVerdict, PassBlocks } from './scrub-pass.js'

/** What is read of the node's blockstore (BlockFiles). */
export interface ScrubBlockstore {
  get(cid: CID, options?: { signal?: AbortSignal }): AsyncIterable<Uint8Array> | Iterable<Uint8Array>
}

const layout = new NextToLast()

function isNotFound(e: unknown): boolean {
  return (e as Error)?.name === 'NotFoundError'
}

async function readWhole(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): Promise<Uint8Array | undefined> {
  const parts: Uint8Array[] = []
  let size = 0
  for await (const part of source) {
    size += part.length
    // Larger than any block of the profile: damaged (it cannot hash to a profile CID anyway).
    if (size > MAX_BLOCK_BYTES) return undefined
    parts.push(part)
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
}

export class ScrubBlocks implements PassBlocks {
  /** Started at the first leaf: a node whose scrub is off, or holds nothing, runs no threads. */
  private workers: WorkerChannel<HashRequest, HashAnswer>[] | undefined
  private next = 0
  private ids = 0

  constructor(
    private readonly blocksDir: string,
    private readonly blockstore: ScrubBlockstore,
    private readonly threads = 2,
  ) {}

  async node(cid: CID, signal: AbortSignal): Promise<Uint8Array | undefined> {
    try {
      return (await readWhole(this.blockstore.get(cid, { signal }))) ?? new Uint8Array(0)
    } catch (e) {
      if (isNotFound(e)) return undefined
      throw e
    }
  }

  async leaf(cid: CID, size: number, signal: AbortSignal): Promise<BlockVerdict> {
    signal.throwIfAborted()
    const { dir, file } = layout.encode(cid)
    const path = join(this.blocksDir, dir, file)
    // Round robin: leaves are of one size, so the workers stay evenly loaded.
    this.workers ??= this.startWorkers()
    const workers = this.workers
    const worker = workers[this.next++ % workers.length]!
    let answer: HashAnswer
    try {
      answer = await worker.ask({
        id: this.ids++,
        location: new TextEncoder().encode(path),
        path,
        size,
        whole: true,
        leaves: false,
      })
    } catch (e) {
      // A worker that died fails every later request: the next leaf starts fresh ones.
      if (this.workers === workers) {
        this.workers = undefined
        void Promise.all(workers.map((w) => w.stop())).catch(() => {})
      }
      throw e
    }
    if ('done' in answer) return equalBytes(answer.done.sha256!, cid.multihash.digest) ? 'ok' : 'damaged'
    if (!('error' in answer)) return 'damaged'
    if (answer.error.code === 'unreadable' && /ENOENT/.test(answer.error.message)) return 'missing'
    // Another size than its parent's link says (`file-changed`), or unreadable: the block's own
    // hash decides (a link's size is the publisher's word; the hash is the block's).
    return this.hashHere(cid, signal)
  }

  async stop(): Promise<void> {
    await Promise.all((this.workers ?? []).map((w) => w.stop()))
  }

  private startWorkers(): WorkerChannel<HashRequest, HashAnswer>[] {
    const data: HashWorkerData = { abort: new SharedArrayBuffer(4), chunkBytes: CHUNK_BYTES }
    return startChannels<HashRequest, HashAnswer>(import.meta.url, 'hash-worker', data, this.threads, {
      what: 'a scrub hashing worker',
      isNews: (answer) => 'progress' in answer,
      unrefWhenIdle: true,
    })
  }

  private async hashHere(cid: CID, signal: AbortSignal): Promise<BlockVerdict> {
    const bytes = await this.node(cid, signal)
    if (bytes === undefined) return 'missing'
    return equalBytes(nativeSha256(bytes), cid.multihash.digest) ? 'ok' : 'damaged'
  }
}
