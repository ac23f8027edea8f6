/**
 * Structured logs: one JSON object per line, `{t, level, event, ...fields}`,
 * to a writable stream (stderr by default). Levels: debug < info < warn < error.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error'
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 }

export interface Logger {
  readonly level: Level
  log(level: Level, event: string, fields?: Record<string, unknown>): void
  debug(event: string, fields?: Record<string, unknown>): void
  info(event: string, fields?: Record<string, unknown>): void
  warn(event: string, fields?: Record<string, unknown>): void
  error(event: string, fields?: Record<string, unknown>): void
}

export function isLevel(v: unknown): v is Level {
  return typeof v === 'string' && v in ORDER
}

export function createLogger(
  options: { level?: Level; write?: (line: string) => void; clock?: () => number; name?: string } = {},
): Logger {
  const level = options.level ?? 'info'
  const write = options.write ?? ((line: string) => process.stderr.write(line))
  const clock = options.clock ?? Date.now
  const log = (l: Level, event: string, fields: Record<string, unknown> = {}) => {
    if (ORDER[l] < ORDER[level]) return
    const entry: Record<string, unknown> = { t: new Date(clock()).toISOString(), level: l, event }
    if (options.name) entry.node = options.name
    for (const [k, v] of Object.entries(fields)) entry[k] = v instanceof Error ? v.message : v
    let line: string
    try {
      line = JSON.stringify(entry, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))
    } catch {
      line = JSON.stringify({ t: entry.t, level: l, event, note: 'fields not serialisable' })
    }
    write(`${line}\n`)
  }
  return {
    level,
    log,
    debug: (e, f) => log('debug', e, f),
    info: (e, f) => log('info', e, f),
    warn: (e, f) => log('warn', e, f),
    error: (e, f) => log('error', e, f),
  }
}

/** A logger that drops everything (tests that do not look at logs). */
export const silentLogger: Logger = createLogger({ level: 'error', write: () => {} })
