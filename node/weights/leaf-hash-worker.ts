/**
 * The worker of `LeafHasher` (leaf-hasher.ts): sha256 of each block it is sent, and of the files
 * whose leaves they are, in the order the messages come.
 */
import { createHash, type Hash } from 'node:crypto'
import { parentPort, workerData } from 'node:worker_threads'

export interface LeafHashWorkerData {
  /** Slots of `slotBytes` each, where the blocks to hash are copied. */
  readonly slots: SharedArrayBuffer
  readonly slotBytes: number
}

/**
 * A block to hash — in a slot of the shared buffer, or (larger than a slot) its own bytes — and,
 * with `file` ≥ 0, the next part of that file; or a file to end.
 */
export type LeafHashRequest =
  | { readonly slot: number; readonly length: number; readonly file: number }
  | { readonly bytes: Uint8Array; readonly file: number }
  | { readonly close: number }

/** One answer per request, in order: the block's or the file's sha256. */
export type LeafHashAnswer = Uint8Array

const { slots, slotBytes } = workerData as LeafHashWorkerData
const files = new Map<number, Hash>()
const port = parentPort!

port.on('message', (m: LeafHashRequest) => {
  if ('close' in m) {
    const hash = files.get(m.close) ?? createHash('sha256')
    files.delete(m.close)
    port.postMessage(hash.digest() satisfies LeafHashAnswer)
    return
  }
  const bytes = 'bytes' in m ? m.bytes : new Uint8Array(slots, m.slot * slotBytes, m.length)
  if (m.file >= 0) {
    let hash = files.get(m.file)
    if (hash === undefined) files.set(m.file, (hash = createHash('sha256')))
    hash.update(bytes)
  }
  port.postMessage(createHash('sha256').update(bytes).digest() satisfies LeafHashAnswer)
})
