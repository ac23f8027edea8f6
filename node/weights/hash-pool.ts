/**
 * Hashing a model's files on worker threads, several files at once (DESIGN.md §7 `verify`,
 * `model publish`).
 *
 * Why: sha256 through OpenSSL runs at about 2 GB/s on one core, so a model of tens of GiB is
 * bound by hashing, and node:crypto hashes on the calling thread. Models come as several shards
 * of similar size, so hashing files side by side on every core divides the wait by the number of
 * cores; one file's sha256 is sequential and stays on one thread. Files are handed out largest
 * first, each to the next idle worker, which keeps the threads busy to the end.
 *
 * The worker (hash-worker.ts) sits next to this module: `hash-worker.js` in the compiled tree
 * and beside the bundle (scripts/bundle.mjs builds it there), the `.ts` source through tsx when
 * running from sources (tests), as for the record verification pool (node/verify-pool.ts).
 *
 * Each file gets an outcome, never a throw: its digest, or the typed error that reading it
 * raised (`unreadable`, `special-file`, `file-changed`, `aborted`). Files not started when the
 * signal fires are `aborted` too. Only a worker that dies is an exception.
 */
import { availableParallelism } from 'node:os'
import type { Worker } from 'node:worker_threads'
import { NodeError } from '../errors.js'
import { startWorker } from '../worker-thread.js'
import type { HashAnswer, HashDone, HashRequest, HashWorkerData } from './hash-worker.js'

export type { HashDone }

/** What the pool needs of a listed file (`LocalFile` of directory.ts). */
export interface HashableFile {
  readonly path: string
  readonly size: number
  readonly location: Uint8Array
}

export type HashOutcome =
  | { readonly ok: true; readonly digest: HashDone }
  | { readonly ok: false; readonly error: NodeError }

export interface HashFilesOptions {
  /** The sha256 of each file (default true). */
  readonly whole?: boolean
  /** The sha256 of each chunk of `chunkBytes`. */
  readonly leaves?: boolean
  readonly chunkBytes: number
  readonly signal?: AbortSignal | undefined
  /** Called as bytes are read, with the bytes since the last call. */
  readonly onBytes?: ((bytes: number) => void) | undefined
  /** Worker threads; default one per core, at most 8, never more than files. */
  readonly threads?: number
}

const STATUS: Record<string, number> = { aborted: 499, 'file-changed': 409 }

function failure(code: string, message: string): HashOutcome {
  return { ok: false, error: new NodeError(code, message, { status: STATUS[code] ?? 400 }) }
}

/** Hashes `files`; the outcomes are in the order of `files`. */
export async function hashFiles(
  files: readonly HashableFile[],
  options: HashFilesOptions,
): Promise<HashOutcome[]> {
  const outcomes: (HashOutcome | undefined)[] = files.map(() => undefined)
  const abortedAll = () => files.map(() => failure('aborted', 'the operation was aborted'))
  if (files.length === 0) return []
  if (options.signal?.aborted) return abortedAll()

  const abort = new SharedArrayBuffer(4)
  const flag = new Int32Array(abort)
  const onAbort = () => Atomics.store(flag, 0, 1)
  options.signal?.addEventListener('abort', onAbort, { once: true })
  const queue = files.map((_, i) => i).sort((a, b) => files[b]!.size - files[a]!.size || a - b)
  const threads = Math.max(1, Math.min(options.threads ?? Math.min(8, availableParallelism()), files.length))
  const workers: Worker[] = []
  try {
    await new Promise<void>((resolve, reject) => {
      let running = 0
      let failed = false
      const next = (w: Worker) => {
        const i = queue.shift()
        if (i === undefined || failed) {
          if (--running === 0) resolve()
          return
        }
        if (flag[0] !== 0) {
          outcomes[i] = failure('aborted', 'the operation was aborted')
          next(w)
          return
        }
        const f = files[i]!
        const request: HashRequest = {
          id: i,
          location: f.location,
          path: f.path,
          size: f.size,
          whole: options.whole !== false,
          leaves: options.leaves === true,
        }
        w.postMessage(request)
      }
      for (let t = 0; t < threads; t++) {
        const w = startWorker(import.meta.url, 'hash-worker', {
          abort,
          chunkBytes: options.chunkBytes,
        } satisfies HashWorkerData)
        workers.push(w)
        running++
        w.on('message', (answer: HashAnswer) => {
          if ('progress' in answer) {
            options.onBytes?.(answer.progress)
            return
          }
          outcomes[answer.id] =
            'done' in answer
              ? { ok: true, digest: answer.done }
              : failure(answer.error.code, answer.error.message)
          next(w)
        })
        w.on('error', (e) => {
          failed = true
          reject(e)
        })
        // Workers are only terminated once every file has an outcome: an exit before is a fault.
        w.on('exit', (code) => {
          failed = true
          reject(new Error(`a hashing worker exited (${code}) before its files were hashed`))
        })
        next(w)
      }
    })
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
    for (const w of workers) w.removeAllListeners('exit')
    await Promise.all(workers.map((w) => w.terminate()))
  }
  return outcomes.map((o) => o ?? failure('aborted', 'the operation was aborted'))
}
