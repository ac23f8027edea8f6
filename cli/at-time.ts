/**
 * `--at TIME`: the moment a certificate is verified as of, the verifier's `now` (protocol/SPEC.md
 * §12.2), so an auditor can ask "was this certificate valid at T?" (docs/adr/0026).
 *
 * Only forms with one meaning are accepted: milliseconds since the epoch, a date (midnight UTC),
 * or a date and time with its offset (`Z` or `±hh:mm`). A time without an offset would be read in
 * this computer's time zone, and two auditors would get two answers.
 */
import { usage } from './context.js'

const ISO_8601 =
  /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3})\d*)?)?(Z|[+-]\d{2}:\d{2})?)?$/

/** The ms since the epoch `text` names; a usage error (exit 2) saying the accepted forms otherwise. */
export function parseAt(text: string): number {
  const given = text.trim()
  if (/^\d+$/.test(given)) {
    const ms = Number(given)
    if (Number.isSafeInteger(ms)) return ms
  }
  const ms = isoMs(given.toUpperCase())
  if (ms === undefined)
    throw usage(
      `--at: not a time: "${text}" (use ISO 8601 with an offset, e.g. 2025-05-01T12:00:00Z, a date such as 2025-05-01 for midnight UTC, or ms since 1970)`,
    )
  return ms
}

/** The instant of an ISO 8601 text, or undefined when it is malformed, has no offset, or names no real day. */
function isoMs(text: string): number | undefined {
  const m = ISO_8601.exec(text)
  if (!m) return undefined
  const [, year, month, day, hour, minute, second, fraction, offset] = m
  if (hour !== undefined && offset === undefined) return undefined
  const fields = [year, month, day, hour ?? '0', minute ?? '0', second ?? '0'].map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ]
  const [y, mo, d, h, mi, s] = fields
  const local = Date.UTC(y, mo - 1, d, h, mi, s, Number((fraction ?? '').padEnd(3, '0')))
  // Date.UTC rolls 2025-02-30 over into March: a day that does not exist comes back changed.
  const back = new Date(local)
  if (back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d)
    return undefined
  if (back.getUTCHours() !== h || back.getUTCMinutes() !== mi || back.getUTCSeconds() !== s) return undefined
  return local - offsetMs(offset)
}

/** `+02:00` → 2 h; `Z` or none → 0. */
function offsetMs(offset: string | undefined): number {
  if (offset === undefined || offset === 'Z') return 0
  const sign = offset.startsWith('-') ? -1 : 1
  const [hours, minutes] = offset.slice(1).split(':').map(Number) as [number, number]
  return sign * (hours * 3_600_000 + minutes * 60_000)
}

/** An instant as ISO 8601 in UTC, or as ms when Date cannot show it. */
export function instantText(ms: number): string {
  const date = new Date(ms)
  return Number.isNaN(date.getTime()) ? `${ms} ms after 1970` : date.toISOString()
}

/** A verified checkpoint's times, as the verdict gives them (`age` counts from when it could be signed). */
export interface CheckpointTimes {
  readonly height: number
  readonly epoch: number
  readonly age: number
}

/**
 * The problems of a verification made as of `at`, worded for it: a checkpoint dated past `at`
 * did not exist yet then, and is refused (`cert-future`) even within the clock skew the
 * verifier allows, since the time was given and no clock was read; the clock of this computer
 * has nothing to do with it.
 */
export function problemsAsOf<P extends { readonly code: string; readonly message: string }>(
  problems: readonly P[],
  at: number,
  checkpoint: CheckpointTimes | undefined,
): (P | { readonly code: 'cert-future'; readonly message: string })[] {
  if (checkpoint === undefined) return [...problems]
  const worded = problems.map((p) =>
    p.code === 'cert-future' ? { ...p, message: notYetAt(at, checkpoint) } : p,
  )
  // `age` counts from the earliest time an honest steward signs it: below zero, not yet at `at`.
  if (checkpoint.age < 0 && !worded.some((p) => p.code === 'cert-future'))
    return [...worded, { code: 'cert-future', message: notYetAt(at, checkpoint) }]
  return worded
}

function notYetAt(at: number, checkpoint: CheckpointTimes): string {
  const signable = at - checkpoint.age
  return `the checkpoint (height ${checkpoint.height}, epoch ${instantText(checkpoint.epoch)}) did not exist yet at ${instantText(at)}: no steward could sign it before ${instantText(signable)}`
}
