/**
 * Joining a federation by its id alone (protocol/SPEC.md §14.4): a new node
 * knows the federation id and one or more bootstrap peers, asks them for the
 * genesis over the sync protocol (`get` of the federation id) and keeps it
 * only if it is a valid genesis whose unsigned CID is that id. A peer serving
 * any other genesis is refused; the next bootstrap peer is tried.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import type { CID } from 'multiformats/cid'
import { decodeRecord, type Verified } from '../protocol/index.js'
import { fastEd25519 } from './ed25519-native.js'
import { NodeError } from './errors.js'
import { createP2P, peerIdOf, topicFor } from './p2p.js'
import { MAX_FRAME_BYTES } from './sync/frames.js'
import { decodeMessage, encodeMessage } from './sync/messages.js'
import { SYNC_PROTOCOL } from './sync/service.js'

export interface FetchGenesisOptions {
  readonly federation: CID
  /** Multiaddrs ending in `/p2p/<peer id>`. */
  readonly bootstrap: readonly string[]
  /** Per peer (default 10 s). */
  readonly timeoutMs?: number
}

export interface FetchedGenesis {
  readonly genesis: Verified<'genesis'>
  /** The peer that served it. */
  readonly from: string
  /** Peers tried before, and why each failed. */
  readonly refused: readonly { peer: string; code: string; message: string }[]
}

export async function fetchGenesis(options: FetchGenesisOptions): Promise<FetchedGenesis> {
  const { federation } = options
  if (options.bootstrap.length === 0)
    throw new NodeError(
      'bootstrap-required',
      'joining by federation id needs at least one --bootstrap peer',
      {
        status: 400,
      },
    )
  const timeoutMs = options.timeoutMs ?? 10_000
  const p2p = await createP2P({
    listen: [],
    bootstrap: [],
    topic: topicFor(federation.toString()),
    validate: () => 'ignore',
    onMessage: () => {},
    helia: false,
  })
  const refused: { peer: string; code: string; message: string }[] = []
  try {
    for (const ma of options.bootstrap) {
      let peer = ma
      try {
        const id = peerIdOf(ma)
        if (!id) throw new NodeError('bad-multiaddr', `${ma} does not end in /p2p/<peer id>`, { status: 400 })
        peer = id
        const signal = AbortSignal.timeout(timeoutMs)
        await p2p.libp2p.dial(multiaddr(ma), { signal })
        const stream = await p2p.libp2p.dialProtocol(peerIdFromString(id), SYNC_PROTOCOL, { signal })
        const lp = lpStream(stream, { maxDataLength: MAX_FRAME_BYTES })
        await lp.write(encodeMessage({ type: 'get', cids: [federation] }), { signal })
        const answer = decodeMessage(await lp.read({ signal }))
        await lp.write(encodeMessage({ type: 'done' }), { signal }).catch(() => {})
        await stream.close().catch(() => {})
        if (answer.type !== 'blocks' || answer.blocks.length === 0)
          throw new NodeError('genesis-unavailable', 'the peer does not hold this federation')
        const d = decodeRecord(answer.blocks[0]!, { federation, ed25519: fastEd25519 })
        if (!d.ok || d.value.record.kind !== 'genesis')
          throw new NodeError(
            'genesis-mismatch',
            `the peer served a genesis that is not federation ${federation}: ${d.ok ? 'not a genesis' : d.message}`,
          )
        return { genesis: d.value as Verified<'genesis'>, from: id, refused }
      } catch (e) {
        const code = e instanceof NodeError ? e.code : 'peer-unreachable'
        refused.push({ peer, code, message: (e as Error).message })
      }
    }
  } finally {
    await p2p.stop()
  }
  const mismatch = refused.find((r) => r.code === 'genesis-mismatch')
  throw new NodeError(
    mismatch ? 'genesis-mismatch' : 'genesis-unavailable',
    `no bootstrap peer served the genesis of ${federation}: ${refused.map((r) => `${r.peer}: ${r.message}`).join('; ')}`,
    { status: 502 },
  )
}
