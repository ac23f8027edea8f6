/**
 * The one error type of the sync core (`/allmende/sync/1.0.0`): every fault
 * in bytes received from a peer (a reconciliation message, a frame, a tagged
 * sync message) surfaces as a `SyncError` with a stable `code`, never as a
 * TypeError or RangeError from deep inside a parser.
 *
 * It is a `NodeError` (same root, `isNodeError` holds) so the HTTP API and
 * the CLI map it like any other node error; `isSyncError` tells it apart.
 * Local misuse (a wrong-length id passed to `add`, a bad option) is a
 * programming error and throws `TypeError`/`RangeError` as usual.
 */
import { NodeError } from '../errors.js'

export type SyncErrorCode =
  /** Bytes that do not follow the format: truncated, out of order, unknown mode, trailing garbage… */
  | 'sync-malformed'
  /** A frame or message longer than the agreed maximum. */
  | 'sync-oversize'
  /** A reconciliation message for a protocol version this node does not speak. */
  | 'sync-version'
  /** The peer did not send the next frame in time. */
  | 'sync-timeout'
  /** The peer sent records that fail the checks on their bytes (an honest peer holds none). */
  | 'sync-invalid'
  /** The peer went past a session's or its own byte or frame budget (ledger.ts). */
  | 'sync-budget'
  /** The peer sent list blocks nothing held names, past the ban threshold (ledger.ts). */
  | 'sync-junk'

export class SyncError extends NodeError {
  declare readonly code: SyncErrorCode

  constructor(code: SyncErrorCode, message: string) {
    super(code, message, { status: 400 })
  }
}

export function isSyncError(e: unknown): e is SyncError {
  return e instanceof SyncError
}

export function malformed(message: string): SyncError {
  return new SyncError('sync-malformed', message)
}
