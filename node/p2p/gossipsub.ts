/**
 * Gossip of records over gossipsub (ADR 0018 for the scoring): unsigned
 * messages (`StrictNoSign`, records carry their own signatures) whose id is
 * the sha256 of their data, so the same record published by two nodes, or
 * twice by one, is delivered once per seen-cache window.
 *
 * - The caller's `validate` runs inside gossipsub (a topic validator) before
 *   a message is delivered or forwarded. It is wrapped: a throw, or any
 *   answer other than 'accept' | 'reject' | 'ignore', becomes 'ignore' and is
 *   logged. A message above `MAX_GOSSIP_MESSAGE_BYTES` is rejected before
 *   `validate`. Only 'reject' lowers the sending peer's score.
 * - `onMessage` is called once per accepted message received from another
 *   peer (never for our own publishes); it may throw, that is logged. The
 *   `from` passed to both is the peer the message came from (the propagation
 *   source): unsigned gossip names no author.
 * - `publish` is best effort: it never rejects for lack of peers or for a
 *   duplicate, it resolves `{delivered: 0}`. It rejects only for a caller bug
 *   (bytes that are not a Uint8Array, or too large).
 */
import { createHash } from 'node:crypto'
import {
  type GossipSub,
  type GossipsubOpts,
  type Message,
  StrictNoSign,
  TopicValidatorResult,
} from '@libp2p/gossipsub'
import { LIMITS } from '../../protocol/limits.js'
import { errorText, type Log } from './log.js'

export type Verdict = 'accept' | 'reject' | 'ignore'

/** The largest gossip payload: the largest record (a genesis, 256 KiB). */
export const MAX_GOSSIP_MESSAGE_BYTES = Math.max(LIMITS.maxRecordBytes, LIMITS.maxGenesisBytes)

/**
 * The largest gossipsub RPC frame we decode. One frame can carry several
 * messages plus control data: an IWANT answer puts every requested message in
 * one RPC, and an IHAVE can list thousands of 32-byte ids. A frame limit near
 * one record (≈300 KiB) would make an honest peer's IWANT answer with two
 * large records kill our inbound stream (gossipsub then drops the peer), so
 * the frame limit is 1 MiB and the per-message limit is enforced separately.
 */
export const MAX_GOSSIP_FRAME_BYTES = 1024 * 1024

/** Gossip score below which a peer's messages are dropped, and it is disconnected and refused. */
export const GRAYLIST_THRESHOLD = -80

const GOSSIP_OUTBOUND_BUFFER_BYTES = 16 * 1024 * 1024

function messageId(msg: Message): Uint8Array {
  return new Uint8Array(createHash('sha256').update(msg.data).digest())
}

/** Options for our topic and `otherTopics` (holding announcements), each allowed and scored alike. */
export function gossipOptions(topic: string, otherTopics: readonly string[] = []): Partial<GossipsubOpts> {
  const scores = scoreParams(topic)
  return {
    globalSignaturePolicy: StrictNoSign,
    msgIdFn: messageId,
    fallbackToFloodsub: false,
    // Send our own publishes to every subscribed peer, not only the mesh:
    // federations are small and records are rare.
    floodPublish: true,
    emitSelf: false,
    doPX: false,
    // Deliberately false: with `true`, a publish with no peers still enters
    // the seen-cache (2 min), and re-publishing the same record once peers are
    // back is silently dropped as a duplicate. With `false` gossipsub throws
    // NoPeersSubscribedToTopic before caching; `publish` below turns that
    // into {delivered: 0}, and a later publish of the same bytes goes out.
    allowPublishToZeroTopicPeers: false,
    ignoreDuplicatePublishError: true,
    allowedTopics: [topic, ...otherTopics],
    maxInboundDataLength: MAX_GOSSIP_FRAME_BYTES,
    maxOutboundBufferSize: GOSSIP_OUTBOUND_BUFFER_BYTES,
    maxInboundStreams: 4,
    maxOutboundStreams: 4,
    scoreParams: {
      ...scores,
      topics: Object.fromEntries([topic, ...otherTopics].map((t) => [t, scores.topics![topic]!])),
    },
    scoreThresholds: {
      gossipThreshold: -10,
      publishThreshold: -50,
      graylistThreshold: GRAYLIST_THRESHOLD,
      acceptPXThreshold: 10,
      opportunisticGraftThreshold: 20,
    },
  }
}

/** Topic score params for our topic: without them gossipsub never penalises invalid messages. */
function scoreParams(topic: string): GossipsubOpts['scoreParams'] {
  return {
    // Peers of one federation may share a NAT or a host; colocation is not
    // misbehaviour here, but keep libp2p's default cliff (more than 10).
    IPColocationFactorThreshold: 10,
    IPColocationFactorWeight: -5,
    topicScoreCap: 10,
    decayInterval: 1000,
    decayToZero: 0.01,
    retainScore: 60 * 60 * 1000,
    topics: {
      [topic]: {
        topicWeight: 1,
        // P1: a little credit for time in the mesh, up to 3.
        timeInMeshWeight: 0.01,
        timeInMeshQuantum: 1000,
        timeInMeshCap: 300,
        // P2: credit for first deliveries, up to 10.
        firstMessageDeliveriesWeight: 0.5,
        firstMessageDeliveriesDecay: 0.9,
        firstMessageDeliveriesCap: 20,
        // P3/P3b off: records are sparse, so "too few mesh deliveries"
        // would punish honest, quiet peers.
        meshMessageDeliveriesWeight: 0,
        meshMessageDeliveriesDecay: 0.5,
        meshMessageDeliveriesCap: 100,
        meshMessageDeliveriesThreshold: 1,
        meshMessageDeliveriesWindow: 10,
        meshMessageDeliveriesActivation: 5000,
        meshFailurePenaltyWeight: 0,
        meshFailurePenaltyDecay: 0.5,
        // P4: invalid (rejected) messages, squared. One costs 10 (the
        // gossip threshold), three put the peer below the graylist (-80).
        // Decays with a half-life of about 2.3 minutes.
        invalidMessageDeliveriesWeight: -10,
        invalidMessageDeliveriesDecay: 0.995,
      },
    },
  }
}

export interface GossipHandlers {
  readonly topic: string
  /** Our peer id: our own messages are not handed to `onMessage`. */
  readonly peerId: string
  readonly validate: (bytes: Uint8Array, from: string) => Verdict
  readonly onMessage: (bytes: Uint8Array, from: string) => void
  readonly log: Log
}

/** Gossip on `topic` of a started gossipsub: what the P2P interface offers of it. */
export interface Gossip {
  publish(bytes: Uint8Array): Promise<{ delivered: number }>
  subscribers(): string[]
  meshPeers(): string[]
  score(peerId: string): number
}

/** Wires `validate` and `onMessage` to `pubsub` and subscribes to the topic. */
export function joinGossip(pubsub: GossipSub, handlers: GossipHandlers): Gossip {
  const { topic, log } = handlers
  pubsub.topicValidators.set(topic, (peer, msg) => validateMessage(msg.data, peer.toString(), handlers))
  pubsub.addEventListener('gossipsub:message', (evt) => {
    const { msg, propagationSource } = evt.detail
    if (msg.topic !== topic) return
    const from = propagationSource.toString()
    if (from === handlers.peerId) return
    try {
      handlers.onMessage(msg.data, from)
    } catch (err) {
      log('error', 'gossip-onmessage-threw', { from, error: errorText(err) })
    }
  })
  pubsub.subscribe(topic)
  return {
    async publish(bytes) {
      if (!(bytes instanceof Uint8Array)) throw new TypeError('publish: bytes must be a Uint8Array')
      if (bytes.length > MAX_GOSSIP_MESSAGE_BYTES) {
        throw new RangeError(`publish: ${bytes.length} bytes exceeds ${MAX_GOSSIP_MESSAGE_BYTES}`)
      }
      try {
        const result = await pubsub.publish(topic, bytes)
        return { delivered: result.recipients.length }
      } catch (err) {
        // PublishError.NoPeersSubscribedToTopic, PublishError.Duplicate, or a
        // stream error: sync repairs whatever gossip misses.
        log('debug', 'gossip-publish-undelivered', { error: errorText(err) })
        return { delivered: 0 }
      }
    },
    subscribers: () => pubsub.getSubscribers(topic).map((id) => id.toString()),
    meshPeers: () => {
      const mesh = (pubsub as unknown as { getMeshPeers?: (t: string) => string[] }).getMeshPeers
      return typeof mesh === 'function' ? mesh.call(pubsub, topic) : []
    },
    score: (id) => scoreOf(pubsub, id),
  }
}

/** The gossipsub score we give a peer (0 for a peer we do not know, or a gossipsub without scores). */
export function scoreOf(pubsub: GossipSub, peerId: string): number {
  const getScore = (pubsub as unknown as { getScore?: (p: string) => number }).getScore
  return typeof getScore === 'function' ? getScore.call(pubsub, peerId) : 0
}

/** The caller's verdict on one message, wrapped: a throw or an unknown answer is 'ignore'. */
function validateMessage(data: Uint8Array, from: string, handlers: GossipHandlers): TopicValidatorResult {
  const { log } = handlers
  if (data.length > MAX_GOSSIP_MESSAGE_BYTES) {
    log('warn', 'gossip-oversize', { from, bytes: data.length })
    return TopicValidatorResult.Reject
  }
  let verdict: unknown
  try {
    verdict = handlers.validate(data, from)
  } catch (err) {
    log('error', 'gossip-validator-threw', { from, error: errorText(err) })
    return TopicValidatorResult.Ignore
  }
  switch (verdict) {
    case 'accept':
      return TopicValidatorResult.Accept
    case 'reject':
      log('debug', 'gossip-rejected', { from })
      return TopicValidatorResult.Reject
    case 'ignore':
      return TopicValidatorResult.Ignore
    default:
      log('error', 'gossip-validator-bad-verdict', { from, verdict: String(verdict) })
      return TopicValidatorResult.Ignore
  }
}
