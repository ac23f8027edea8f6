/**
 * The record log's errors (see node/record-log.ts): the codes it rejects
 * with, the HTTP status of each, and the shape of an I/O failure.
 */
import { NodeError } from './errors.js'

/** The codes of the NodeErrors (node/errors.ts) this module rejects with. */
export type RecordLogErrorCode =
  | 'record-log-closed'
  | 'record-log-io'
  | 'record-log-format'
  | 'record-log-corrupt'
  | 'record-log-invalid'
  | 'record-log-busy'
  | 'record-log-locked'

/** HTTP status for each code, should one reach the API: closing is 503, a bad record 400, the rest 500. */
const STATUS: Readonly<Record<RecordLogErrorCode, number>> = {
  'record-log-closed': 503,
  'record-log-invalid': 400,
  'record-log-io': 500,
  'record-log-format': 500,
  'record-log-corrupt': 500,
  'record-log-busy': 500,
  'record-log-locked': 500,
}

export function failure(code: RecordLogErrorCode, message: string, cause?: unknown): NodeError {
  return new NodeError(
    code,
    message,
    cause === undefined ? { status: STATUS[code] } : { status: STATUS[code], cause },
  )
}

/** A failed step on the log's file, naming the path and the step. */
export function ioError(path: string, what: string, cause: unknown): NodeError {
  const reason = cause instanceof Error ? cause.message : String(cause)
  return failure('record-log-io', `record log ${path}: ${what} failed: ${reason}`, cause)
}

/** The `code` of a failed file-system call (`EEXIST`, `ENOENT`, ...), if it has one. */
export function errorCode(e: unknown): string | undefined {
  return (e as { code?: unknown } | null)?.code as string | undefined
}
