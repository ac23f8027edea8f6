/**
 * The hashing of a multi-source fetch, on two worker threads (the workers of leaf-hasher.ts,
 * leaf-hash-worker.ts, unchanged): one checks each block against its CID as it streams in, the
 * other takes each file's sha256 by reading the `.partial` file behind the writes, in file order,
 * whatever order the ranges came in (docs/adr/0030-multi-source-fetch.md).
 *
 * Blocks are read from the socket straight into slots of a buffer shared with the workers (no
 * copy per block, no garbage: ADR 0012); the file reads go into slots of their own, so the two
 * never wait on each other.
 */
import type { FileHandle } from 'node:fs/promises'
import { startWorker, WorkerChannel } from '../worker-pool.js'
import type { LeafHashAnswer, LeafHashRequest, LeafHashWorkerData } from './leaf-hash-worker.js'
import { CHUNK_BYTES } from './profile.js'

const SLOT_BYTES = CHUNK_BYTES
/** File reads in flight to the file worker: one read while the last is hashed, and room. */
const FILE_SLOTS = 4

/** Room for one block in the shared buffer. */
export interface Slot {
  readonly index: number
  readonly bytes: Uint8Array
}

type LeafChannel = WorkerChannel<LeafHashRequest, LeafHashAnswer>

/** Slots of the shared buffer from `first` to `first + count`, handed out and given back. */
class SlotPool {
  private readonly free: number[]
  private readonly waiting: (() => void)[] = []
  stopped = false

  constructor(
    private readonly shared: SharedArrayBuffer,
    first: number,
    count: number,
  ) {
    this.free = Array.from({ length: count }, (_, i) => first + count - 1 - i)
  }

  async take(length: number): Promise<Slot> {
    while (this.free.length === 0 && !this.stopped) await new Promise<void>((r) => this.waiting.push(r))
    if (this.stopped) throw new Error('the hashing workers were stopped')
    const index = this.free.pop()!
    return { index, bytes: new Uint8Array(this.shared, index * SLOT_BYTES, length) }
  }

  give(slot: Slot): void {
    this.free.push(slot.index)
    this.waiting.shift()?.()
  }

  stop(): void {
    this.stopped = true
    for (const wake of this.waiting.splice(0)) wake()
  }
}

export class FetchHasher {
  private readonly blockSlots: SlotPool
  private readonly fileSlots: SlotPool
  private readonly blocks: LeafChannel
  private readonly files: LeafChannel
  private nextFile = 0

  /** `slots`: blocks read and being checked at once, across every source. */
  constructor(slots: number) {
    const shared = new SharedArrayBuffer((slots + FILE_SLOTS) * SLOT_BYTES)
    this.blockSlots = new SlotPool(shared, 0, slots)
    this.fileSlots = new SlotPool(shared, slots, FILE_SLOTS)
    const data: LeafHashWorkerData = { slots: shared, slotBytes: SLOT_BYTES }
    this.blocks = channel(data)
    this.files = channel(data)
  }

  /** A slot for a block of `length` bytes (waiting for one); undefined when it is larger than a slot. */
  place(length: number): Promise<Slot | undefined> {
    return length > SLOT_BYTES ? Promise.resolve(undefined) : this.blockSlots.take(length)
  }

  release(slot: Slot): void {
    this.blockSlots.give(slot)
  }

  /** The sha256 of a block, in its slot or (larger than a slot) its own bytes. */
  async digest(block: Slot | Uint8Array): Promise<Uint8Array> {
    const part =
      block instanceof Uint8Array ? { bytes: block } : { slot: block.index, length: block.bytes.length }
    return (await this.blocks.ask({ part, file: -1, digest: true })) as Uint8Array
  }

  /** A new file, whose sha256 `feedFile` takes. */
  openFile(): number {
    return this.nextFile++
  }

  /** Hashes bytes `from` to `to` of `handle` into `file`; calls for one file must not overlap. */
  async feedFile(file: number, handle: FileHandle, from: number, to: number): Promise<void> {
    const answers: Promise<unknown>[] = []
    for (let at = from; at < to; ) {
      const slot = await this.fileSlots.take(Math.min(SLOT_BYTES, to - at))
      const { bytesRead } = await handle.read(slot.bytes, 0, slot.bytes.length, at).catch((e: unknown) => {
        this.fileSlots.give(slot)
        throw e
      })
      if (bytesRead !== slot.bytes.length) {
        this.fileSlots.give(slot)
        throw new Error(`the file ends at byte ${at + bytesRead}, before ${to}`)
      }
      const part = { slot: slot.index, length: bytesRead }
      const answer = this.files.ask({ part, file, digest: false })
      answers.push(answer.finally(() => this.fileSlots.give(slot)))
      at += bytesRead
    }
    await Promise.all(answers)
  }

  /** The sha256 of everything fed to `file`, which ends. */
  async closeFile(file: number): Promise<Uint8Array> {
    return new Uint8Array((await this.files.ask({ close: file })) as Uint8Array)
  }

  async stop(): Promise<void> {
    this.blockSlots.stop()
    this.fileSlots.stop()
    const stopped = new Error('the hashing worker was stopped')
    await Promise.all([this.blocks.stop(stopped), this.files.stop(stopped)])
  }
}

function channel(data: LeafHashWorkerData): LeafChannel {
  // The worker sits beside leaf-hasher.ts, as this module does (and beside the bundle).
  return new WorkerChannel(startWorker(import.meta.url, 'leaf-hash-worker', data), {
    what: 'a hashing worker',
  })
}
