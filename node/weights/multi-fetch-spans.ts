/**
 * The byte spans of a file a fetch has written and checked, sorted and disjoint (a resumed fetch
 * asks only for what is missing). Why by byte range: docs/adr/0030-multi-source-fetch.md.
 */
import type { ByteSpan } from './gateway-range.js'

export type { ByteSpan }

export class SpanSet {
  private spans: ByteSpan[] = []

  constructor(initial: readonly ByteSpan[] = []) {
    for (const span of initial) this.add(span.start, span.end)
  }

  /** Adds `[start, end)`, merged with the spans it meets or touches. */
  add(start: number, end: number): void {
    if (end <= start) return
    const merged: ByteSpan[] = []
    let joined = { start, end }
    let placed = false
    for (const span of this.spans) {
      if (span.end < joined.start) merged.push(span)
      else if (span.start > joined.end) {
        if (!placed) merged.push(joined)
        placed = true
        merged.push(span)
      } else joined = { start: Math.min(span.start, joined.start), end: Math.max(span.end, joined.end) }
    }
    if (!placed) merged.push(joined)
    this.spans = merged
  }

  /** Bytes covered. */
  get bytes(): number {
    return this.spans.reduce((n, s) => n + s.end - s.start, 0)
  }

  /** Where the run of covered bytes from byte 0 ends (0 when byte 0 is not covered). */
  get prefixEnd(): number {
    const first = this.spans[0]
    return first !== undefined && first.start === 0 ? first.end : 0
  }

  list(): readonly ByteSpan[] {
    return this.spans
  }

  /** The parts of `span` not covered, in order. */
  missing(span: ByteSpan): ByteSpan[] {
    const gaps: ByteSpan[] = []
    let at = span.start
    for (const s of this.spans) {
      if (s.end <= at) continue
      if (s.start >= span.end) break
      if (s.start > at) gaps.push({ start: at, end: s.start })
      at = Math.max(at, s.end)
    }
    if (at < span.end) gaps.push({ start: at, end: span.end })
    return gaps
  }
}
