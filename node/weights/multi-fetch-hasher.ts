/**
 * The hashing of a multi-source fetch, on a worker thread (leaf-hasher.ts's worker,
 * leaf-hash-worker.ts, unchanged): it checks each block against its CID as it streams in, and
 * takes each file's sha256 from reads of the `.partial` file behind the writes, in file order,
 * whatever order the ranges came in. One worker, not leaf-hasher's two: here the main thread is
 * the bottleneck, and a thread less is memory less (docs/adr/0030-multi-source-fetch.md).
 *
 * Blocks are read from the socket straight into slots of a buffer shared with the worker (no copy
 * per block, no garbage: ADR 0012); the file reads go into larger slots of their own, so the two
 * never wait on each other for room.
 */
import type { FileHandle } from 'node:fs/promises'
import { startWorker, WorkerChannel } from '../worker-pool.js'
import type { LeafHashAnswer, LeafHashRequest, LeafHashWorkerData } from './leaf-hash-worker.js'
import { CHUNK_BYTES } from './profile.js'

/** A block slot: one profile leaf. */
const SLOT_BYTES = CHUNK_BYTES
/** File reads in flight to the file worker: one read while the last is hashed, and room. */
const FILE_SLOTS = 2
/** A file read: a few leaves at once, so the reads and messages per byte are a quarter. */
export const FILE_SLOT_BYTES = 4 * CHUNK_BYTES

/** Room for one block in the shared buffer. */
export interface Slot {
  readonly index: number
  readonly bytes: Uint8Array
}

type LeafChannel = WorkerChannel<LeafHashRequest, LeafHashAnswer>

/** The slots of a buffer shared with a worker, handed out and given back. */
class SlotPool {
  private readonly free: number[]
  private readonly waiting: (() => void)[] = []
  stopped = false

  /** `count` slots of `slotBytes` from byte `offset` of `shared`. */
  constructor(
    private readonly shared: SharedArrayBuffer,
    private readonly slotBytes: number,
    private readonly offset: number,
    count: number,
  ) {
    this.free = Array.from({ length: count }, (_, i) => count - 1 - i)
  }

  async take(length: number): Promise<Slot> {
    while (this.free.length === 0 && !this.stopped) await new Promise<void>((r) => this.waiting.push(r))
    if (this.stopped) throw new Error('the hashing workers were stopped')
    const at = this.offset + this.free.pop()! * this.slotBytes
    // The index the worker is given: in block slots (SLOT_BYTES each) from the buffer's start.
    return { index: at / SLOT_BYTES, bytes: new Uint8Array(this.shared, at, length) }
  }

  give(slot: Slot): void {
    this.free.push((slot.index * SLOT_BYTES - this.offset) / this.slotBytes)
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
  private readonly worker: LeafChannel
  private nextFile = 0

  /** `slots`: blocks read and being checked at once, across every source. */
  constructor(slots: number) {
    // One buffer: the block slots, then the file reads (each as wide as FILE_SLOT_BYTES / SLOT_BYTES
    // block slots: the worker reads `length` bytes from the start of the slot it is given).
    const shared = new SharedArrayBuffer(slots * SLOT_BYTES + FILE_SLOTS * FILE_SLOT_BYTES)
    this.blockSlots = new SlotPool(shared, SLOT_BYTES, 0, slots)
    this.fileSlots = new SlotPool(shared, FILE_SLOT_BYTES, slots * SLOT_BYTES, FILE_SLOTS)
    this.worker = channel({ slots: shared, slotBytes: SLOT_BYTES })
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
    return (await this.worker.ask({ part, file: -1, digest: true })) as Uint8Array
  }

  /** A new file, whose sha256 `feedFile` takes. */
  openFile(): number {
    return this.nextFile++
  }

  /** Hashes bytes `from` to `to` of `handle` into `file`; calls for one file must not overlap. */
  async feedFile(file: number, handle: FileHandle, from: number, to: number): Promise<void> {
    const answers: Promise<unknown>[] = []
    for (let at = from; at < to; ) {
      const slot = await this.fileSlots.take(Math.min(FILE_SLOT_BYTES, to - at))
      const { bytesRead } = await handle.read(slot.bytes, 0, slot.bytes.length, at).catch((e: unknown) => {
        this.fileSlots.give(slot)
        throw e
      })
      if (bytesRead !== slot.bytes.length) {
        this.fileSlots.give(slot)
        throw new Error(`the file ends at byte ${at + bytesRead}, before ${to}`)
      }
      const part = { slot: slot.index, length: bytesRead }
      const answer = this.worker.ask({ part, file, digest: false })
      answers.push(answer.finally(() => this.fileSlots.give(slot)))
      at += bytesRead
    }
    await Promise.all(answers)
  }

  /** The sha256 of everything fed to `file`, which ends. */
  async closeFile(file: number): Promise<Uint8Array> {
    return new Uint8Array((await this.worker.ask({ close: file })) as Uint8Array)
  }

  async stop(): Promise<void> {
    this.blockSlots.stop()
    this.fileSlots.stop()
    const stopped = new Error('the hashing worker was stopped')
    await this.worker.stop(stopped)
  }
}

function channel(data: LeafHashWorkerData): LeafChannel {
  // The worker sits beside leaf-hasher.ts, as this module does (and beside the bundle).
  return new WorkerChannel(startWorker(import.meta.url, 'leaf-hash-worker', data), {
    what: 'a hashing worker',
  })
}
