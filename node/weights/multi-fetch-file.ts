/**
 * One file of a multi-source fetch on disk: `<target>.partial`, sized to the file at the start
 * and written in place wherever checked blocks land, its journal of written spans beside it
 * (multi-fetch-journal.ts), and its sha256 taken behind the writes in file order. `finish` checks
 * size and sha256 against the manifest, then renames it to `<target>`. One copy on disk, never a
 * second (docs/adr/0030-multi-source-fetch.md).
 */
import { type FileHandle, mkdir, open, rename, rm, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { equalBytes } from '../../protocol/bytes.js'
import { NodeError } from '../errors.js'
import { type FetchHasher, FILE_SLOT_BYTES } from './multi-fetch-hasher.js'
import { type JournalKey, readJournal, writeJournal } from './multi-fetch-journal.js'
import { type ByteSpan, SpanSet } from './multi-fetch-spans.js'

/** A file to fetch: the manifest's path, size and sha256, and where it goes. */
export interface TargetFile {
  readonly path: string
  readonly size: number
  readonly sha256: Uint8Array
  /** The absolute path it is written to (checked by the caller to lie inside the directory). */
  readonly target: string
}

/** Written bytes between two journal writes: what a cut can cost to fetch again. */
const JOURNAL_EVERY_BYTES = 4 * 1024 * 1024

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex')

export class PartialFile {
  private readonly done: SpanSet
  private unjournaled = 0
  private journaling: Promise<void> = Promise.resolve()
  /** The sha256 is taken up to here. */
  private hashedTo = 0
  /** …and asked for up to here. */
  private following = 0
  private hashing: Promise<void> = Promise.resolve()
  private hashFailed: { error: unknown } | undefined
  private readonly hashFile: number
  /** Being checked and renamed (or closed): `close` leaves it to `finish`. */
  private ended = false
  /** Bytes found written by an earlier run. */
  readonly resumed: number

  private constructor(
    readonly file: TargetFile,
    private readonly handle: FileHandle,
    private readonly key: JournalKey,
    done: readonly ByteSpan[],
    private readonly hasher: FetchHasher,
  ) {
    this.done = new SpanSet(done)
    this.resumed = this.done.bytes
    this.hashFile = hasher.openFile()
  }

  /** Opens `<target>.partial`, keeping what its journal says is written, or starting it afresh. */
  static async open(file: TargetFile, weights: string, hasher: FetchHasher): Promise<PartialFile> {
    const key: JournalKey = { weights, path: file.path, size: file.size, sha256: hex(file.sha256) }
    const partial = `${file.target}.partial`
    await mkdir(dirname(file.target), { recursive: true })
    const st = await stat(partial).catch(() => undefined)
    const journaled =
      st?.isFile() && st.size === file.size ? await readJournal(journalOf(file), key) : undefined
    const handle = await open(partial, journaled ? 'r+' : 'w+')
    try {
      if (!journaled) await handle.truncate(file.size)
    } catch (e) {
      await handle.close()
      throw e
    }
    const opened = new PartialFile(file, handle, key, journaled ?? [], hasher)
    opened.follow()
    return opened
  }

  get complete(): boolean {
    return this.done.prefixEnd === this.file.size
  }

  missing(span: ByteSpan): ByteSpan[] {
    return this.done.missing(span)
  }

  /** Writes checked bytes at `at` (they are recorded as done by `markDone`). */
  async write(bytes: Uint8Array, at: number): Promise<void> {
    let written = 0
    while (written < bytes.length) {
      const r = await this.handle.write(bytes, written, bytes.length - written, at + written)
      written += r.bytesWritten
    }
  }

  /** `length` bytes from `from` copied to `to` (a block the stream sent once for two places). */
  async copy(from: number, to: number, length: number): Promise<void> {
    const bytes = new Uint8Array(length)
    const { bytesRead } = await this.handle.read(bytes, 0, length, from)
    if (bytesRead !== length)
      throw new NodeError('fetch-failed', `${this.file.path}: cannot read back byte ${from}`)
    await this.write(bytes, to)
  }

  /** `[start, end)` is written and checked: journaled now and then, hashed in order. */
  markDone(start: number, end: number): void {
    this.done.add(start, end)
    this.unjournaled += end - start
    if (this.unjournaled >= JOURNAL_EVERY_BYTES) void this.journal().catch(() => {})
    // Hashed a file read's worth at a time (the rest by `finish`).
    if (this.done.prefixEnd - this.following >= FILE_SLOT_BYTES) this.follow()
  }

  /** Writes the journal (one write at a time, the latest spans). */
  journal(): Promise<void> {
    this.unjournaled = 0
    this.journaling = this.journaling.then(() =>
      writeJournal(journalOf(this.file), this.key, this.done.list()),
    )
    return this.journaling
  }

  /** Checks size and sha256 against the manifest and renames the file into place. */
  async finish(): Promise<void> {
    const { path, size, sha256, target } = this.file
    this.ended = true
    this.follow()
    await this.hashing
    if (this.hashFailed) throw this.hashFailed.error
    if (this.hashedTo !== size)
      throw new NodeError('fetch-failed', `${path}: only ${this.hashedTo} of ${size} bytes were written`)
    const digest = await this.hasher.closeFile(this.hashFile)
    await this.journaling.catch(() => {})
    await this.handle.close()
    if (!equalBytes(digest, sha256)) {
      await this.discard()
      throw new NodeError(
        'sha256-mismatch',
        `${path}: sha256 ${hex(digest)}, the manifest says ${hex(sha256)}`,
      )
    }
    await rename(`${target}.partial`, target)
    await rm(journalOf(this.file), { force: true })
  }

  /** Leaves the file to be resumed: its journal written, its handle closed. */
  async close(): Promise<void> {
    if (this.ended) return
    this.ended = true
    await this.journal().catch(() => {})
    await this.handle.close().catch(() => {})
  }

  private async discard(): Promise<void> {
    await rm(`${this.file.target}.partial`, { force: true })
    await rm(journalOf(this.file), { force: true })
  }

  /** Hashes the newly written run of bytes after `hashedTo`, behind the writes. */
  private follow(): void {
    this.following = this.done.prefixEnd
    this.hashing = this.hashing.then(async () => {
      if (this.hashFailed) return
      try {
        for (let end = this.done.prefixEnd; end > this.hashedTo; end = this.done.prefixEnd) {
          await this.hasher.feedFile(this.hashFile, this.handle, this.hashedTo, end)
          this.hashedTo = end
        }
      } catch (e) {
        this.hashFailed = { error: e }
      }
    })
  }
}

export function journalOf(file: TargetFile): string {
  return `${file.target}.partial.journal`
}
