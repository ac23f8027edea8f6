/**
 * Results as data. Validation and the fold never throw on bad input: they
 * return `{ok: true, value}` or `{ok: false, code, message, path?}` where
 * `code` is one of the stable codes listed in SPEC.md §9.
 *
 * `ProtocolError` is the throwing variant for callers that prefer exceptions
 * (`unwrap`). Its `name` is stable; `code` carries the rejection code.
 */
import type { RejectionCode } from './codes.js'

export interface Rejection {
  readonly ok: false
  readonly code: RejectionCode
  readonly message: string
  /** Where in the record the problem is, e.g. `body.members[2].weight`. */
  readonly path?: string
}

export interface Accepted<T> {
  readonly ok: true
  readonly value: T
}

export type Result<T> = Accepted<T> | Rejection

export function ok<T>(value: T): Accepted<T> {
  return { ok: true, value }
}

export function reject(code: RejectionCode, message: string, path?: string): Rejection {
  return path === undefined ? { ok: false, code, message } : { ok: false, code, message, path }
}

export class ProtocolError extends Error {
  static override name = 'ProtocolError'
  override name = 'ProtocolError'
  readonly code: RejectionCode
  readonly path: string | undefined

  constructor(rejection: Rejection) {
    super(rejection.path ? `${rejection.message} (at ${rejection.path})` : rejection.message)
    this.code = rejection.code
    this.path = rejection.path
  }
}

/** Throwing variant: the value, or a ProtocolError carrying the rejection. */
export function unwrap<T>(result: Result<T>): T {
  if (result.ok) return result.value
  throw new ProtocolError(result)
}
