/**
 * Sync sessions over libp2p streams (protocol/SPEC.md §14): dialling a peer
 * for the initiator's session, the protocol handler for the responder's, and
 * how a session's stream ends. A stream becomes a frame channel through
 * @libp2p/utils `lpStream`, which checks an announced length against the
 * frame limit before it buffers the payload.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { P2PLibp2p } from '../p2p.js'
import { MAX_FRAME_BYTES } from './frames.js'
import {
  errorCode,
  type FrameChannel,
  type SessionOutcome,
  type Sessions,
  type SyncReport,
} from './session.js'

export const SYNC_PROTOCOL = '/allmende/sync/1.0.0'

/** Sync streams a peer may have open with us at once, each way. */
const MAX_STREAMS = 2

export interface StreamParts {
  readonly libp2p: P2PLibp2p
  readonly sessions: Sessions
  /** Longest session. */
  readonly sessionTimeoutMs: number
  /** Aborted when the node stops. */
  readonly stopping: AbortSignal
  /** Every finished session's report, opened or not. */
  readonly remember: (report: SyncReport) => void
  /** A failed session's error: whether the peer is to blame is the callee's decision. */
  readonly blame: (peer: string, error: unknown) => Promise<void>
}

export interface SyncStreams {
  /** One session as initiator: dials the protocol and runs it. Never throws. */
  initiate(peer: string): Promise<SyncReport>
  /** Answers inbound sessions until `unhandle`. */
  handle(): void
  /** The inbound sessions under way. */
  inbound(): Promise<unknown>[]
  /** Stops answering. */
  unhandle(): Promise<void>
}

export function createSyncStreams(parts: StreamParts): SyncStreams {
  const { libp2p, sessions, stopping } = parts
  const inbound = new Set<Promise<unknown>>()
  const sessionSignal = () => AbortSignal.any([stopping, AbortSignal.timeout(parts.sessionTimeoutMs)])

  const finish = async (stream: Stream, outcome: SessionOutcome, session: AbortSignal) => {
    if (outcome.error === undefined) await stream.close({ signal: session }).catch(() => {})
    else {
      stream.abort(outcome.error as Error)
      await parts.blame(outcome.report.peer, outcome.error)
    }
    parts.remember(outcome.report)
    return outcome.report
  }

  const initiate = async (peer: string): Promise<SyncReport> => {
    const started = Date.now()
    const session = sessionSignal()
    let stream: Stream
    try {
      stream = await libp2p.dialProtocol(peerIdFromString(peer), SYNC_PROTOCOL, { signal: session })
    } catch (e) {
      const report = notOpened(peer, errorCode(e, session), Date.now() - started)
      parts.remember(report)
      return report
    }
    return finish(stream, await sessions.initiate(frameChannel(stream), peer, session), session)
  }

  const respond = async (stream: Stream, connection: Connection): Promise<void> => {
    const session = sessionSignal()
    const peer = connection.remotePeer.toString()
    await finish(stream, await sessions.respond(frameChannel(stream), peer, session), session)
  }

  return {
    initiate,
    handle() {
      void libp2p.handle(
        SYNC_PROTOCOL,
        (stream, connection) => {
          if (stopping.aborted) {
            stream.abort(new Error('stopping'))
            return
          }
          const work = respond(stream, connection)
          inbound.add(work)
          void work.finally(() => inbound.delete(work))
        },
        { maxInboundStreams: MAX_STREAMS, maxOutboundStreams: MAX_STREAMS },
      )
    },
    inbound: () => [...inbound],
    async unhandle() {
      await libp2p.unhandle(SYNC_PROTOCOL).catch(() => {})
    },
  }
}

function frameChannel(stream: Stream): FrameChannel {
  return lpStream(stream, { maxDataLength: MAX_FRAME_BYTES })
}

/** The report of a session whose stream could not be opened. */
function notOpened(peer: string, code: string, ms: number): SyncReport {
  return {
    peer,
    role: 'initiator',
    ok: false,
    code,
    complete: true,
    rounds: 0,
    bytesSent: 0,
    bytesReceived: 0,
    reconcileBytes: 0,
    fetched: 0,
    pushed: 0,
    taken: 0,
    refused: 0,
    refusedBytes: 0,
    ms,
  }
}
