/**
 * The journal beside a `.partial` file: which byte spans of it are written and checked, so a cut
 * fetch resumes inside the file (docs/adr/0030-multi-source-fetch.md). It names the file it is
 * for (weights root, path, size, sha256); a journal for anything else, malformed or over
 * MAX_JOURNAL_BYTES is not read, and the file starts again. It is written to a temporary name and
 * renamed, so a cut leaves the old journal or the new one, never half of one.
 */
import { readFile, rename, stat, writeFile } from 'node:fs/promises'
import type { ByteSpan } from './multi-fetch-spans.js'

/** A journal is a few spans; more than this is not one of ours. */
export const MAX_JOURNAL_BYTES = 64 * 1024

/** What a journal is for: it is read only for exactly this file. */
export interface JournalKey {
  readonly weights: string
  readonly path: string
  readonly size: number
  /** Hex. */
  readonly sha256: string
}

interface JournalBody extends JournalKey {
  readonly version: 1
  readonly done: readonly (readonly [number, number])[]
}

/** The spans a journal records for `key`, or undefined when there is none to trust. */
export async function readJournal(path: string, key: JournalKey): Promise<ByteSpan[] | undefined> {
  const st = await stat(path).catch(() => undefined)
  if (!st?.isFile() || st.size > MAX_JOURNAL_BYTES) return undefined
  let body: Partial<JournalBody>
  try {
    body = JSON.parse(await readFile(path, 'utf8')) as Partial<JournalBody>
  } catch {
    return undefined
  }
  const sameFile =
    body.version === 1 &&
    body.weights === key.weights &&
    body.path === key.path &&
    body.size === key.size &&
    body.sha256 === key.sha256
  if (!sameFile || !Array.isArray(body.done)) return undefined
  const spans: ByteSpan[] = []
  for (const pair of body.done) {
    const [start, end] = Array.isArray(pair) ? pair : []
    const valid =
      Number.isSafeInteger(start) &&
      Number.isSafeInteger(end) &&
      start! >= 0 &&
      end! > start! &&
      end! <= key.size
    if (!valid) return undefined
    spans.push({ start: start!, end: end! })
  }
  return spans
}

/**
 * Records `done` for `key`. Spans that would take the journal over its bound are left out (from
 * the last): the fetch then asks for them again, which is only slower.
 */
export async function writeJournal(path: string, key: JournalKey, done: readonly ByteSpan[]): Promise<void> {
  let spans = done.map((s) => [s.start, s.end] as const)
  let text = encode(key, spans)
  while (Buffer.byteLength(text) > MAX_JOURNAL_BYTES && spans.length > 0) {
    spans = spans.slice(0, Math.floor(spans.length / 2))
    text = encode(key, spans)
  }
  const temporary = `${path}.tmp`
  await writeFile(temporary, text)
  await rename(temporary, path)
}

function encode(key: JournalKey, done: readonly (readonly [number, number])[]): string {
  const body: JournalBody = { version: 1, ...key, done }
  return JSON.stringify(body)
}
