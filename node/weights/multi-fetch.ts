/**
 * A model's files fetched from several trustless gateways at once, verified, resumable inside a
 * file, with one copy on disk (`allmende fetch`; built so a node's own fetch can take it too).
 *
 * Each file is split into byte ranges (`entity-bytes`, ADR 0027) of `unitBytes`; each source
 * takes the next range from one queue (multi-fetch-sources.ts). A range's blocks are checked
 * against their CIDs and written in place into `<file>.partial` (multi-fetch-range.ts,
 * multi-fetch-file.ts); a journal beside it records what is written, so a cut fetch asks only for
 * the rest. A file whose ranges are all written is checked (size, sha256 against the manifest,
 * taken behind the writes) and renamed into place. Sizes, counts and the measurements behind
 * them: docs/adr/0030-multi-source-fetch.md.
 */
import type { CID } from 'multiformats/cid'
import { NodeError } from '../errors.js'
import { PartialFile, type TargetFile } from './multi-fetch-file.js'
import { FetchHasher } from './multi-fetch-hasher.js'
import { collectorEvery } from './multi-fetch-memory.js'
import { fetchRange } from './multi-fetch-range.js'
import { type ResolvedFile, resolveFile } from './multi-fetch-resolve.js'
import { runOnSources, type SourceReport } from './multi-fetch-sources.js'
import type { ByteSpan } from './multi-fetch-spans.js'

export type { SourceReport, TargetFile }

/** A range per request: small enough to share a file among sources, large enough to stream. */
export const UNIT_BYTES = 32 * 1024 * 1024
/** Requests under way per source: one streams while the next one's answer starts. */
export const PER_SOURCE = 2
/** How long a source may send nothing before it is dropped: an idle timeout, not a total one. */
export const IDLE_MS = 20_000
/** Blocks read ahead of hashing and writing, across every source. */
const SLOTS = 8

export interface MultiFetchOptions {
  readonly weights: CID
  readonly files: readonly TargetFile[]
  /** Gateway base URLs (`http://host:port`), tried all at once. */
  readonly sources: readonly string[]
  readonly signal: AbortSignal
  readonly idleMs?: number
  readonly unitBytes?: number
  readonly perSource?: number
  /** Bytes of the files written, as they are (and those found written before, first). */
  readonly onBytes?: (bytes: number) => void
  readonly onDrop?: (source: string, error: unknown) => void
}

export interface MultiFetchResult {
  /** Bytes found written by an earlier, cut fetch and not fetched again. */
  readonly resumedBytes: number
  /** CAR bytes received from the sources, in completed ranges. */
  readonly receivedBytes: number
  readonly sources: readonly SourceReport[]
}

interface Unit {
  readonly file: PartialFile
  readonly span: ByteSpan
}

/** Fetches `files` into place; each is complete and checked when this resolves. */
export async function fetchFiles(given: MultiFetchOptions): Promise<MultiFetchResult> {
  const collect = collectorEvery()
  const onBytes = (n: number) => {
    collect(n)
    given.onBytes?.(n)
  }
  const options = { ...given, onBytes }
  const hasher = new FetchHasher(SLOTS)
  const partials: PartialFile[] = []
  const finishing = new Map<PartialFile, Promise<void>>()
  try {
    for (const f of options.files)
      partials.push(await PartialFile.open(f, options.weights.toString(), hasher))
    const resumedBytes = partials.reduce((n, p) => n + p.resumed, 0)
    if (resumedBytes > 0) options.onBytes?.(resumedBytes)
    const finish = (p: PartialFile) => {
      if (finishing.has(p)) return
      const finished = p.finish()
      finished.catch(() => {}) // awaited below; a failure must not go unhandled meanwhile
      finishing.set(p, finished)
    }
    const runUnit = unitRunner(options, hasher, (p) => p.complete && finish(p))
    const sources = await runOnSources<Unit>({
      sources: options.sources,
      units: partials.flatMap((p) => unitsOf(p, options.unitBytes ?? UNIT_BYTES)),
      perSource: options.perSource ?? PER_SOURCE,
      run: runUnit,
      remaining: (unit) => unit.file.missing(unit.span).map((span) => ({ file: unit.file, span })),
      signal: options.signal,
      ...(options.onDrop ? { onDrop: options.onDrop } : {}),
    })
    for (const p of partials) if (p.complete) finish(p)
    await Promise.all(finishing.values())
    const unfinished = partials.find((p) => !finishing.has(p))
    if (unfinished) throw new NodeError('fetch-failed', `${unfinished.file.path} was not fetched whole`)
    const receivedBytes = sources.reduce((n, s) => n + s.bytes, 0)
    return { resumedBytes, receivedBytes, sources }
  } finally {
    // A file being checked is left to its check; the others keep their journals for a resume.
    await Promise.allSettled(finishing.values())
    await Promise.all(partials.map((p) => p.close()))
    await hasher.stop()
  }
}

/** The missing spans of a file, cut into units; a file of no bytes still gets one (it is resolved). */
function unitsOf(file: PartialFile, unitBytes: number): Unit[] {
  const units: Unit[] = []
  const size = file.file.size
  for (const gap of file.missing({ start: 0, end: size })) {
    for (let start = gap.start; start < gap.end; start += unitBytes)
      units.push({ file, span: { start, end: Math.min(gap.end, start + unitBytes) } })
  }
  return units
}

/**
 * Runs a unit on a source: the file resolved first (once per file, by whichever source gets
 * there first; a failed resolution is tried again by the next), then its range.
 */
function unitRunner(
  options: MultiFetchOptions,
  hasher: FetchHasher,
  onWritten: (file: PartialFile) => void,
): (source: string, unit: Unit, signal: AbortSignal) => Promise<number> {
  const resolved = new Map<PartialFile, Promise<ResolvedFile>>()
  const idleMs = options.idleMs ?? IDLE_MS
  const resolve = (file: PartialFile, source: string, signal: AbortSignal) => {
    let found = resolved.get(file)
    if (found === undefined) {
      found = resolveFile({ source, weights: options.weights, path: file.file.path, signal, idleMs })
      found.catch(() => resolved.delete(file))
      resolved.set(file, found)
    }
    return found
  }
  // A file is finished only when no range of it is under way: an edge leaf may still be written.
  const underWay = new Map<PartialFile, number>()
  return async (source, unit, signal) => {
    const { file, span } = unit
    underWay.set(file, (underWay.get(file) ?? 0) + 1)
    try {
      const found = await resolve(file, source, signal)
      if (found.whole !== undefined && file.missing(span).length > 0)
        await writeWhole(file, found.whole, options)
      if (file.missing(span).length === 0) return 0
      const { weights, onBytes } = options
      return await fetchRange({
        source,
        weights,
        file,
        resolved: found,
        span,
        hasher,
        signal,
        idleMs,
        onWritten: onBytes,
      })
    } finally {
      const left = underWay.get(file)! - 1
      underWay.set(file, left)
      if (left === 0) onWritten(file)
    }
  }
}

/** A file of one raw block, checked by its resolution: written whole. */
async function writeWhole(file: PartialFile, bytes: Uint8Array, options: MultiFetchOptions): Promise<void> {
  if (bytes.length !== file.file.size)
    throw new NodeError(
      'size-mismatch',
      `${file.file.path}: the weights hold ${bytes.length} bytes, the manifest says ${file.file.size}`,
    )
  await file.write(bytes, 0)
  file.markDone(0, bytes.length)
  options.onBytes?.(bytes.length)
}
