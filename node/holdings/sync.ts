/**
 * Holdings sync on request, `/allmende/holdings/1.0.0` (docs/adr/0029-holding-announcements.md):
 * gossip only carries what is said while a node listens, so a node asks each peer as it
 * connects, and again every renewal period, for everything it holds.
 *
 * The asking side opens the stream and sends nothing; the answering side writes its bindings,
 * then its live announcements newest first, one per length-prefixed frame (unsigned varint, as
 * everywhere in libp2p, read by @libp2p/utils `lpStream`), at most `MAX_SYNC_MESSAGES` frames
 * and `MAX_SYNC_BYTES` bytes, then an empty frame, and closes. The asker checks each frame as it
 * arrives, exactly as gossip is checked (intake.ts); a frame over 2 KiB, one frame too many, a
 * frame the peer could not honestly have (a fault), or a silence over the frame timeout ends
 * the session, and a fault refuses the peer for a while.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { Uint8ArrayList } from 'uint8arraylist'
import type { Logger } from '../log.js'
import type { P2P } from '../p2p.js'
import type { Intake } from './intake.js'
import type { HoldingsStore, Kept } from './store.js'
import { MAX_HOLDINGS_MESSAGE_BYTES } from './wire.js'

export const HOLDINGS_SYNC_PROTOCOL = '/allmende/holdings/1.0.0'
/** Frames one answer carries at most (the end frame aside), and bytes. */
export const MAX_SYNC_MESSAGES = 8192
export const MAX_SYNC_BYTES = 4 * 1024 * 1024

export interface HoldingsSyncParts {
  readonly p2p: P2P
  readonly store: HoldingsStore
  readonly intake: Intake
  readonly log: Logger
  /** Longest wait for one frame (default 10 s), and for a whole session (default 60 s). */
  readonly frameTimeoutMs?: number
  readonly sessionTimeoutMs?: number
  /** How long a peer that sent a faulty message is refused (default 10 min). */
  readonly banMs?: number
  /** Aborted when the node stops. */
  readonly stopping: AbortSignal
}

export interface SyncOutcome {
  readonly peer: string
  readonly ok: boolean
  /** Messages received, and of them stored as new. */
  readonly received: number
  readonly stored: number
  /** Of them, ignored for want of a record here (a manifest, a member): worth asking again once records arrive. */
  readonly deferred: number
  readonly code?: 'timeout' | 'oversize' | 'too-many' | 'fault' | 'stream-failed'
}

export interface HoldingsSync {
  /** Asks `peer` for everything it holds; one session per peer at a time. Never throws. */
  pull(peer: string): Promise<SyncOutcome>
  handle(): Promise<void>
  unhandle(): Promise<void>
}

/** A session ended by a broken bound or a fault; `code` says which. */
export class SessionEnd extends Error {
  constructor(readonly code: NonNullable<SyncOutcome['code']>) {
    super(code)
  }
}

export function createHoldingsSync(parts: HoldingsSyncParts): HoldingsSync {
  const frameTimeoutMs = parts.frameTimeoutMs ?? 10_000
  const sessionTimeoutMs = parts.sessionTimeoutMs ?? 60_000
  const running = new Map<string, Promise<SyncOutcome>>()
  const sessionSignal = () => AbortSignal.any([parts.stopping, AbortSignal.timeout(sessionTimeoutMs)])

  const pullOnce = async (peer: string): Promise<SyncOutcome> => {
    const session = sessionSignal()
    const counts = { received: 0, stored: 0, deferred: 0 }
    let stream: Stream | undefined
    try {
      stream = await parts.p2p.libp2p.dialProtocol(peerIdFromString(peer), HOLDINGS_SYNC_PROTOCOL, {
        signal: session,
      })
      const frames = lpStream(stream, { maxDataLength: MAX_HOLDINGS_MESSAGE_BYTES })
      await readAnswer(frames, parts.intake, counts, { frameTimeoutMs, session })
      await stream.close({ signal: session }).catch(() => {})
      return { peer, ok: true, ...counts }
    } catch (e) {
      stream?.abort(e as Error)
      const code = e instanceof SessionEnd ? e.code : session.aborted ? 'timeout' : 'stream-failed'
      if (code === 'fault' && !parts.stopping.aborted)
        await parts.p2p.ban(peer, parts.banMs ?? 600_000).catch(() => {})
      parts.log.log(code === 'fault' ? 'warn' : 'debug', 'holdings-sync-failed', { peer, code, ...counts })
      return { peer, ok: false, code, ...counts }
    }
  }

  const respond = async (stream: Stream): Promise<void> => {
    const session = sessionSignal()
    try {
      const frames = lpStream(stream, { maxDataLength: MAX_HOLDINGS_MESSAGE_BYTES })
      for (const bytes of answerOf(parts.store)) await frames.write(bytes, { signal: session })
      await frames.write(new Uint8Array(0), { signal: session })
      await stream.close({ signal: session })
    } catch (e) {
      stream.abort(e as Error)
    }
  }

  return {
    pull(peer) {
      const busy = running.get(peer)
      if (busy) return busy
      const work = pullOnce(peer).finally(() => running.delete(peer))
      running.set(peer, work)
      return work
    },
    async handle() {
      await parts.p2p.libp2p.handle(
        HOLDINGS_SYNC_PROTOCOL,
        (stream: Stream, _connection: Connection) => {
          if (parts.stopping.aborted) stream.abort(new Error('stopping'))
          else void respond(stream)
        },
        { maxInboundStreams: 2, maxOutboundStreams: 2 },
      )
    },
    async unhandle() {
      await Promise.allSettled([...running.values()])
      await parts.p2p.libp2p.unhandle(HOLDINGS_SYNC_PROTOCOL).catch(() => {})
    },
  }
}

/** What an answer carries: every binding, then live announcements newest first, within the bounds. */
export function answerOf(store: HoldingsStore): Uint8Array[] {
  const announcements = store.announcements().sort((a, b) => b.value.at - a.value.at)
  const kept: Kept<unknown>[] = [...store.bindings(), ...announcements]
  const frames: Uint8Array[] = []
  let bytes = 0
  for (const { bytes: message } of kept) {
    if (frames.length >= MAX_SYNC_MESSAGES || bytes + message.length > MAX_SYNC_BYTES) break
    frames.push(message)
    bytes += message.length
  }
  return frames
}

/** Where an answer's frames come from: a length-prefixed stream (`lpStream`) has this shape. */
export interface FrameReader {
  read(options: { signal: AbortSignal }): Promise<Uint8Array | Uint8ArrayList>
}

/** Reads frames up to the empty end frame, each taken by the intake; throws `SessionEnd` on a broken bound. */
export async function readAnswer(
  frames: FrameReader,
  intake: Intake,
  counts: { received: number; stored: number; deferred: number },
  limits: { frameTimeoutMs: number; session: AbortSignal },
): Promise<void> {
  let bytes = 0
  for (;;) {
    const frame = await readFrame(frames, limits)
    if (frame.byteLength === 0) return
    if (++counts.received > MAX_SYNC_MESSAGES || (bytes += frame.byteLength) > MAX_SYNC_BYTES)
      throw new SessionEnd('too-many')
    const taken = intake.take(frame)
    if (taken.verdict === 'reject') throw new SessionEnd('fault')
    if (taken.verdict === 'accept') counts.stored++
    if (taken.reason === 'unknown-weights' || taken.reason === 'not-member') counts.deferred++
  }
}

async function readFrame(
  frames: FrameReader,
  limits: { frameTimeoutMs: number; session: AbortSignal },
): Promise<Uint8Array> {
  const timeout = AbortSignal.timeout(limits.frameTimeoutMs)
  try {
    return (await frames.read({ signal: AbortSignal.any([limits.session, timeout]) })).subarray()
  } catch (e) {
    const name = (e as Error)?.name
    if (name === 'InvalidDataLengthError' || name === 'InvalidDataLengthLengthError')
      throw new SessionEnd('oversize')
    if (timeout.aborted && !limits.session.aborted) throw new SessionEnd('timeout')
    throw e
  }
}
