/**
 * Durations and sizes as people type them: `30s`, `5m`, `2h`, `7d`, `1w`, `250ms`, or a
 * plain number of milliseconds; `512MB`, `10GiB`, `2TB`, or a plain number of bytes.
 * A tiny exact parser (integers only: rules are integers, and `1.5h` is `90m`).
 */

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
}

/** Milliseconds of `text`, or undefined when it is not a duration. Compound forms (`1h30m`) are allowed. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim().toLowerCase()
  if (/^\d+$/.test(t)) return checked(Number(t))
  const re = /(\d+)(ms|s|m|h|d|w)/y
  let total = 0
  let matched = 0
  while (re.lastIndex < t.length) {
    const m = re.exec(t)
    if (!m) return undefined
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!
    matched++
  }
  return matched > 0 ? checked(total) : undefined
}

/** Bytes of `text` (`10GB`, `1TiB`, `4096`), or undefined. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+)\s*([a-z]*)$/i.exec(text.trim())
  if (!m) return undefined
  const unit = m[2]!.toLowerCase() || 'b'
  const factor = SIZE_UNITS[unit]
  return factor === undefined ? undefined : checked(Number(m[1]) * factor)
}

function checked(n: number): number | undefined {
  return Number.isSafeInteger(n) ? n : undefined
}

/** `90061000` → `1d1h1m1s`; `0` → `0s`. Sub-second parts only when the whole is under a second. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`
  let rest = Math.floor(ms / 1000)
  const parts: string[] = []
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    const n = Math.floor(rest / size)
    if (n > 0) parts.push(`${n}${unit}`)
    rest -= n * size
  }
  return parts.join('')
}
