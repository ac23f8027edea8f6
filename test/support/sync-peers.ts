/**
 * Sync peers that are not nodes, for the tests of sync against strangers and bad answers
 * (protocol/SPEC.md §14): a bare libp2p peer on 127.0.0.1 that takes no gossip, a
 * sync responder that answers however the test likes, and one that reconciles honestly over
 * the blocks it holds.
 */
import { createHash } from 'node:crypto'
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import type { CID } from 'multiformats/cid'
import { createP2P, type P2P } from '../../node/p2p.js'
import { createIdSet } from '../../node/sync/id-set.js'
import { decodeMessage, encodeMessage } from '../../node/sync/messages.js'
import { createReconciler } from '../../node/sync/reconcile.js'
import { SYNC_PROTOCOL } from '../../node/sync/service.js'

/** A libp2p peer with a fresh identity on a loopback port: no bootstrap, no Helia, gossip on `topic` ignored. */
export function bareP2P(topic: string): Promise<P2P> {
  return createP2P({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: [],
    topic,
    validate: () => 'ignore',
    onMessage: () => {},
    helia: false,
  })
}

/** Answers every sync stream opened to `p2p` with `answer`; what it throws is dropped. */
export async function serveSync(p2p: P2P, answer: (stream: Stream) => Promise<void>): Promise<void> {
  await p2p.libp2p.handle(SYNC_PROTOCOL, (stream: Stream) => {
    void answer(stream).catch(() => {})
  })
}

/**
 * Serves sync on `p2p` as a responder holding `blocks`: honest reconciliation over them, and
 * every get answered with the blocks `answerGet` picks for the CIDs asked for. Returns how many
 * gets it has answered so far.
 */
export async function serveBlocks(
  p2p: P2P,
  blocks: readonly Uint8Array[],
  answerGet: (cids: readonly CID[]) => Uint8Array[],
): Promise<{ gets: () => number }> {
  let gets = 0
  await serveSync(p2p, async (stream) => {
    const lp = lpStream(stream, { maxDataLength: 2 * 1024 * 1024 })
    const ids = createIdSet(blocks.map((b) => createHash('sha256').update(b).digest()))
    const rec = createReconciler(ids, { frameSizeLimit: 1024 * 1024 - 4096 })
    for (;;) {
      const m = decodeMessage(await lp.read())
      if (m.type === 'reconcile')
        await lp.write(encodeMessage({ type: 'reconcile', payload: rec.reconcile(m.payload).reply! }))
      else if (m.type === 'get') {
        gets++
        await lp.write(encodeMessage({ type: 'blocks', blocks: answerGet(m.cids) }))
      } else if (m.type === 'done') break
    }
    await stream.close()
  })
  return { gets: () => gets }
}
