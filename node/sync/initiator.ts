/**
 * A sync session as initiator: reconcile with the responder (at most
 * `maxRounds` rounds), fetch what this node lacks in batches, then push what
 * the responder lacks, records first, and say done.
 */
import type { CID } from 'multiformats/cid'
import { blockKey, cidKey } from '../../protocol/index.js'
import { nativeSha256 as sha256 } from '../sha256.js'
import { type Admission, failed, junkError, newAdmission, readFrom, settle, take } from './admission.js'
import { type CountedChannel, countedChannel, type FrameChannel, unexpected } from './channel.js'
import { isRecordBytes, packed, RECONCILE_FRAME_LIMIT, type SessionContext } from './context.js'
import { SyncError } from './errors.js'
import { cidOfId } from './id-set.js'
import { MAX_GET_CIDS } from './messages.js'
import { createReconciler } from './reconcile.js'
import type { SessionOutcome, SyncReport } from './session.js'

/** What an initiator's session has done so far (its report, whether it ends well or not). */
interface InitiatorTally {
  rounds: number
  reconcileBytes: number
  fetched: number
  pushed: number
  taken: number
  complete: boolean
}

export async function initiate(
  ctx: SessionContext,
  frames: FrameChannel,
  peer: string,
  session: AbortSignal,
): Promise<SessionOutcome> {
  const started = Date.now()
  // CIDs still to ask for, in batches.
  const queue: CID[] = []
  const admission = newAdmission(ctx, peer, (cid) => queue.push(cid))
  const tally: InitiatorTally = {
    rounds: 0,
    reconcileBytes: 0,
    fetched: 0,
    pushed: 0,
    taken: 0,
    complete: true,
  }
  const channel = countedChannel(frames, peer, ctx, session)
  const report = (ok: boolean, code?: string): SyncReport => ({
    peer,
    role: 'initiator',
    ok,
    complete: tally.complete,
    ...(code ? { code } : {}),
    rounds: tally.rounds,
    bytesSent: channel.sent,
    bytesReceived: channel.received,
    reconcileBytes: tally.reconcileBytes,
    fetched: tally.fetched,
    pushed: tally.pushed,
    taken: tally.taken,
    refused: admission.refused,
    refusedBytes: admission.refusedBytes,
    ms: Date.now() - started,
  })
  try {
    const { need, have } = await reconcileIds(ctx, channel, tally)
    // Fetch what we lack, but never what we declined, nor list blocks refused before that
    // nothing names yet.
    const ignoreSet = ctx.ignoredNow()
    const wanted = need.map(cidOfId).filter((c) => {
      const k = cidKey(c)
      return !ctx.declined.has(k) && !ignoreSet.has(k) && !(ctx.unnamed.has(k) && !ctx.store.wantsBlock(k))
    })
    queue.push(...wanted)
    await fetchQueued(ctx, channel, admission, queue, tally)
    if (await settle(ctx, admission, !ctx.stopping?.aborted)) throw junkError(admission)
    // Push what the peer lacks.
    for (const batch of packed(ctx.store, recordsFirst(ctx, have.map(cidOfId)))) {
      await channel.send({ type: 'blocks', blocks: batch })
      tally.pushed += batch.length
    }
    await channel.send({ type: 'done' })
    return { report: report(true) }
  } catch (e) {
    const { error, code } = await failed(ctx, admission, e, session)
    return { report: report(false, code), error }
  }
}

/** Reconciles the id sets: the ids this node needs and the ids the peer lacks. */
async function reconcileIds(ctx: SessionContext, channel: CountedChannel, tally: InitiatorTally) {
  const reconciler = createReconciler(ctx.store.ids, { frameSizeLimit: RECONCILE_FRAME_LIMIT })
  const need: Uint8Array[] = []
  const have: Uint8Array[] = []
  let message: Uint8Array | null = reconciler.initiate()
  while (message) {
    // At the round cap, stop reconciling but keep what was found: every id reported so far
    // is right, so it is fetched and pushed now and the next session finds the rest. (An
    // honest peer can need many rounds for a large difference; it is not punished.)
    if (tally.rounds === ctx.maxRounds) {
      tally.complete = false
      break
    }
    tally.rounds++
    tally.reconcileBytes += await channel.send({ type: 'reconcile', payload: message })
    const answer = await channel.read()
    tally.reconcileBytes += answer.bytes
    if (answer.message.type !== 'reconcile') throw unexpected(answer.message)
    const step = reconciler.reconcile(answer.message.payload)
    need.push(...step.need)
    have.push(...step.have)
    message = step.reply
  }
  return { need, have }
}

/**
 * Asks for the CIDs in `queue` until it is empty (it grows with the rest of short answers and
 * with blocks asked for again), taking each answer in.
 */
async function fetchQueued(
  ctx: SessionContext,
  channel: CountedChannel,
  admission: Admission,
  queue: CID[],
  tally: InitiatorTally,
): Promise<void> {
  // Two gets in flight, and the records of one answer checked (on worker threads) while
  // the next answer is on its way.
  const asked: CID[][] = []
  const ask = async () => {
    if (queue.length === 0) return
    const cids = queue.splice(0, MAX_GET_CIDS)
    asked.push(cids)
    await channel.send({ type: 'get', cids })
  }
  const taking: Promise<number>[] = []
  let failure: unknown
  const settleTake = async (p: Promise<number>) => {
    try {
      tally.taken += await p
    } catch (e) {
      failure ??= e
    }
  }
  await ask()
  await ask()
  while (asked.length > 0) {
    const cids = asked.shift()!
    const answer = await readFrom(ctx, channel, admission)
    if (answer.message.type !== 'blocks') throw unexpected(answer.message)
    const got = answer.message.blocks
    const wantedKeys = new Set(cids.map(cidKey))
    const answered = new Set(got.map((b) => blockKey(b, sha256)))
    for (const k of answered)
      if (!wantedKeys.has(k)) throw new SyncError('sync-malformed', 'the peer sent a block nobody asked for')
    tally.fetched += got.length
    // Answers are bounded by the frame: ask again for the rest, later. An empty answer
    // means the peer no longer holds these; move on.
    if (got.length > 0) queue.push(...cids.filter((c) => !answered.has(cidKey(c))))
    await ask()
    taking.push(take(ctx, admission, got))
    if (taking.length > 2) await settleTake(taking.shift()!)
    if (failure) throw failure
  }
  for (const p of taking) await settleTake(p)
  if (failure) throw failure
}

/** Records before list blocks, so that the receiver meets a seal before the lists it names. */
function recordsFirst(ctx: SessionContext, cids: readonly CID[]): CID[] {
  const records: CID[] = []
  const lists: CID[] = []
  for (const c of cids) {
    const bytes = ctx.store.bytesOf(c)
    if (bytes) (isRecordBytes(bytes) ? records : lists).push(c)
  }
  return [...records, ...lists]
}
