/**
 * A sync session as responder: answers the initiator's reconciliation and
 * gets until it says done, and takes in the blocks it pushes unasked.
 */
import { failed, junkError, newSessionState, readFrom, settle, take } from './admission.js'
import { countedChannel, type FrameChannel } from './channel.js'
import { packed, RECONCILE_FRAME_LIMIT, type SessionContext } from './context.js'
import { SyncError } from './errors.js'
import { createReconciler, MAX_ROUNDS } from './reconcile.js'
import type { SessionOutcome, SyncReport } from './session.js'

export async function respond(
  ctx: SessionContext,
  frames: FrameChannel,
  peer: string,
  session: AbortSignal,
): Promise<SessionOutcome> {
  const { store } = ctx
  const started = Date.now()
  const s = newSessionState(ctx, peer)
  const ch = countedChannel(frames, peer, ctx, session)
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
      const { message, bytes } = await readFrom(ctx, ch, s)
      if (message.type === 'done') break
      if (message.type === 'error') throw new SyncError('sync-malformed', `the peer gave up: ${message.code}`)
      if (message.type === 'reconcile') {
        if (++rounds > MAX_ROUNDS)
          throw new SyncError('sync-malformed', `no agreement after ${MAX_ROUNDS} rounds`)
        rec ??= createReconciler(store.ids, { frameSizeLimit: RECONCILE_FRAME_LIMIT })
        const step = rec.reconcile(message.payload)
        reconcileBytes += bytes
        reconcileBytes += await ch.send({ type: 'reconcile', payload: step.reply ?? new Uint8Array(0) })
      } else if (message.type === 'get') {
        // One answer per get: what fits a frame, in the order asked; the initiator asks again.
        const [first = []] = packed(store, message.cids)
        await ch.send({ type: 'blocks', blocks: first })
      } else {
        // What the initiator says we lack: records validated like gossip, list blocks kept
        // only where a held record names them.
        pushed += message.blocks.length
        taken += await take(ctx, s, message.blocks)
      }
    }
    if (await settle(ctx, s, !ctx.stopping?.aborted)) throw junkError(s)
    return { report: report(true) }
  } catch (e) {
    const { error, code } = await failed(ctx, s, e, session)
    return { report: report(false, code), error }
  }
}
