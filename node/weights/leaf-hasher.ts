/**
 * Hashing a streamed DAG's blocks, and its files' bytes, on a worker thread (gateway-fetch.ts).
 *
 * Why: a steward's fetch from a gateway hashes every byte twice — each block against its CID,
 * and each file for the manifest's sha256 — at about 2 GB/s per pass on one core. On the main
 * thread that doubles the time the stream's reading, parsing and writing already take; on a
 * worker the two overlap. One worker, answering in order, so a file's leaves are hashed in the
 * order they were sent (a file's sha256 is sequential anyway).
 *
 * Each block is copied into a slot of a buffer shared with the worker (a memcpy, a small fraction
 * of hashing it); the caller keeps its own bytes to store once the digest is back. Posting the
 * blocks themselves was measured slower: every structured clone is a fresh 1 MiB allocation, and
 * the garbage collector then took more time than the hashing saved.
 */
import type { Worker } from 'node:worker_threads'
import { startWorker } from '../worker-thread.js'
import type { LeafHashAnswer, LeafHashRequest, LeafHashWorkerData } from './leaf-hash-worker.js'

/** A profile leaf (1 MiB) fits a slot; a larger block is posted as a copy. */
const SLOT_BYTES = 1024 * 1024

export class LeafHasher {
  private readonly worker: Worker
  private readonly waiting: { resolve: (d: Uint8Array) => void; reject: (e: Error) => void }[] = []
  private failed: Error | undefined
  private nextFile = 0
  private readonly slots: SharedArrayBuffer
  private readonly free: number[]

  /** `slots`: blocks being hashed at once without a copy of their own (the caller's window). */
  constructor(slots: number) {
    this.slots = new SharedArrayBuffer(slots * SLOT_BYTES)
    this.free = Array.from({ length: slots }, (_, i) => slots - 1 - i)
    const data: LeafHashWorkerData = { slots: this.slots, slotBytes: SLOT_BYTES }
    this.worker = startWorker(import.meta.url, 'leaf-hash-worker', data)
    this.worker.on('message', (digest: LeafHashAnswer) => this.waiting.shift()?.resolve(digest))
    this.worker.on('error', (e) => this.fail(e))
    this.worker.on('exit', (code) => this.fail(new Error(`the hashing worker exited (${code})`)))
  }

  /** A new file whose sha256 the leaves given with it feed. */
  openFile(): number {
    return this.nextFile++
  }

  /** The block's sha256; with `file`, its bytes are also the next part of that file. */
  block(bytes: Uint8Array, file?: number): Promise<Uint8Array> {
    const slot = bytes.length <= SLOT_BYTES ? this.free.pop() : undefined
    if (slot === undefined) return this.ask({ bytes, file: file ?? -1 })
    new Uint8Array(this.slots, slot * SLOT_BYTES, bytes.length).set(bytes)
    const answer = this.ask({ slot, length: bytes.length, file: file ?? -1 })
    // The slot is free again once the worker has answered (it hashes in order, then replies).
    answer.then(
      () => this.free.push(slot),
      () => {},
    )
    return answer
  }

  /** The sha256 of everything given to `file`, which ends. */
  closeFile(file: number): Promise<Uint8Array> {
    return this.ask({ close: file })
  }

  /** Ends the worker; answers still due are refused. */
  async stop(): Promise<void> {
    this.failed ??= new Error('the hashing worker was stopped')
    await this.worker.terminate()
    this.fail(this.failed)
  }

  private ask(request: LeafHashRequest): Promise<Uint8Array> {
    if (this.failed) return Promise.reject(this.failed)
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject })
      this.worker.postMessage(request)
    })
  }

  private fail(e: Error): void {
    this.failed ??= e
    for (const w of this.waiting.splice(0)) w.reject(this.failed)
  }
}
