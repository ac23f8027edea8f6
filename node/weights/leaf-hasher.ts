/**
 * Hashing a streamed DAG's blocks, and its files' bytes, on worker threads (gateway-fetch.ts).
 *
 * Why: a steward's fetch from a gateway hashes every byte twice — each block against its CID,
 * and each file for the manifest's sha256 — at 1.3–2 GB/s per pass on one core. On the main
 * thread that adds both passes to the time the stream's reading, parsing and writing take. Here
 * they run beside it, on two workers: one hashes each block, the other the files (a file's sha256
 * is sequential, so its worker takes the leaves in the order they were sent). With one worker
 * doing both passes, that worker was the slowest part of a 256 MiB fetch (bench/fetch.ts).
 *
 * A leaf lies in a slot of a buffer shared with both workers: the CAR reader puts it there
 * straight from the socket's chunks (`place`), or `block` copies it in. The caller stores it from
 * the slot once the digest is back and then gives the slot back (`release`); it is reused when
 * both workers have answered too. Posting the blocks themselves was measured slower: every
 * structured clone is a fresh 1 MiB allocation, and the garbage collector then took more time
 * than the hashing saved.
 */
import type { Worker } from 'node:worker_threads'
import { startWorker } from '../worker-thread.js'
import type { LeafBytes, LeafHashAnswer, LeafHashRequest, LeafHashWorkerData } from './leaf-hash-worker.js'

/** A profile leaf (1 MiB) fits a slot; a larger block is posted as a copy. */
const SLOT_BYTES = 1024 * 1024

/** A worker answering every request, in order. */
class InOrder {
  private readonly worker: Worker
  private readonly waiting: { resolve: (a: LeafHashAnswer) => void; reject: (e: Error) => void }[] = []
  failed: Error | undefined

  constructor(data: LeafHashWorkerData) {
    this.worker = startWorker(import.meta.url, 'leaf-hash-worker', data)
    this.worker.on('message', (answer: LeafHashAnswer) => this.waiting.shift()?.resolve(answer))
    this.worker.on('error', (e) => this.fail(e))
    this.worker.on('exit', (code) => this.fail(new Error(`a hashing worker exited (${code})`)))
  }

  ask(request: LeafHashRequest): Promise<LeafHashAnswer> {
    if (this.failed) return Promise.reject(this.failed)
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject })
      this.worker.postMessage(request)
    })
  }

  async stop(): Promise<void> {
    this.failed ??= new Error('the hashing worker was stopped')
    await this.worker.terminate()
    this.fail(this.failed)
  }

  private fail(e: Error): void {
    this.failed ??= e
    for (const w of this.waiting.splice(0)) w.reject(this.failed)
  }
}

/** Room for one block in a slot of the shared buffer (`LeafHasher.place`). */
export interface Placed {
  readonly slot: number
  /** The slot's first `length` bytes, where the block goes. */
  readonly bytes: Uint8Array
}

export class LeafHasher {
  private readonly blocks: InOrder
  private readonly files: InOrder
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
    this.blocks = new InOrder(data)
    this.files = new InOrder(data)
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
    await Promise.all([this.blocks.stop(), this.files.stop()])
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

/** The same callback for both outcomes of a promise. */
function settled(f: () => void): [() => void, () => void] {
  return [f, f]
}
