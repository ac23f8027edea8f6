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
 * Each block is copied once into a slot of a buffer shared with both workers (a memcpy, a small
 * fraction of hashing it); the slot is free again once both have answered, and the caller keeps
 * its own bytes to store once the digest is back. Posting the blocks themselves was measured
 * slower: every structured clone is a fresh 1 MiB allocation, and the garbage collector then took
 * more time than the hashing saved.
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

export class LeafHasher {
  private readonly blocks: InOrder
  private readonly files: InOrder
  private nextFile = 0
  private readonly slots: SharedArrayBuffer
  private readonly free: number[]

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

  /** The block's sha256; with `file`, its bytes are also the next part of that file. */
  async block(bytes: Uint8Array, file?: number): Promise<Uint8Array> {
    const slot = bytes.length <= SLOT_BYTES ? this.free.pop() : undefined
    let part: LeafBytes = { bytes }
    if (slot !== undefined) {
      new Uint8Array(this.slots, slot * SLOT_BYTES, bytes.length).set(bytes)
      part = { slot, length: bytes.length }
    }
    const digest = this.blocks.ask({ part, file: -1, digest: true })
    const fed = file === undefined ? undefined : this.files.ask({ part, file, digest: false })
    // The slot is free again once every worker given it has answered (each reads it, then answers).
    if (slot !== undefined) void Promise.allSettled([digest, fed]).then(() => this.free.push(slot))
    fed?.catch(() => {}) // a failed worker fails the digest or the file's close as well
    return (await digest)!
  }

  /** The sha256 of everything given to `file`, which ends. */
  async closeFile(file: number): Promise<Uint8Array> {
    return (await this.files.ask({ close: file }))!
  }

  /** Ends the workers; answers still due are refused. */
  async stop(): Promise<void> {
    await Promise.all([this.blocks.stop(), this.files.stop()])
  }
}
