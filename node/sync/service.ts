/**
 * `/allmende/sync/1.0.0` on a live node (DESIGN.md §6): gossip only carries
 * what happens while a node listens, so on every new connection and then
 * periodically a node reconciles its set of record and list-block ids with a
 * peer, fetches what it lacks and pushes what the peer lacks.
 *
 * One session, opened by the initiator:
 *
 *     → reconcile … ← reconcile            (range fingerprints, ≤ MAX_ROUNDS)
 *     → get [cids] ← blocks [bytes]        (what the initiator lacks, in batches)
 *     → blocks [bytes]                     (what the responder lacks, unasked)
 *     → done
 *
 * Frames are length-prefixed (@libp2p/utils `lpStream`, which enforces the
 * maximum length before buffering). Everything is bounded: frame size,
 * rounds, time per frame and per session, CIDs per get. Whatever arrives goes
 * through the same validation as gossip (`store.check`, then `ingest`); an
 * answered block must hash to a CID that was asked for. A peer that breaks
 * the protocol (garbage, an oversized frame, a block nobody asked for,
 * silence past the frame timeout) ends its session at once, is hung up on and
 * is refused for a while. CIDs found invalid are remembered and never fetched
 * again; CIDs ignored (an author unknown so far, ingest limits) are not
 * fetched again until the governance head moves.
 */

import type { Connection, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { CID } from 'multiformats/cid'
import { blockKey, cidFromKey, cidKey } from '../../protocol/index.js'
import type { Logger } from '../log.js'
import type { P2P } from '../p2p.js'
import { nativeSha256 as sha256 } from '../sha256.js'
import type { RecordStore } from '../store.js'
import { isSyncError, SyncError } from './errors.js'
import { MAX_FRAME_BYTES } from './frames.js'
import { cidOfId } from './id-set.js'
import { decodeMessage, encodeMessage, MAX_GET_CIDS, type SyncMessage } from './messages.js'
import { createReconciler, MAX_ROUNDS } from './reconcile.js'

export const SYNC_PROTOCOL = '/allmende/sync/1.0.0'

/** Reconciliation messages stay well inside a frame (the rest of a frame is message overhead). */
const RECONCILE_FRAME_LIMIT = 1024 * 1024 - 4096
/** Bytes of blocks packed into one answer or push. */
const BLOCKS_BUDGET = 1024 * 1024 - 16 * 1024
/** Frames one session may exchange, all kinds together: a session ends long before. */
const MAX_FRAMES = 4096
/** Remembered declined CIDs (oldest forgotten first). */
const MAX_DECLINED = 100_000

export interface SyncOptions {
  readonly p2p: P2P
  readonly store: RecordStore
  readonly log: Logger
  /** Between periodic rounds with each connected peer (default 30 s; 0 turns periodic sync off). */
  readonly intervalMs?: number
  /** Longest wait for one frame from the peer (default 10 s). */
  readonly frameTimeoutMs?: number
  /** Longest session (default 120 s). */
  readonly sessionTimeoutMs?: number
  /** How long a peer that broke the protocol is refused (default 10 min). */
  readonly banMs?: number
  /** Sync with each peer as it connects (default true). */
  readonly onConnect?: boolean
  /** Reconciliation rounds per session as initiator (default MAX_ROUNDS); the next session goes on. */
  readonly maxRounds?: number
  /** Called with every finished session (metrics). */
  readonly onReport?: (report: SyncReport) => void
}

export interface SyncReport {
  readonly peer: string
  readonly role: 'initiator' | 'responder'
  readonly ok: boolean
  readonly code?: string
  readonly rounds: number
  /** Frame bytes sent and received, length prefixes included. */
  readonly bytesSent: number
  readonly bytesReceived: number
  /** Of which reconciliation alone (the rest is records and blocks). */
  readonly reconcileBytes: number
  readonly fetched: number
  readonly pushed: number
  readonly taken: number
  /** False when the round cap ended reconciliation early (the next session continues). */
  readonly complete: boolean
  readonly ms: number
}

export interface SyncService {
  /** One session with a connected (or dialable) peer, as initiator. Never throws. */
  syncWith(peerId: string): Promise<SyncReport>
  /** The last sessions, newest last (at most 100). */
  reports(): readonly SyncReport[]
  stop(): Promise<void>
}

function varintLength(n: number): number {
  let len = 1
  while (n >= 128) {
    n = Math.floor(n / 128)
    len++
  }
  return len
}

/** A frame channel over one stream, counting bytes and enforcing the per-frame timeout. */
function channel(stream: Stream, frameTimeoutMs: number, session: AbortSignal) {
  const lp = lpStream(stream, { maxDataLength: MAX_FRAME_BYTES })
  let sent = 0
  let received = 0
  let frames = 0
  const signal = () => AbortSignal.any([session, AbortSignal.timeout(frameTimeoutMs)])
  return {
    get sent() {
      return sent
    },
    get received() {
      return received
    },
    async send(m: SyncMessage): Promise<number> {
      const bytes = encodeMessage(m)
      if (++frames > MAX_FRAMES) throw new SyncError('sync-malformed', 'too many frames in one session')
      await lp.write(bytes, { signal: signal() })
      const n = bytes.length + varintLength(bytes.length)
      sent += n
      return n
    },
    async read(): Promise<{ message: SyncMessage; bytes: number }> {
      if (++frames > MAX_FRAMES) throw new SyncError('sync-malformed', 'too many frames in one session')
      let frame: Awaited<ReturnType<typeof lp.read>>
      const timeout = AbortSignal.timeout(frameTimeoutMs)
      try {
        frame = await lp.read({ signal: AbortSignal.any([session, timeout]) })
      } catch (e) {
        const name = (e as Error).name
        if (name === 'InvalidDataLengthError' || name === 'InvalidDataLengthLengthError')
          throw new SyncError('sync-oversize', `the peer sent a frame over ${MAX_FRAME_BYTES} bytes`)
        if (timeout.aborted && !session.aborted)
          throw new SyncError('sync-timeout', `the peer sent nothing for ${frameTimeoutMs} ms`)
        throw e
      }
      const n = frame.byteLength + varintLength(frame.byteLength)
      received += n
      return { message: decodeMessage(frame), bytes: n }
    },
  }
}

type Channel = ReturnType<typeof channel>

export function createSync(options: SyncOptions): SyncService {
  const { p2p, store, log } = options
  const libp2p = p2p.libp2p
  const intervalMs = options.intervalMs ?? 30_000
  const frameTimeoutMs = options.frameTimeoutMs ?? 10_000
  const sessionTimeoutMs = options.sessionTimeoutMs ?? 120_000
  const banMs = options.banMs ?? 10 * 60_000
  const maxRounds = Math.min(options.maxRounds ?? MAX_ROUNDS, MAX_ROUNDS)
  const stopping = new AbortController()
  const running = new Map<string, Promise<SyncReport>>()
  const inbound = new Set<Promise<unknown>>()
  const recent: SyncReport[] = []
  let stopped = false

  // CIDs found invalid: never fetched again. Insertion-ordered, so the oldest go first.
  const declined = new Set<string>()
  const decline = (key: string) => {
    declined.add(key)
    if (declined.size > MAX_DECLINED) declined.delete(declined.values().next().value!)
  }
  // CIDs ignored (unknown author, ingest limits) under the current governance head.
  let ignored = new Set<string>()
  let ignoredUnder: unknown
  const ignoredNow = () => {
    // The head state is the same object until something changes the governance chain (or a
    // re-derivation makes a new one, which only forgets the ignored set early).
    const head = store.fold.headState()
    if (head !== ignoredUnder) {
      ignored = new Set()
      ignoredUnder = head
    }
    return ignored
  }

  const remember = (r: SyncReport) => {
    options.onReport?.(r)
    recent.push(r)
    if (recent.length > 100) recent.shift()
    log.log(r.ok ? 'debug' : 'warn', r.ok ? 'sync-done' : 'sync-failed', { ...r })
  }

  /**
   * Makes what a peer sent durable: list blocks first (seals may need them), then records,
   * each through the gossip validator. Invalid ones are declined for good.
   */
  const take = async (blocks: readonly Uint8Array[]): Promise<number> => {
    const lists: Uint8Array[] = []
    const records: Uint8Array[] = []
    // Records are CBOR maps (major type 5), list blocks arrays (major type 4).
    for (const b of blocks) (b[0]! >> 5 === 4 ? lists : records).push(b)
    let taken = 0
    if (lists.length > 0) {
      taken += await store.ingestBlocks(lists)
      for (const b of lists) {
        const key = blockKey(b, sha256)
        if (!store.bytesOf(cidFromKey(key))) decline(key)
      }
    }
    const ignoreSet = ignoredNow()
    let invalid = 0
    const verdicts = await store.checkMany(records)
    const results = await Promise.all(
      records.map(async (bytes, i) => {
        const checked = verdicts[i]!
        if (checked.verdict === 'reject') {
          decline(blockKey(bytes, sha256))
          invalid++
          return false
        }
        const r = await store.ingest(bytes, [], checked)
        if (r.verdict === 'ignore' && r.record && r.code !== 'duplicate') ignoreSet.add(r.record.key)
        return r.verdict === 'accept' && !r.duplicate
      }),
    )
    for (const t of results) if (t) taken++
    // An honest peer holds only records that passed the same bytes-only checks, so an invalid
    // one means the peer is not honest: end the session (after keeping what was valid).
    if (invalid > 0) throw new SyncError('sync-invalid', `the peer sent ${invalid} invalid records`)
    return taken
  }

  /** Blocks held for `cids`, packed into answers that fit a frame. */
  const packed = (cids: readonly CID[]): Uint8Array[][] => {
    const out: Uint8Array[][] = []
    let batch: Uint8Array[] = []
    let size = 0
    for (const cid of cids) {
      const bytes = store.bytesOf(cid)
      if (!bytes) continue
      if (batch.length > 0 && (size + bytes.length + 8 > BLOCKS_BUDGET || batch.length >= MAX_GET_CIDS)) {
        out.push(batch)
        batch = []
        size = 0
      }
      batch.push(bytes)
      size += bytes.length + 8
    }
    if (batch.length > 0) out.push(batch)
    return out
  }

  const punish = async (peer: string, e: unknown) => {
    if (!isSyncError(e) || stopped) return
    log.warn('sync-peer-dropped', { peer, code: e.code, message: e.message, banMs })
    await p2p.ban(peer, banMs).catch(() => {})
  }

  // ---------------------------------------------------------------- initiator

  const initiate = async (peer: string): Promise<SyncReport> => {
    const started = Date.now()
    const session = AbortSignal.any([stopping.signal, AbortSignal.timeout(sessionTimeoutMs)])
    let rounds = 0
    let reconcileBytes = 0
    let fetched = 0
    let pushed = 0
    let taken = 0
    let complete = true
    let ch: Channel | undefined
    let stream: Stream | undefined
    const report = (ok: boolean, code?: string): SyncReport => ({
      peer,
      role: 'initiator',
      ok,
      complete,
      ...(code ? { code } : {}),
      rounds,
      bytesSent: ch?.sent ?? 0,
      bytesReceived: ch?.received ?? 0,
      reconcileBytes,
      fetched,
      pushed,
      taken,
      ms: Date.now() - started,
    })
    try {
      stream = await libp2p.dialProtocol(peerIdFromString(peer), SYNC_PROTOCOL, { signal: session })
      ch = channel(stream, frameTimeoutMs, session)
      const rec = createReconciler(store.ids, { frameSizeLimit: RECONCILE_FRAME_LIMIT })
      const need: Uint8Array[] = []
      const have: Uint8Array[] = []
      let message: Uint8Array | null = rec.initiate()
      while (message) {
        // At the round cap, stop reconciling but keep what was found: every id reported so far
        // is right, so it is fetched and pushed now and the next session finds the rest. (An
        // honest peer can need many rounds for a large difference; it is not punished.)
        if (rounds === maxRounds) {
          complete = false
          break
        }
        rounds++
        reconcileBytes += await ch.send({ type: 'reconcile', payload: message })
        const answer = await ch.read()
        reconcileBytes += answer.bytes
        if (answer.message.type !== 'reconcile') throw unexpected(answer.message)
        const step = rec.reconcile(answer.message.payload)
        need.push(...step.need)
        have.push(...step.have)
        message = step.reply
      }
      // Fetch what we lack, but never what we declined.
      const ignoreSet = ignoredNow()
      const wanted = need.map(cidOfId).filter((c) => {
        const k = cidKey(c)
        return !declined.has(k) && !ignoreSet.has(k)
      })
      // Two gets in flight, and the records of one answer checked (on worker threads) while
      // the next answer is on its way.
      const queue = [...wanted]
      const asked: CID[][] = []
      const ask = async () => {
        if (queue.length === 0) return
        const cids = queue.splice(0, MAX_GET_CIDS)
        asked.push(cids)
        await ch!.send({ type: 'get', cids })
      }
      const taking: Promise<number>[] = []
      let failure: unknown
      const settle = async (p: Promise<number>) => {
        try {
          taken += await p
        } catch (e) {
          failure ??= e
        }
      }
      await ask()
      await ask()
      while (asked.length > 0) {
        const cids = asked.shift()!
        const answer = await ch.read()
        if (answer.message.type !== 'blocks') throw unexpected(answer.message)
        const got = answer.message.blocks
        const wantedKeys = new Set(cids.map(cidKey))
        const answered = new Set(got.map((b) => blockKey(b, sha256)))
        for (const k of answered)
          if (!wantedKeys.has(k))
            throw new SyncError('sync-malformed', 'the peer sent a block nobody asked for')
        fetched += got.length
        // Answers are bounded by the frame: ask again for the rest, later. An empty answer
        // means the peer no longer holds these; move on.
        if (got.length > 0) queue.push(...cids.filter((c) => !answered.has(cidKey(c))))
        await ask()
        taking.push(take(got))
        if (taking.length > 2) await settle(taking.shift()!)
        if (failure) throw failure
      }
      for (const p of taking) await settle(p)
      if (failure) throw failure
      // Push what the peer lacks.
      const pushCids = have.map(cidOfId)
      for (const batch of packed(pushCids)) {
        await ch.send({ type: 'blocks', blocks: batch })
        pushed += batch.length
      }
      await ch.send({ type: 'done' })
      await stream.close({ signal: session }).catch(() => {})
      const r = report(true)
      remember(r)
      return r
    } catch (e) {
      stream?.abort(e as Error)
      await punish(peer, e)
      const r = report(false, isSyncError(e) ? e.code : errorCode(e, session))
      remember(r)
      return r
    }
  }

  // ---------------------------------------------------------------- responder

  const respond = async (stream: Stream, connection: Connection): Promise<void> => {
    const peer = connection.remotePeer.toString()
    const started = Date.now()
    const session = AbortSignal.any([stopping.signal, AbortSignal.timeout(sessionTimeoutMs)])
    const ch = channel(stream, frameTimeoutMs, session)
    let rounds = 0
    let reconcileBytes = 0
    let pushed = 0
    let taken = 0
    let rec: ReturnType<typeof createReconciler> | undefined
    const report = (ok: boolean, code?: string): SyncReport => ({
      peer,
      role: 'responder',
      ok,
      complete: true,
      ...(code ? { code } : {}),
      rounds,
      bytesSent: ch.sent,
      bytesReceived: ch.received,
      reconcileBytes,
      fetched: pushed,
      pushed: 0,
      taken,
      ms: Date.now() - started,
    })
    try {
      for (;;) {
        const { message, bytes } = await ch.read()
        if (message.type === 'done') break
        if (message.type === 'error')
          throw new SyncError('sync-malformed', `the peer gave up: ${message.code}`)
        if (message.type === 'reconcile') {
          if (++rounds > MAX_ROUNDS)
            throw new SyncError('sync-malformed', `no agreement after ${MAX_ROUNDS} rounds`)
          rec ??= createReconciler(store.ids, { frameSizeLimit: RECONCILE_FRAME_LIMIT })
          const step = rec.reconcile(message.payload)
          reconcileBytes += bytes
          reconcileBytes += await ch.send({ type: 'reconcile', payload: step.reply ?? new Uint8Array(0) })
        } else if (message.type === 'get') {
          // One answer per get: what fits a frame, in the order asked; the initiator asks again.
          const [first = []] = packed(message.cids)
          await ch.send({ type: 'blocks', blocks: first })
        } else {
          // Records the initiator says we lack: validated like gossip.
          pushed += message.blocks.length
          taken += await take(message.blocks)
        }
      }
      await stream.close({ signal: session }).catch(() => {})
      remember(report(true))
    } catch (e) {
      stream.abort(e as Error)
      await punish(peer, e)
      remember(report(false, isSyncError(e) ? e.code : errorCode(e, session)))
    }
  }

  void libp2p.handle(
    SYNC_PROTOCOL,
    (stream, connection) => {
      if (stopped) {
        stream.abort(new Error('stopping'))
        return
      }
      const work = respond(stream, connection)
      inbound.add(work)
      void work.finally(() => inbound.delete(work))
    },
    { maxInboundStreams: 2, maxOutboundStreams: 2 },
  )

  const syncWith = (peer: string): Promise<SyncReport> => {
    const busy = running.get(peer)
    if (busy) return busy
    const work = initiate(peer).finally(() => running.delete(peer))
    running.set(peer, work)
    // Cut short by the round cap: go on at once while sessions make progress (the periodic
    // round picks up otherwise).
    void work.then((r) => {
      if (r.ok && !r.complete && (r.taken > 0 || r.pushed > 0) && !stopped)
        setTimeout(() => void syncWith(peer), 0).unref()
    })
    return work
  }

  const onConnect = (evt: CustomEvent<{ toString(): string }>) => {
    if (stopped) return
    const peer = evt.detail.toString()
    // One session serves both sides: the peer with the smaller id opens it on connect.
    if (p2p.peerId < peer) void syncWith(peer)
  }
  if (options.onConnect !== false) libp2p.addEventListener('peer:connect', onConnect)

  const timer =
    intervalMs > 0
      ? setInterval(() => {
          for (const { id } of p2p.peers()) void syncWith(id)
        }, intervalMs)
      : undefined
  timer?.unref()

  return {
    syncWith,
    reports: () => recent,
    async stop() {
      stopped = true
      if (timer) clearInterval(timer)
      libp2p.removeEventListener('peer:connect', onConnect)
      stopping.abort()
      await Promise.allSettled([...running.values(), ...inbound])
      await libp2p.unhandle(SYNC_PROTOCOL).catch(() => {})
    },
  }
}

function unexpected(m: SyncMessage): SyncError {
  return new SyncError('sync-malformed', `unexpected ${m.type} message`)
}

function errorCode(e: unknown, session: AbortSignal): string {
  if (session.aborted) return 'sync-timeout'
  const name = (e as Error)?.name ?? ''
  if (name === 'TimeoutError' || name === 'AbortError') return 'sync-timeout'
  return 'sync-stream-failed'
}
