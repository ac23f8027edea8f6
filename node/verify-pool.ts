/**
 * Record verification on worker threads, for batches (sync catch-up).
 *
 * Why: checking a record's signature is most of what ingesting it costs
 * (about 95 µs of OpenSSL per Ed25519 verification on the machines we
 * measured), and a catching-up node ingests records by the tens of thousands.
 * Workers do the full check (`decodeRecord`) in parallel; the main thread
 * only decodes the bytes they passed (`decodeOwnRecord`, no signature) and
 * applies the node's policy. The verdict is the same as `decodeRecord` on the
 * main thread would give: the workers run that very function.
 *
 * The worker file sits next to this module: `verify-worker.js` in the
 * compiled tree and in the bundle (scripts/bundle.mjs builds it there), the
 * `.ts` source through tsx when running from sources (tests).
 */
import { availableParallelism } from 'node:os'
import type { CID } from 'multiformats/cid'
import type { VerifyAnswer, VerifyVerdict } from './verify-worker.js'
import { startWorker } from './worker-thread.js'

export type { VerifyVerdict }

/** Records per message to a worker: large enough to amortise the message, small enough to spread. */
const CHUNK = 128

export interface VerifyPool {
  readonly size: number
  /** A verdict per record, in order: null when `decodeRecord` would accept it. */
  verify(records: readonly Uint8Array[]): Promise<VerifyVerdict[]>
  close(): Promise<void>
}

export function createVerifyPool(
  federation: CID,
  size = Math.max(1, Math.min(4, availableParallelism())),
): VerifyPool {
  const pending = new Map<
    number,
    { resolve: (v: readonly VerifyVerdict[]) => void; reject: (e: Error) => void }
  >()
  let nextId = 0
  let turn = 0
  let closed = false
  const workers = Array.from({ length: size }, () => {
    const w = startWorker(import.meta.url, 'verify-worker', { federation: federation.toString() })
    w.on('message', (answer: VerifyAnswer) => {
      const p = pending.get(answer.id)
      pending.delete(answer.id)
      if (pending.size === 0) for (const x of workers) x.unref()
      p?.resolve(answer.verdicts)
    })
    w.on('error', (e) => {
      for (const p of pending.values()) p.reject(e)
      pending.clear()
    })
    // Idle workers must not keep the process alive.
    w.unref()
    return w
  })

  const send = (records: readonly Uint8Array[]) =>
    new Promise<readonly VerifyVerdict[]>((resolve, reject) => {
      const id = nextId++
      pending.set(id, { resolve, reject })
      const w = workers[turn++ % workers.length]!
      // Busy workers keep the process alive until they answer; idle ones do not.
      w.ref()
      w.postMessage({ id, records })
    })

  return {
    size,
    async verify(records) {
      if (closed) throw new Error('the verify pool is closed')
      const parts: Promise<readonly VerifyVerdict[]>[] = []
      for (let i = 0; i < records.length; i += CHUNK) parts.push(send(records.slice(i, i + CHUNK)))
      return (await Promise.all(parts)).flat()
    },
    async close() {
      closed = true
      await Promise.all(workers.map((w) => w.terminate()))
    },
  }
}
