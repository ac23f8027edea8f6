/**
 * Hashing a streamed DAG's blocks, and its files' bytes, on worker threads (gateway-fetch.ts).
 *
 * Why two workers and shared slots (measured: docs/adr/0012-weights-transfer-speed.md): a fetch
 * hashes every byte twice, each block against its CID and each file for the manifest's sha256;
 * here both passes run beside the stream, one worker each (a file's sha256 is sequential, so its
 * worker takes the leaves in the order they were sent).
 *
 * A leaf lies in a slot of a buffer shared with both workers: the CAR reader puts it there
 * straight from the socket's chunks (`place`), or `block` copies it in. The caller stores it from
 * the slot once the digest is back and then gives the slot back (`release`); it is reused when
 * both workers have answered too. The workers are node/worker-pool.ts channels.
 */
import { startWorker, WorkerChannel } from '../worker-pool.js'
import type { LeafBytes, LeafHashAnswer, LeafHashRequest, LeafHashWorkerData } from './leaf-hash-worker.js'

/** A profile leaf (1 MiB) fits a slot; a larger block is posted as a copy. */
const SLOT_BYTES = 1024 * 1024

/** Room for one block in a slot of the shared buffer (`LeafHasher.place`). */
export interface Placed {
  readonly slot: number
  /** The slot's first `length` bytes, where the block goes. */
  readonly bytes: Uint8Array
}

export class LeafHasher {
  private readonly blocks: LeafChannel
  private readonly files: LeafChannel
  private nextFile = 0
  private readonly slots: SharedArrayBuffer
  private readonly free: number[]
  /** Slots in use, with how many still hold them (the caller, and each worker not yet done). */
  private readonly holds = new Map<number, number>()
  private readonly waitingForSlot: (() => void)[] = []
  private stopped = false

  /** `slots`: blocks being hashed at once without a copy of their own (the caller's window). */
  constructor(slots: number) {
    this.slots = new SharedArrayBuffer(slots * SLOT_BYTES)
    this.free = Array.from({ length: slots }, (_, i) => slots - 1 - i)
    const data: LeafHashWorkerData = { slots: this.slots, slotBytes: SLOT_BYTES }
    this.blocks = leafChannel(data)
    this.files = leafChannel(data)
  }

  /** A new file whose sha256 the leaves given with it feed. */
  openFile(): number {
    return this.nextFile++
  }

  /**
   * Room for a block of `length` bytes in a slot, waiting for one to be free; undefined for a
   * block larger than a slot. The caller fills it, has it hashed (`hash`), and gives it back
   * (`release`) once it no longer reads it; the slot is reused when the workers are done too.
   */
  async place(length: number): Promise<Placed | undefined> {
    if (length > SLOT_BYTES) return undefined
    while (this.free.length === 0 && !this.stopped)
      await new Promise<void>((r) => this.waitingForSlot.push(r))
    if (this.stopped) throw this.blocks.failed ?? new Error('the hashing workers were stopped')
    const slot = this.free.pop()!
    this.holds.set(slot, 1)
    return { slot, bytes: new Uint8Array(this.slots, slot * SLOT_BYTES, length) }
  }

  /** The sha256 of a placed block; with `file`, its bytes are also the next part of that file. */
  hash(placed: Placed, file?: number): Promise<Uint8Array> {
    return this.ask({ slot: placed.slot, length: placed.bytes.length }, placed.slot, file)
  }

  /** The caller no longer reads the slot. */
  release(placed: Placed): void {
    this.unhold(placed.slot)
  }

  /**
   * The block's sha256 (copied to a free slot, or posted as a copy of its own when none is free
   * or it is larger); `file` as for `hash`. The bytes are taken before it returns, so the caller
   * may reuse them, and requests keep the order of the calls.
   */
  async block(bytes: Uint8Array, file?: number): Promise<Uint8Array> {
    const slot = bytes.length <= SLOT_BYTES && !this.stopped ? this.free.pop() : undefined
    if (slot === undefined) return this.ask({ bytes }, undefined, file)
    this.holds.set(slot, 1)
    const placed: Placed = { slot, bytes: new Uint8Array(this.slots, slot * SLOT_BYTES, bytes.length) }
    placed.bytes.set(bytes)
    try {
      return await this.hash(placed, file)
    } finally {
      this.release(placed)
    }
  }

  /** The sha256 of everything given to `file`, which ends. */
  async closeFile(file: number): Promise<Uint8Array> {
    return (await this.files.ask({ close: file })) as Uint8Array
  }

  /** Ends the workers; answers still due, and slots still awaited, are refused. */
  async stop(): Promise<void> {
    this.stopped = true
    for (const wake of this.waitingForSlot.splice(0)) wake()
    await Promise.all([this.blocks.stop(stopped()), this.files.stop(stopped())])
  }

  private async ask(
    part: LeafBytes,
    slot: number | undefined,
    file: number | undefined,
  ): Promise<Uint8Array> {
    const digest = this.blocks.ask({ part, file: -1, digest: true })
    const fed = file === undefined ? undefined : this.files.ask({ part, file, digest: false })
    if (slot !== undefined) {
      // Each worker given the slot holds it until it has answered (it reads it, then answers).
      this.holds.set(slot, (this.holds.get(slot) ?? 0) + (fed ? 2 : 1))
      void digest.then(...settled(() => this.unhold(slot)))
      if (fed) void fed.then(...settled(() => this.unhold(slot)))
    }
    fed?.catch(() => {}) // a failed worker fails the digest or the file's close as well
    return (await digest) as Uint8Array
  }

  private unhold(slot: number): void {
    const left = (this.holds.get(slot) ?? 1) - 1
    if (left > 0) {
      this.holds.set(slot, left)
      return
    }
    this.holds.delete(slot)
    this.free.push(slot)
    this.waitingForSlot.shift()?.()
  }
}

type LeafChannel = WorkerChannel<LeafHashRequest, LeafHashAnswer>

/** A hashing worker, answering every request in order. */
function leafChannel(data: LeafHashWorkerData): LeafChannel {
  return new WorkerChannel(startWorker(import.meta.url, 'leaf-hash-worker', data), {
    what: 'a hashing worker',
  })
}

function stopped(): Error {
  return new Error('the hashing worker was stopped')
}

/** The same callback for both outcomes of a promise. */
function settled(f: () => void): [() => void, () => void] {
  return [f, f]
}
