/**
 * One sync session (`/allmende/sync/1.0.0`, DESIGN.md §6), in either role,
 * over any frame channel. Its parts are passed in (js-libp2p style): the
 * record store, a frame channel, the per-peer ledger. service.ts wires it to
 * libp2p (dialling, the protocol handler, bans); tests and the fuzzer drive
 * it with frames of their own.
 *
 *     → reconcile … ← reconcile            (range fingerprints, ≤ maxRounds)
 *     → get [cids] ← blocks [bytes]        (what the initiator lacks, in batches)
 *     → blocks [bytes]                     (what the responder lacks, unasked)
 *     → done
 *
 * What is kept, and what it costs the peer:
 * - records go through the gossip validator (`checkMany`, then `ingest`):
 *   unknown authors are ignored, invalid bytes end the session
 *   (`sync-invalid`).
 * - list blocks are kept only where a held seal or checkpoint names them
 *   (store.ts). One a held record names already goes straight to the store.
 *   One that comes before the seal naming it waits in the session's holding
 *   area, bounded per session and for all sessions, and for at most
 *   `holdingMs`; a record that arrives later in the session takes its named
 *   blocks from there. What is still unnamed when the session ends, when its
 *   wait is over, or does not fit the holding area is refused: never
 *   written, never in the reconciled set, its CID not fetched again until
 *   something names it, and junk points against the peer (ledger.ts). Past
 *   the ban threshold the session ends with `sync-junk`. (An initiator asks
 *   once more for a block whose wait ran out before refusing it: its own
 *   fetch order can put a list far ahead of its seal.)
 * - budgets: frames and bytes received per session and per peer (ledger.ts);
 *   one frame or one byte more ends the session with `sync-budget`.
 * - an answer must hold only blocks that were asked for; reconciliation is
 *   bounded in rounds and message size; every frame has a timeout.
 *
 * An honest sender puts records before list blocks in what it pushes, so the
 * seal usually comes first; the holding area covers the rest.
 */
import type { CID } from 'multiformats/cid'
import type { Uint8ArrayList } from 'uint8arraylist'
import { blockKey, cidFromKey, cidKey } from '../../protocol/index.js'
import type { Logger } from '../log.js'
import { nativeSha256 as sha256 } from '../sha256.js'
import type { RecordStore } from '../store.js'
import { isSyncError, SyncError } from './errors.js'
import { MAX_FRAME_BYTES, varintLength } from './frames.js'
import { cidOfId } from './id-set.js'
import { junkPoints, type PeerLedger, type SyncBudget } from './ledger.js'
import { decodeMessage, encodeMessage, MAX_GET_CIDS, type SyncMessage } from './messages.js'
import { RecentSet } from './recent-set.js'
import { createReconciler, MAX_ROUNDS } from './reconcile.js'

/** Reconciliation messages stay well inside a frame (the rest of a frame is message overhead). */
export const RECONCILE_FRAME_LIMIT = 1024 * 1024 - 4096
/** Bytes of blocks packed into one answer or push. */
const BLOCKS_BUDGET = 1024 * 1024 - 16 * 1024
/** CIDs remembered as declined, refused or ignored, each kind (oldest forgotten first). */
export const MAX_REMEMBERED = 100_000
/** What a held block costs the holding area beyond its bytes (its map entry): bounds the count too. */
export const HOLDING_ENTRY_BYTES = 64

/** Frames in and out of a session: a length-prefixed stream (`lpStream`) has this shape. */
export interface FrameChannel {
  /** The next frame's payload. Rejects when the stream ends or fails, or when `signal` aborts. */
  read(options: { signal: AbortSignal }): Promise<Uint8Array | Uint8ArrayList>
  write(payload: Uint8Array, options: { signal: AbortSignal }): Promise<unknown>
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
  /** List blocks refused: named by nothing held by the end of the session. */
  readonly refused: number
  readonly refusedBytes: number
  /** False when the round cap ended reconciliation early (the next session continues). */
  readonly complete: boolean
  readonly ms: number
}

export interface SessionOutcome {
  readonly report: SyncReport
  /** Why the session failed: a `SyncError` is the peer's fault. */
  readonly error?: unknown
}

export interface SessionParts {
  readonly store: RecordStore
  readonly log: Logger
  readonly ledger: PeerLedger
  readonly budget: SyncBudget
  /** Longest wait for one frame from the peer. */
  readonly frameTimeoutMs: number
  /** Reconciliation rounds per session as initiator (at most MAX_ROUNDS). */
  readonly maxRounds?: number
  /** Aborted when the node stops: a session cut by it costs the peer nothing. */
  readonly stopping?: AbortSignal
  /** A monotonic clock in ms, for how long blocks wait in the holding area (default performance.now). */
  readonly now?: () => number
  /** CIDs remembered as declined, refused or ignored, each kind (default MAX_REMEMBERED). */
  readonly maxRemembered?: number
}

export interface Sessions {
  /** One session as initiator over `frames`, already open to `peer`. Never throws. */
  initiate(frames: FrameChannel, peer: string, session: AbortSignal): Promise<SessionOutcome>
  /** One session as responder. Never throws. */
  respond(frames: FrameChannel, peer: string, session: AbortSignal): Promise<SessionOutcome>
}

const isRecordBytes = (b: Uint8Array) => b[0]! >> 5 !== 4

/** The session's side of a frame channel: counts, budgets and the per-frame timeout. */
function counted(frames: FrameChannel, peer: string, parts: SessionParts, session: AbortSignal) {
  const { budget, ledger, frameTimeoutMs } = parts
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

type Channel = ReturnType<typeof counted>

/** Bytes held by every session's holding area together. */
interface Shared {
  used: number
}

/** List blocks a session keeps, unwritten, while they wait for a record that names them. */
function holdingArea(limit: number, total: number, shared: Shared) {
  const blocks = new Map<string, Uint8Array>()
  /** When each block came, oldest first (insertion order). */
  const since = new Map<string, number>()
  let used = 0
  const costOf = (b: Uint8Array) => b.length + HOLDING_ENTRY_BYTES
  const remove = (key: string) => {
    const b = blocks.get(key)
    if (!b) return
    blocks.delete(key)
    since.delete(key)
    used -= costOf(b)
    shared.used -= costOf(b)
  }
  return {
    blocks: blocks as ReadonlyMap<string, Uint8Array>,
    has: (key: string) => blocks.has(key),
    /** 'held'; 'full' when the session's area has no room; 'shared-full' when all areas have none. */
    add(key: string, b: Uint8Array, at: number): 'held' | 'full' | 'shared-full' {
      const cost = costOf(b)
      if (used + cost > limit) return 'full'
      if (shared.used + cost > total) return 'shared-full'
      // A compact copy: a view would pin the whole frame it came in.
      blocks.set(key, Uint8Array.prototype.slice.call(b))
      since.set(key, at)
      used += cost
      shared.used += cost
      return 'held'
    },
    delete: remove,
    /** Takes out the blocks held since before `cutoff`, oldest first. */
    expire(cutoff: number): [string, Uint8Array][] {
      const out: [string, Uint8Array][] = []
      for (const [key, at] of since) {
        if (at >= cutoff) break
        out.push([key, blocks.get(key)!])
      }
      for (const [key] of out) remove(key)
      return out
    },
    release() {
      shared.used -= used
      used = 0
      blocks.clear()
      since.clear()
    },
  }
}

type Holding = ReturnType<typeof holdingArea>

interface SessionState {
  readonly peer: string
  readonly holding: Holding
  /** The store's naming generation when the holding area was last offered whole. */
  generation: number
  refused: number
  refusedBytes: number
  /** Initiator only: asks for a block again later in the session. */
  readonly askAgain?: (cid: CID) => void
  /** Keys of blocks asked for again after their wait ran out: refused the next time. */
  readonly askedAgain: Set<string>
}

/** Passes offering the holding area to the store at the end: a block taken can name more (a cascade). */
const SETTLE_PASSES = 4

export function createSessions(parts: SessionParts): Sessions {
  const { store, log, ledger, budget } = parts
  const now = parts.now ?? (() => performance.now())
  const maxRounds = Math.min(parts.maxRounds ?? MAX_ROUNDS, MAX_ROUNDS)
  const shared: Shared = { used: 0 }
  const remembered = parts.maxRemembered ?? MAX_REMEMBERED

  // CIDs found invalid: never fetched again. Insertion-ordered, so the oldest go first.
  const declined = new RecentSet(remembered)
  // List blocks refused as unnamed: not fetched again while nothing names them.
  const unnamed = new RecentSet(remembered)
  // CIDs ignored (unknown author, ingest limits) under the current governance head: a stranger
  // with throwaway keys can sign any number of such records.
  const ignored = new RecentSet(remembered)
  let ignoredUnder: unknown
  const ignoredNow = () => {
    // The head state is the same object until something changes the governance chain (or a
    // re-derivation makes a new one, which only forgets the ignored set early).
    const head = store.fold.headState()
    if (head !== ignoredUnder) {
      ignored.clear()
      ignoredUnder = head
    }
    return ignored
  }

  const junkError = (s: SessionState) =>
    new SyncError(
      'sync-junk',
      `the peer sent ${s.refused} list blocks (${s.refusedBytes} bytes) that no held seal or checkpoint names`,
    )

  /** Refuses one unnamed block; true when the peer is now past the ban threshold. */
  const refuse = (s: SessionState, key: string, bytes: number, charge: boolean): boolean => {
    s.refused++
    s.refusedBytes += bytes
    unnamed.add(key)
    return charge && ledger.charge(s.peer, junkPoints(bytes))
  }

  /** Drops from the holding area what the store holds now. */
  const prune = (s: SessionState, keys: Iterable<string>) => {
    for (const key of [...keys]) if (store.hasBlock(key)) s.holding.delete(key)
  }

  /**
   * Makes what a peer sent durable: records through the gossip validator, list blocks where a
   * held record names them. Invalid records are declined for good.
   */
  const take = async (s: SessionState, blocks: readonly Uint8Array[]): Promise<number> => {
    const records: Uint8Array[] = []
    // Blocks of this frame offered to the store without being held.
    const direct = new Map<string, Uint8Array>()
    const fresh: string[] = []
    let crossed = false
    for (const b of blocks) {
      if (isRecordBytes(b)) {
        records.push(b)
        continue
      }
      const key = blockKey(b, sha256)
      if (store.hasBlock(key) || s.holding.has(key) || direct.has(key)) continue
      // Named by a held record already: straight to the store, so that junk filling the holding
      // areas cannot keep a held seal's lists out.
      if (store.wantsBlock(key)) {
        direct.set(key, b)
        continue
      }
      const room = s.holding.add(key, b, now())
      if (room === 'held') fresh.push(key)
      // All holding areas full is no fault of this peer: offered with this frame (a record in it
      // may name the block), else dropped and asked for again later.
      else if (room === 'shared-full') direct.set(key, b)
      else crossed = refuse(s, key, b.length, !parts.stopping?.aborted) || crossed
    }
    if (crossed) throw junkError(s)
    let taken = 0
    let fromHolding = false
    if (records.length > 0) {
      const ignoreSet = ignoredNow()
      let invalid = 0
      const verdicts = await store.checkMany(records)
      const results = await Promise.all(
        records.map(async (bytes, i) => {
          const checked = verdicts[i]!
          if (checked.verdict === 'reject') {
            decline(blockKey(bytes, sha256))
            invalid++
            return 0
          }
          // A seal or checkpoint takes the blocks its lists name from the holding area.
          const r = await store.ingest(bytes, s.holding.blocks, checked)
          if (r.verdict === 'ignore' && r.record && r.code !== 'duplicate') ignoreSet.add(r.record.key)
          if (r.blocksTaken) fromHolding = true
          return (r.verdict === 'accept' && !r.duplicate ? 1 : 0) + (r.blocksTaken ?? 0)
        }),
      )
      for (const t of results) taken += t
      // An honest peer holds only records that passed the same bytes-only checks, so an invalid
      // one means the peer is not honest: end the session (after keeping what was valid).
      if (invalid > 0) throw new SyncError('sync-invalid', `the peer sent ${invalid} invalid records`)
    }
    // Blocks named by records held before (a seal that came by gossip): what came now, and the
    // whole holding area when something new has been named since it was last offered.
    const generation = store.namingGeneration()
    const whole = generation !== s.generation
    s.generation = generation
    const offer = whole ? new Map([...s.holding.blocks, ...direct]) : pick(s.holding.blocks, fresh, direct)
    if (offer.size > 0) taken += (await store.ingestBlocks(offer)).taken
    prune(s, whole || fromHolding ? s.holding.blocks.keys() : fresh)
    return taken
  }

  /**
   * Ends the holding area: a last offer, then what is still unnamed is refused and charged.
   * True when the peer is past the ban threshold.
   */
  const settle = async (s: SessionState, charge: boolean): Promise<boolean> => {
    try {
      for (
        let pass = 0;
        pass < SETTLE_PASSES && s.holding.blocks.size > 0 && store.namingGeneration() !== s.generation;
        pass++
      ) {
        s.generation = store.namingGeneration()
        await store.ingestBlocks(s.holding.blocks).catch(() => {})
        prune(s, s.holding.blocks.keys())
      }
      let points = 0
      const before = s.refused
      const bytesBefore = s.refusedBytes
      for (const [key, b] of s.holding.blocks) {
        refuse(s, key, b.length, false)
        points += junkPoints(b.length)
      }
      if (s.refused > before)
        log.warn('sync-blocks-refused', {
          peer: s.peer,
          blocks: s.refused - before,
          bytes: s.refusedBytes - bytesBefore,
          reason: 'no held seal or checkpoint names them',
        })
      return charge && points > 0 && ledger.charge(s.peer, points)
    } finally {
      s.holding.release()
    }
  }

  /**
   * Ends the wait of blocks held longer than `holdingMs`, so that parked junk cannot fill the
   * holding areas until the session times out. A responder refuses them: an honest sender pushes
   * records before lists. An initiator lets go of them and asks once more after what it still has
   * to fetch (its own fetch order can put a list far ahead of its seal); the next time, they are
   * refused. True when the peer is now past the ban threshold.
   */
  const expire = (s: SessionState): boolean => {
    const expired = s.holding.expire(now() - budget.holdingMs)
    if (expired.length === 0) return false
    const charge = !parts.stopping?.aborted
    let crossed = false
    let blocks = 0
    let bytes = 0
    for (const [key, b] of expired) {
      if (s.askAgain && !s.askedAgain.has(key)) {
        s.askedAgain.add(key)
        s.askAgain(cidFromKey(key))
        continue
      }
      crossed = refuse(s, key, b.length, charge) || crossed
      blocks++
      bytes += b.length
    }
    if (blocks > 0)
      log.warn('sync-blocks-refused', {
        peer: s.peer,
        blocks,
        bytes,
        reason: `held ${budget.holdingMs} ms and named by no held seal or checkpoint`,
      })
    return crossed
  }

  /** Reads the next frame; blocks whose wait ran out meanwhile are dealt with first. */
  const readFrom = async (ch: Channel, s: SessionState) => {
    const frame = await ch.read()
    if (expire(s)) throw junkError(s)
    return frame
  }

  const decline = (key: string) => declined.add(key)

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

  /** Records before list blocks, so that the receiver meets a seal before the lists it names. */
  const recordsFirst = (cids: readonly CID[]): CID[] => {
    const records: CID[] = []
    const lists: CID[] = []
    for (const c of cids) {
      const bytes = store.bytesOf(c)
      if (bytes) (isRecordBytes(bytes) ? records : lists).push(c)
    }
    return [...records, ...lists]
  }

  const newState = (peer: string, askAgain?: (cid: CID) => void): SessionState => ({
    peer,
    holding: holdingArea(budget.holdingBytes, budget.holdingTotalBytes, shared),
    generation: store.namingGeneration(),
    refused: 0,
    refusedBytes: 0,
    ...(askAgain ? { askAgain } : {}),
    askedAgain: new Set(),
  })

  /** The outcome of a failed session: the holding area is settled, a crossing becomes `sync-junk`. */
  const failed = async (s: SessionState, e: unknown, session: AbortSignal) => {
    const charge = !parts.stopping?.aborted
    const crossed = await settle(s, charge)
    const error = crossed && !isSyncError(e) ? junkError(s) : e
    return { error, code: isSyncError(error) ? error.code : errorCode(error, session) }
  }

  // ---------------------------------------------------------------- initiator

  const initiate = async (
    frames: FrameChannel,
    peer: string,
    session: AbortSignal,
  ): Promise<SessionOutcome> => {
    const started = Date.now()
    // CIDs still to ask for, in batches.
    const queue: CID[] = []
    const s = newState(peer, (cid) => queue.push(cid))
    let rounds = 0
    let reconcileBytes = 0
    let fetched = 0
    let pushed = 0
    let taken = 0
    let complete = true
    const ch: Channel = counted(frames, peer, parts, session)
    const report = (ok: boolean, code?: string): SyncReport => ({
      peer,
      role: 'initiator',
      ok,
      complete,
      ...(code ? { code } : {}),
      rounds,
      bytesSent: ch.sent,
      bytesReceived: ch.received,
      reconcileBytes,
      fetched,
      pushed,
      taken,
      refused: s.refused,
      refusedBytes: s.refusedBytes,
      ms: Date.now() - started,
    })
    try {
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
      // Fetch what we lack, but never what we declined, nor list blocks refused before that
      // nothing names yet.
      const ignoreSet = ignoredNow()
      const wanted = need.map(cidOfId).filter((c) => {
        const k = cidKey(c)
        return !declined.has(k) && !ignoreSet.has(k) && !(unnamed.has(k) && !store.wantsBlock(k))
      })
      // Two gets in flight, and the records of one answer checked (on worker threads) while
      // the next answer is on its way.
      queue.push(...wanted)
      const asked: CID[][] = []
      const ask = async () => {
        if (queue.length === 0) return
        const cids = queue.splice(0, MAX_GET_CIDS)
        asked.push(cids)
        await ch.send({ type: 'get', cids })
      }
      const taking: Promise<number>[] = []
      let failure: unknown
      const settleTake = async (p: Promise<number>) => {
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
        const answer = await readFrom(ch, s)
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
        taking.push(take(s, got))
        if (taking.length > 2) await settleTake(taking.shift()!)
        if (failure) throw failure
      }
      for (const p of taking) await settleTake(p)
      if (failure) throw failure
      if (await settle(s, !parts.stopping?.aborted)) throw junkError(s)
      // Push what the peer lacks.
      for (const batch of packed(recordsFirst(have.map(cidOfId)))) {
        await ch.send({ type: 'blocks', blocks: batch })
        pushed += batch.length
      }
      await ch.send({ type: 'done' })
      return { report: report(true) }
    } catch (e) {
      const { error, code } = await failed(s, e, session)
      return { report: report(false, code), error }
    }
  }

  // ---------------------------------------------------------------- responder

  const respond = async (
    frames: FrameChannel,
    peer: string,
    session: AbortSignal,
  ): Promise<SessionOutcome> => {
    const started = Date.now()
    const s = newState(peer)
    const ch: Channel = counted(frames, peer, parts, session)
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
      refused: s.refused,
      refusedBytes: s.refusedBytes,
      ms: Date.now() - started,
    })
    try {
      for (;;) {
        const { message, bytes } = await readFrom(ch, s)
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
          // What the initiator says we lack: records validated like gossip, list blocks kept
          // only where a held record names them.
          pushed += message.blocks.length
          taken += await take(s, message.blocks)
        }
      }
      if (await settle(s, !parts.stopping?.aborted)) throw junkError(s)
      return { report: report(true) }
    } catch (e) {
      const { error, code } = await failed(s, e, session)
      return { report: report(false, code), error }
    }
  }

  return { initiate, respond }
}

/** `keys` of `from`, added to `out` (the blocks that came in one frame). */
function pick(
  from: ReadonlyMap<string, Uint8Array>,
  keys: readonly string[],
  out: Map<string, Uint8Array>,
): Map<string, Uint8Array> {
  for (const k of keys) {
    const b = from.get(k)
    if (b) out.set(k, b)
  }
  return out
}

function unexpected(m: SyncMessage): SyncError {
  return new SyncError('sync-malformed', `unexpected ${m.type} message`)
}

export function errorCode(e: unknown, session: AbortSignal): string {
  if (session.aborted) return 'sync-timeout'
  const name = (e as Error)?.name ?? ''
  if (name === 'TimeoutError' || name === 'AbortError') return 'sync-timeout'
  return 'sync-stream-failed'
}
