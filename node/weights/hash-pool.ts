/**
 * Hashing a model's files on worker threads, several files at once (`verify`,
 * `model publish`).
 *
 * Why: sha256 through OpenSSL runs at about 2 GB/s on one core, so a model of tens of GiB is
 * bound by hashing, and node:crypto hashes on the calling thread. Models come as several shards
 * of similar size, so hashing files side by side on every core divides the wait by the number of
 * cores; one file's sha256 is sequential and stays on one thread. Files are handed out largest
 * first, each to the next idle worker, which keeps the threads busy to the end.
 *
 * The workers (hash-worker.ts) are those of node/worker-pool.ts.
 *
 * Each file gets an outcome, never a throw: its digest, or the typed error that reading it
 * raised (`unreadable`, `special-file`, `file-changed`, `aborted`). Files not started when the
 * signal fires are `aborted` too. Only a worker that dies is an exception.
 */
import { availableParallelism } from 'node:os'
import { NodeError } from '../errors.js'
import { startChannels, type WorkerChannel } from '../worker-pool.js'
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

function hashRequest(file: HashableFile, id: number, options: HashFilesOptions): HashRequest {
  return {
    id,
    location: file.location,
    path: file.path,
    size: file.size,
    whole: options.whole !== false,
    leaves: options.leaves === true,
  }
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
  const workers = startChannels<HashRequest, HashAnswer>(
    import.meta.url,
    'hash-worker',
    { abort, chunkBytes: options.chunkBytes } satisfies HashWorkerData,
    threads,
    { what: 'a hashing worker', isNews: (answer) => 'progress' in answer },
  )
  const onNews = (news: HashAnswer) => {
    if ('progress' in news) options.onBytes?.(news.progress)
  }
  // Each worker takes the next file as soon as it is done with one, largest first.
  const drain = async (worker: WorkerChannel<HashRequest, HashAnswer>) => {
    for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
      if (flag[0] !== 0) {
        outcomes[i] = failure('aborted', 'the operation was aborted')
        continue
      }
      const answer = await worker.ask(hashRequest(files[i]!, i, options), onNews)
      if ('done' in answer) outcomes[i] = { ok: true, digest: answer.done }
      else if ('error' in answer) outcomes[i] = failure(answer.error.code, answer.error.message)
    }
  }
  try {
    await Promise.all(workers.map(drain))
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
    await Promise.all(workers.map((w) => w.stop()))
  }
  return outcomes.map((o) => o ?? failure('aborted', 'the operation was aborted'))
}
