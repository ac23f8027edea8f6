/**
 * Record verification on worker threads, for batches (sync catch-up).
 *
 * Why: checking a record's signature is most of what ingesting it costs (about 95 µs of OpenSSL
 * per Ed25519 verification on the machines we measured), and a catching-up node ingests records by
 * the tens of thousands. Workers do the full check (`decodeRecord`) in parallel; the main thread
 * only decodes the bytes they passed (`decodeOwnRecord`, no signature) and applies the node's
 * policy. The verdict is the same as `decodeRecord` on the main thread would give: the workers run
 * that very function. The workers are those of node/worker-pool.ts.
 */
import { availableParallelism } from 'node:os'
import type { CID } from 'multiformats/cid'
import type { VerifyAnswer, VerifyRequest, VerifyVerdict } from './verify-worker.js'
import { startChannels } from './worker-pool.js'

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
  const workers = startChannels<VerifyRequest, VerifyAnswer>(
    import.meta.url,
    'verify-worker',
    { federation: federation.toString() },
    size,
    // Idle workers must not keep the process alive.
    { what: 'a record verification worker', unrefWhenIdle: true },
  )
  let turn = 0
  let closed = false
  return {
    size,
    async verify(records) {
      if (closed) throw new Error('the verify pool is closed')
      const parts: Promise<VerifyAnswer>[] = []
      for (let i = 0; i < records.length; i += CHUNK)
        parts.push(workers[turn++ % workers.length]!.ask({ records: records.slice(i, i + CHUNK) }))
      return (await Promise.all(parts)).flat()
    },
    async close() {
      closed = true
      await Promise.all(workers.map((w) => w.stop()))
    },
  }
}
