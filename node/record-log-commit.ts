/**
 * The record log's group commit (see the invariants in node/record-log.ts):
 * appends queue their frames, and the frames that arrive while a write+fsync
 * is in flight go out together in the next one, resolving in order once
 * `fdatasync` returned. Also holds the open log's state it updates.
 */
import type { FileHandle } from 'node:fs/promises'
import type { NodeError } from './errors.js'
import { ioError } from './record-log-errors.js'
import { writeAll } from './record-log-frames.js'

/** Most bytes one batch writes (a batch holds at least one append, whatever its size). */
const MAX_BATCH_BYTES = 8 * 1024 * 1024
const DEFAULT_MAX_BATCH = 4096

interface Pending {
  /** One or more complete frames. */
  frames: Buffer
  records: number
  resolve: () => void
  reject: (error: Error) => void
}

/** An open log's state, shared by its appends, group commit, replay and close. */
export interface LogState {
  readonly fh: FileHandle
  /** The canonical path, the key in `openPaths`. */
  readonly fullPath: string
  /** The path as given, for messages and events. */
  readonly path: string
  /** Bytes up to the end of the last durable frame. */
  size: number
  /** Durable records. */
  count: number
  appends: number
  flushes: number
  /** Set by a failed write or fsync; later appends reject with it (see the invariants in node/record-log.ts). */
  broken: NodeError | undefined
  closing: Promise<void> | undefined
}

/** The write queue: appends that arrive while a write+fsync is in flight go out together in the next one. */
export interface GroupCommit {
  enqueue(frames: Buffer, records: number): Promise<void>
  /** The flush under way (or about to start), if any. */
  inFlight(): Promise<void> | undefined
}

export function createGroupCommit(
  state: LogState,
  options: { fsyncBatchMs?: number; maxBatch?: number },
  emit: (event: object) => void,
): GroupCommit {
  const batchDelay = Math.max(0, options.fsyncBatchMs ?? 0)
  const maxBatch = Math.max(1, Math.floor(options.maxBatch ?? DEFAULT_MAX_BATCH))
  let queue: Pending[] = []
  let queuedRecords = 0
  let flushing: Promise<void> | undefined

  function takeBatch(): Pending[] {
    let records = 0
    let bytes = 0
    let n = 0
    while (n < queue.length) {
      const p = queue[n]!
      if (n > 0 && (records + p.records > maxBatch || bytes + p.frames.length > MAX_BATCH_BYTES)) break
      records += p.records
      bytes += p.frames.length
      n++
    }
    const batch = queue.slice(0, n)
    queue = queue.slice(n)
    queuedRecords -= records
    return batch
  }

  async function flushLoop(): Promise<void> {
    const { fh, path } = state
    while (queue.length > 0) {
      if (batchDelay > 0 && queuedRecords < maxBatch && state.closing === undefined) {
        await new Promise((r) => setTimeout(r, batchDelay))
      }
      const batch = takeBatch()
      let data: Buffer | undefined
      let step = 'write'
      try {
        data = batch.length === 1 ? batch[0]!.frames : Buffer.concat(batch.map((p) => p.frames))
        await writeAll(fh, data, state.size)
        step = 'fdatasync'
        await fh.datasync()
      } catch (e) {
        // Poisoned: see the invariants in node/record-log.ts. Everything queued fails with the same error.
        const broken = ioError(path, step, e)
        state.broken = broken
        emit({ event: 'record-log-io-error', path, step, offset: state.size, error: broken.message })
        for (const p of [...batch, ...queue]) p.reject(broken)
        queue = []
        queuedRecords = 0
        return
      }
      let records = 0
      for (const p of batch) records += p.records
      state.size += data.length
      state.count += records
      state.appends += records
      state.flushes++
      for (const p of batch) p.resolve()
    }
  }

  function schedule(): void {
    if (flushing !== undefined) return
    flushing = new Promise<void>((r) => setImmediate(r)).then(flushLoop).finally(() => {
      flushing = undefined
      if (queue.length > 0) schedule()
    })
  }

  function enqueue(frames: Buffer, records: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      queue.push({ frames, records, resolve, reject })
      queuedRecords += records
      schedule()
    })
  }

  return { enqueue, inFlight: () => flushing }
}
