/**
 * A worker of `LeafHasher` (leaf-hasher.ts): the sha256 of each block it is sent, or the files
 * whose parts they are, in the order the messages come.
 */
import { createHash, type Hash, timingSafeEqual } from 'node:crypto'
import { closeSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { parentPort, threadId, workerData } from 'node:worker_threads'

export interface LeafHashWorkerData {
  /** Slots of `slotBytes` each, where the blocks to hash are copied. */
  readonly slots: SharedArrayBuffer
  readonly slotBytes: number
}

/** Bytes to hash: in a slot of the shared buffer, or (larger than a slot) a copy of their own. */
export type LeafBytes = { readonly slot: number; readonly length: number } | { readonly bytes: Uint8Array }

/**
 * Where a block whose sha256 is `expected` is written once it hashes to that: the block file's
 * directory and name in the blockstore's layout (block-files.ts `locate`).
 */
export interface StoreAt {
  readonly expected: Uint8Array
  readonly directory: string
  readonly name: string
}

/**
 * `digest`: answer the sha256 of `bytes` (and with `store`, write them there if it matches);
 * `file` ≥ 0: they are also the next part of that file (answered with null unless `digest`).
 * `close`: answer the sha256 of that file, which ends.
 */
export type LeafHashRequest =
  | { readonly part: LeafBytes; readonly file: number; readonly digest: boolean; readonly store?: StoreAt }
  | { readonly close: number }

/** What a `store` request did: written, or why not (a digest other than expected is not written). */
export interface Stored {
  readonly digest: Uint8Array
  readonly written: boolean
  readonly error?: string
}

/** One answer per request, in order. */
export type LeafHashAnswer = Uint8Array | Stored | null

const { slots, slotBytes } = workerData as LeafHashWorkerData
const files = new Map<number, Hash>()
const port = parentPort!
const made = new Set<string>()
let writes = 0

/**
 * Writes a block file as BlockFiles.put does (a temporary file renamed over the name), with
 * synchronous calls: this thread does nothing else meanwhile, and the main thread's pool is spared.
 */
function write(bytes: Uint8Array, at: StoreAt): void {
  if (!made.has(at.directory)) {
    mkdirSync(at.directory, { recursive: true })
    made.add(at.directory)
  }
  const temporary = join(at.directory, `.${at.name}.${process.pid}.${threadId}.${writes++}.tmp`)
  try {
    const fd = openSync(temporary, 'wx')
    try {
      let written = 0
      while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written, written)
    } finally {
      closeSync(fd)
    }
    renameSync(temporary, join(at.directory, at.name))
  } catch (e) {
    try {
      unlinkSync(temporary)
    } catch {}
    throw e
  }
}

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
  if (!m.digest) {
    port.postMessage(null satisfies LeafHashAnswer)
    return
  }
  const digest = createHash('sha256').update(bytes).digest()
  if (m.store === undefined) {
    port.postMessage(digest satisfies LeafHashAnswer)
    return
  }
  const matches = digest.length === m.store.expected.length && timingSafeEqual(digest, m.store.expected)
  let answer: Stored = { digest, written: false }
  if (matches) {
    try {
      write(bytes, m.store)
      answer = { digest, written: true }
    } catch (e) {
      answer = { digest, written: false, error: (e as Error)?.message ?? String(e) }
    }
  }
  port.postMessage(answer satisfies LeafHashAnswer)
})
