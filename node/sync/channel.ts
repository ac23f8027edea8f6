/**
 * A sync session's side of a frame channel: frames in and out counted against
 * the session's and the peer's budgets (ledger.ts), a timeout on every frame,
 * and the codes of a channel that failed.
 */
import type { Uint8ArrayList } from 'uint8arraylist'
import { SyncError } from './errors.js'
import { MAX_FRAME_BYTES, varintLength } from './frames.js'
import type { PeerLedger, SyncBudget } from './ledger.js'
import { decodeMessage, encodeMessage, type SyncMessage } from './messages.js'

/** Frames in and out of a session: a length-prefixed stream (`lpStream`) has this shape. */
export interface FrameChannel {
  /** The next frame's payload. Rejects when the stream ends or fails, or when `signal` aborts. */
  read(options: { signal: AbortSignal }): Promise<Uint8Array | Uint8ArrayList>
  write(payload: Uint8Array, options: { signal: AbortSignal }): Promise<unknown>
}

/** What counting a channel needs of the session's parts. */
export interface ChannelLimits {
  readonly ledger: PeerLedger
  readonly budget: SyncBudget
  /** Longest wait for one frame from the peer. */
  readonly frameTimeoutMs: number
}

/** The session's side of a frame channel: counts, budgets and the per-frame timeout. */
export function countedChannel(
  frames: FrameChannel,
  peer: string,
  limits: ChannelLimits,
  session: AbortSignal,
) {
  const { budget, ledger, frameTimeoutMs } = limits
  let sent = 0
  let received = 0
  let framesIn = 0
  let framesOut = 0
  return {
    get sent() {
      return sent
    },
    get received() {
      return received
    },
    async send(m: SyncMessage): Promise<number> {
      const bytes = encodeMessage(m)
      if (++framesOut > budget.sessionFrames)
        throw new SyncError('sync-budget', `a session sends at most ${budget.sessionFrames} frames`)
      await frames.write(bytes, { signal: AbortSignal.any([session, AbortSignal.timeout(frameTimeoutMs)]) })
      const n = bytes.length + varintLength(bytes.length)
      sent += n
      return n
    },
    async read(): Promise<{ message: SyncMessage; bytes: number }> {
      let frame: Uint8Array | Uint8ArrayList
      const timeout = AbortSignal.timeout(frameTimeoutMs)
      try {
        frame = await frames.read({ signal: AbortSignal.any([session, timeout]) })
      } catch (e) {
        const name = (e as Error)?.name
        if (name === 'InvalidDataLengthError' || name === 'InvalidDataLengthLengthError')
          throw new SyncError('sync-oversize', `the peer sent a frame over ${MAX_FRAME_BYTES} bytes`)
        if (timeout.aborted && !session.aborted)
          throw new SyncError('sync-timeout', `the peer sent nothing for ${frameTimeoutMs} ms`)
        throw e
      }
      const n = frame.byteLength + varintLength(frame.byteLength)
      received += n
      framesIn++
      if (framesIn > budget.sessionFrames)
        throw new SyncError(
          'sync-budget',
          `the peer sent more than ${budget.sessionFrames} frames in one session`,
        )
      if (received > budget.sessionBytes)
        throw new SyncError(
          'sync-budget',
          `the peer sent more than ${budget.sessionBytes} bytes in one session`,
        )
      ledger.receive(peer, n)
      return { message: decodeMessage(frame), bytes: n }
    },
  }
}

export type CountedChannel = ReturnType<typeof countedChannel>

/** A message the session did not expect at this point. */
export function unexpected(m: SyncMessage): SyncError {
  return new SyncError('sync-malformed', `unexpected ${m.type} message`)
}

/** The code of a session that failed by no fault of the peer's (a `SyncError` carries its own). */
export function errorCode(e: unknown, session: AbortSignal): string {
  if (session.aborted) return 'sync-timeout'
  const name = (e as Error)?.name ?? ''
  if (name === 'TimeoutError' || name === 'AbortError') return 'sync-timeout'
  return 'sync-stream-failed'
}
