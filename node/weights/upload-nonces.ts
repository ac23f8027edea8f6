/**
 * The nonces of upload statements a node has taken (SPEC.md §7), kept so that a statement is
 * used once: a statement seen on the wire (or logged by a proxy) cannot be sent again, to this
 * node or, since it names the node, to another.
 *
 * A nonce is kept until its statement can no longer be fresh (`at + windowMs`), then forgotten:
 * an older statement is refused as stale anyway. The set is bounded (`maxEntries`); a node that
 * took that many statements within one window refuses more until some expire, rather than forget
 * a nonce that could still be replayed.
 *
 * Durable: `HOME/upload-nonces` holds one 24-byte entry per nonce, `u64be(expiresAt) ‖ nonce`,
 * appended and fdatasync'd before `take` resolves — the upload's first byte is stored only after
 * that, so a node killed and restarted still refuses the replay. On open, expired entries are
 * dropped (the file is rewritten with the live ones: temp file, fsync, rename) and a torn last
 * entry is ignored; an entry expiring further ahead than the window allows (a damaged file) is
 * dropped too. While running, the file is rewritten the same way once it holds twice
 * `maxEntries` entries, so it stays bounded.
 */
import { type FileHandle, open, readFile, rm } from 'node:fs/promises'
import { UPLOAD_NONCE_BYTES } from '../../protocol/index.js'
import { NodeError } from '../errors.js'
import { writeAtomic } from '../files.js'

const ENTRY_BYTES = 8 + UPLOAD_NONCE_BYTES

/** At most this many live nonces: 65,536 uploads in one window is far beyond any publisher's need. */
export const DEFAULT_MAX_NONCES = 65_536

export interface UploadNonces {
  /** Whether the nonce was taken and can still be replayed. */
  has(nonce: Uint8Array): boolean
  /**
   * Takes the nonce of a statement signed at `at`: reserved at once (a second `take` of it throws
   * `upload-replayed` even before this one resolves), resolved once it is on disk.
   */
  take(nonce: Uint8Array, at: number): Promise<void>
  close(): Promise<void>
}

export interface NonceOptions {
  readonly clock: () => number
  /** How long after `at` a statement can still be fresh. */
  readonly windowMs: number
  readonly maxEntries?: number
}

const keyOf = (nonce: Uint8Array) => Buffer.from(nonce).toString('hex')

function entry(expiresAt: number, nonce: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(ENTRY_BYTES)
  out.writeBigUInt64BE(BigInt(expiresAt), 0)
  out.set(nonce, 8)
  return out
}

/** The live entries of a nonce file: expiry in the future, and no further than the window allows. */
function liveEntries(bytes: Uint8Array, now: number, windowMs: number): Map<string, number> {
  const live = new Map<string, number>()
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  // A torn last entry (a crash mid-append) is shorter than ENTRY_BYTES: left out.
  for (let off = 0; off + ENTRY_BYTES <= view.length; off += ENTRY_BYTES) {
    const expiresAt = Number(view.readBigUInt64BE(off))
    if (expiresAt < now || expiresAt > now + 2 * windowMs) continue
    live.set(view.subarray(off + 8, off + ENTRY_BYTES).toString('hex'), expiresAt)
  }
  return live
}

/** Writes `live` as the whole file, atomically (node/files.ts's writeAtomic). */
async function rewrite(path: string, live: Map<string, number>): Promise<void> {
  const bytes = Buffer.concat([...live].map(([key, expiresAt]) => entry(expiresAt, Buffer.from(key, 'hex'))))
  await writeAtomic(path, bytes, { mode: 0o600 })
}

export async function openUploadNonces(path: string, options: NonceOptions): Promise<UploadNonces> {
  const { clock, windowMs } = options
  const maxEntries = options.maxEntries ?? DEFAULT_MAX_NONCES
  let bytes: Uint8Array = new Uint8Array()
  try {
    bytes = await readFile(path)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
  await rm(`${path}.tmp`, { force: true })
  const live = liveEntries(bytes, clock(), windowMs)
  await rewrite(path, live)
  let handle: FileHandle = await open(path, 'a', 0o600)
  let entriesInFile = live.size
  // Appends and rewrites one at a time; each take waits for its own entry's sync.
  let writing: Promise<void> = Promise.resolve()

  const forgetExpired = () => {
    const now = clock()
    for (const [key, expiresAt] of live) if (expiresAt < now) live.delete(key)
  }

  const append = async (expiresAt: number, nonce: Uint8Array) => {
    if (entriesInFile >= 2 * maxEntries) {
      forgetExpired()
      await handle.close()
      await rewrite(path, live)
      handle = await open(path, 'a', 0o600)
      entriesInFile = live.size
      // The entry being taken is in `live` already, so the rewrite wrote it.
      return
    }
    const bytes = entry(expiresAt, nonce)
    await handle.write(bytes, 0, bytes.length)
    await handle.datasync()
    entriesInFile++
  }

  const has = (nonce: Uint8Array): boolean => {
    const expiresAt = live.get(keyOf(nonce))
    return expiresAt !== undefined && expiresAt >= clock()
  }

  return {
    has,
    take(nonce, at) {
      const key = keyOf(nonce)
      if (has(nonce))
        return Promise.reject(
          new NodeError('upload-replayed', 'this upload statement was used before: sign a new one', {
            status: 401,
          }),
        )
      if (live.size >= maxEntries) forgetExpired()
      if (live.size >= maxEntries)
        return Promise.reject(
          new NodeError(
            'upload-replay-cache-full',
            `this node took ${maxEntries} upload statements in the last ${windowMs / 60_000} minutes; try again in a few minutes`,
            { status: 503 },
          ),
        )
      const expiresAt = at + windowMs
      live.set(key, expiresAt)
      const written = writing.then(() => append(expiresAt, nonce))
      writing = written.catch(() => {})
      return written
    },
    async close() {
      await writing
      await handle.close()
    },
  }
}
