/**
 * A worker thread of the file hashing pool (hash-pool.ts says why there is one): it reads one
 * file at a time and answers with its size and, as asked, its sha256 and the sha256 of each
 * chunk (the digests of the profile's raw leaves). Only node builtins, so the thread starts fast.
 *
 * Reads are synchronous: this thread does nothing else, and a read from the page cache costs less
 * than a hop to the libuv thread pool. The open is `O_NOFOLLOW | O_NONBLOCK` and the file must
 * still be a regular file, as `readChunks` (directory.ts) requires; a file that grew or shrank
 * since it was listed is `file-changed`. An abort (a shared flag, set by the pool) is noticed
 * between chunks.
 */
import { createHash } from 'node:crypto'
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'
import { fileStamp } from './file-stamp.js'

export interface HashWorkerData {
  /** One Int32: set to 1 to abort every read. */
  readonly abort: SharedArrayBuffer
  /** The chunk size (the profile's 1 MiB). */
  readonly chunkBytes: number
}

export interface HashRequest {
  readonly id: number
  /** Where to read (a path as bytes: names need not be UTF-8 on disk). */
  readonly location: Uint8Array
  /** The manifest path, for messages. */
  readonly path: string
  /** The size when listed. */
  readonly size: number
  /** The sha256 of the file. */
  readonly whole: boolean
  /** The sha256 of each chunk. */
  readonly leaves: boolean
}

export interface HashDone {
  readonly size: number
  /** When asked. */
  readonly sha256?: Uint8Array
  /** 32 bytes per chunk, in order (one chunk, empty, for an empty file); when asked. */
  readonly leaves?: Uint8Array
  /** Device, inode, size and mtime (ns) at open: a later read can tell whether the file changed. */
  readonly stamp: string
}

export type HashAnswer =
  | { readonly id: number; readonly progress: number }
  | { readonly id: number; readonly done: HashDone }
  | { readonly id: number; readonly error: { readonly code: string; readonly message: string } }

/** Progress is reported every this many chunks. */
const PROGRESS_CHUNKS = 16

const { abort, chunkBytes } = workerData as HashWorkerData
const aborted = new Int32Array(abort)
const buffer = Buffer.allocUnsafe(chunkBytes)

class Fault extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

function errno(e: unknown): string {
  return (e as NodeJS.ErrnoException)?.code ?? String(e)
}

function hashFile(request: HashRequest, progress: (bytes: number) => void): HashDone {
  const { path } = request
  let fd: number
  try {
    fd = openSync(
      Buffer.from(request.location),
      constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW,
    )
  } catch (e) {
    throw new Fault('unreadable', `${path}: cannot open: ${errno(e)}`)
  }
  try {
    let stamp: string
    try {
      const st = fstatSync(fd, { bigint: true })
      if (!st.isFile()) throw new Fault('special-file', `${path} is no longer a regular file`)
      stamp = fileStamp(st)
    } catch (e) {
      if (e instanceof Fault) throw e
      throw new Fault('special-file', `${path} is no longer a regular file`)
    }
    const hash = createHash('sha256')
    const leaves: Buffer[] = []
    let size = 0
    let unreported = 0
    for (let chunks = 0; ; chunks++) {
      if (Atomics.load(aborted, 0) !== 0) throw new Fault('aborted', 'the operation was aborted')
      let n = 0
      try {
        while (n < chunkBytes) {
          const got = readSync(fd, buffer, n, chunkBytes - n, null)
          if (got === 0) break
          n += got
        }
      } catch (e) {
        throw new Fault('unreadable', `${path}: read failed: ${errno(e)}`)
      }
      const chunk = n === chunkBytes ? buffer : buffer.subarray(0, n)
      if (request.whole) hash.update(chunk)
      // An empty file is one empty leaf; otherwise a short read is the last chunk.
      if (request.leaves && (n > 0 || size === 0)) leaves.push(createHash('sha256').update(chunk).digest())
      size += n
      unreported += n
      if (chunks % PROGRESS_CHUNKS === PROGRESS_CHUNKS - 1) {
        progress(unreported)
        unreported = 0
      }
      if (n < chunkBytes) break
    }
    if (unreported > 0) progress(unreported)
    if (size !== request.size) {
      throw new Fault('file-changed', `${path} changed while it was read (${request.size} → ${size} bytes)`)
    }
    return {
      size,
      ...(request.whole ? { sha256: new Uint8Array(hash.digest()) } : {}),
      ...(request.leaves ? { leaves: new Uint8Array(Buffer.concat(leaves)) } : {}),
      stamp,
    }
  } finally {
    closeSync(fd)
  }
}

parentPort!.on('message', (request: HashRequest) => {
  const post = (answer: HashAnswer) => parentPort!.postMessage(answer)
  try {
    post({ id: request.id, done: hashFile(request, (progress) => post({ id: request.id, progress })) })
  } catch (e) {
    const error =
      e instanceof Fault
        ? { code: e.code, message: e.message }
        : { code: 'unreadable', message: `${request.path}: ${(e as Error)?.message ?? String(e)}` }
    post({ id: request.id, error })
  }
})
