/**
 * A worker of `LeafHasher` (leaf-hasher.ts): the sha256 of each block it is sent, or the files
 * whose parts they are, in the order the messages come.
 */
import { createHash, type Hash } from 'node:crypto'
import { parentPort, workerData } from 'node:worker_threads'

export interface LeafHashWorkerData {
  /** Slots of `slotBytes` each, where the blocks to hash are copied. */
  readonly slots: SharedArrayBuffer
  readonly slotBytes: number
}

/** Bytes to hash: in a slot of the shared buffer, or (larger than a slot) a copy of their own. */
export type LeafBytes = { readonly slot: number; readonly length: number } | { readonly bytes: Uint8Array }

/**
 * `digest`: answer the sha256 of `bytes`; `file` ≥ 0: they are also the next part of that file
 * (answered with null unless `digest`). `close`: answer the sha256 of that file, which ends.
 */
export type LeafHashRequest =
  | { readonly part: LeafBytes; readonly file: number; readonly digest: boolean }
  | { readonly close: number }

/** One answer per request, in order. */
export type LeafHashAnswer = Uint8Array | null

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
  const { part } = m
  const bytes = 'bytes' in part ? part.bytes : new Uint8Array(slots, part.slot * slotBytes, part.length)
  if (m.file >= 0) {
    let hash = files.get(m.file)
    if (hash === undefined) files.set(m.file, (hash = createHash('sha256')))
    hash.update(bytes)
  }
  port.postMessage((m.digest ? createHash('sha256').update(bytes).digest() : null) satisfies LeafHashAnswer)
})
