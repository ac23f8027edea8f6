/**
 * How the network layer logs: a plain function, so that it needs no logger of
 * the node's (tests and benchmarks pass their own or none).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type Log = (level: LogLevel, event: string, fields?: object) => void

export function noLog(): void {}

export function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err)
}
