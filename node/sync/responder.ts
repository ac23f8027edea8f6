/**
 * A sync session as responder: answers the initiator's reconciliation and
 * gets until it says done, and takes in the blocks it pushes unasked.
 */
import { failed, junkError, newAdmission, readFrom, settle, take } from './admission.js'
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
  const admission = newAdmission(ctx, peer)
  const channel = countedChannel(frames, peer, ctx, session)
  let rounds = 0
  let reconcileBytes = 0
  let pushed = 0
  let taken = 0
  let reconciler: ReturnType<typeof createReconciler> | undefined
  const report = (ok: boolean, code?: string): SyncReport => ({
    peer,
    role: 'responder',
    ok,
    complete: true,
    ...(code ? { code } : {}),
    rounds,
    bytesSent: channel.sent,
    bytesReceived: channel.received,
    reconcileBytes,
    fetched: pushed,
    pushed: 0,
    taken,
    refused: admission.refused,
    refusedBytes: admission.refusedBytes,
    ms: Date.now() - started,
  })
  try {
    for (;;) {
      const { message, bytes } = await readFrom(ctx, channel, admission)
      if (message.type === 'done') break
      if (message.type === 'error') throw new SyncError('sync-malformed', `the peer gave up: ${message.code}`)
      if (message.type === 'reconcile') {
        if (++rounds > MAX_ROUNDS)
          throw new SyncError('sync-malformed', `no agreement after ${MAX_ROUNDS} rounds`)
        reconciler ??= createReconciler(store.ids, { frameSizeLimit: RECONCILE_FRAME_LIMIT })
        const step = reconciler.reconcile(message.payload)
        reconcileBytes += bytes
        reconcileBytes += await channel.send({ type: 'reconcile', payload: step.reply ?? new Uint8Array(0) })
      } else if (message.type === 'get') {
        // One answer per get: what fits a frame, in the order asked; the initiator asks again.
        const [first = []] = packed(store, message.cids)
        await channel.send({ type: 'blocks', blocks: first })
      } else {
        // What the initiator says we lack: records validated like gossip, list blocks kept
        // only where a held record names them.
        pushed += message.blocks.length
        taken += await take(ctx, admission, message.blocks)
      }
    }
    if (await settle(ctx, admission, !ctx.stopping?.aborted)) throw junkError(admission)
    return { report: report(true) }
  } catch (e) {
    const { error, code } = await failed(ctx, admission, e, session)
    return { report: report(false, code), error }
  }
}
