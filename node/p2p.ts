/**
 * The node's network layer (DESIGN.md §6 "The node"): one libp2p 3 node for a
 * private federation, gossipsub for records, and (unless `helia: false`) a
 * Helia node built from its light pieces on that same libp2p, for bitswap.
 *
 * What the node runs: TCP, Noise, Yamux, Identify, Ping, gossipsub; Helia's
 * blockstore with the bitswap block broker. What it does not run: public
 * bootstrap lists, DHT, mDNS, autoNAT, autoTLS, UPnP, circuit relay,
 * delegated routing, public HTTP gateways. Peers are found only through the
 * configured bootstrap multiaddrs (and whoever dials in).
 *
 * Invariants:
 * - Gossip is unsigned (`StrictNoSign`): records carry their own signatures.
 *   A message's id is sha256 of its data, so the same record published by two
 *   nodes, or twice by one node, is delivered once (per seen-cache window).
 * - The caller's `validate` runs inside gossipsub (a topic validator) before a
 *   message is delivered or forwarded. It is wrapped: a throw, or any answer
 *   other than 'accept' | 'reject' | 'ignore', becomes 'ignore' and is logged.
 *   A message above `MAX_GOSSIP_MESSAGE_BYTES` is rejected before `validate`.
 *   Only 'reject' lowers the sending peer's score (topic score params are set
 *   for our topic; without them gossipsub never penalises invalid messages).
 * - `onMessage` is called once per accepted message received from another
 *   peer (never for our own publishes); it may throw, that is logged.
 *   The `from` passed to `validate` and `onMessage` is the peer the message
 *   came from (the propagation source): unsigned gossip names no author.
 * - `publish` is best effort: it never rejects for lack of peers or for a
 *   duplicate, it resolves `{delivered: 0}`. It rejects only for a caller bug
 *   (bytes that are not a Uint8Array, or too large).
 * - Bootstrap peers are dialled at start without blocking `createP2P`, and
 *   re-dialled with capped, jittered exponential backoff whenever we are not
 *   connected to them, until `stop`. Dial failures are logged, never thrown.
 * - Limits on untrusted input: connection manager `maxConnections`, pending
 *   inbound upgrades, yamux streams per connection and read buffers, gossipsub
 *   RPC frame size, per-message size, allowed topics, outbound buffer.
 * - `stop` stops Helia (which stops libp2p) and then libp2p; it never closes
 *   the blockstore or datastore it was given (their owner closes them).
 */
import { createHash } from 'node:crypto'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import {
  type GossipSub,
  type GossipsubOpts,
  gossipsub,
  type Message,
  StrictNoSign,
  TopicValidatorResult,
} from '@libp2p/gossipsub'
import { type Identify, identify } from '@libp2p/identify'
import type { PrivateKey } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { peerIdFromString } from '@libp2p/peer-id'
import { type Ping, ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { MemoryDatastore } from 'datastore-core'
import { createHeliaLight, type Helia, type HeliaInit } from 'helia'
import { createLibp2p, type Libp2p, type Libp2pOptions } from 'libp2p'
import { LIMITS } from '../protocol/limits.js'

export type { PrivateKey }
export type Blockstore = NonNullable<HeliaInit['blockstore']>
export type Datastore = NonNullable<HeliaInit['datastore']>

export type Verdict = 'accept' | 'reject' | 'ignore'
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type Log = (level: LogLevel, event: string, fields?: object) => void

export interface P2PServices extends Record<string, unknown> {
  identify: Identify
  ping: Ping
  pubsub: GossipSub
}

export type P2PLibp2p = Libp2p<P2PServices>
export type P2PHelia = Helia & { libp2p: P2PLibp2p }

export interface P2POptions {
  /** Ed25519 key giving the node its peer id; the caller persists it. A fresh one if absent. */
  peerKey?: PrivateKey
  /** Listen multiaddrs, e.g. `['/ip4/127.0.0.1/tcp/0']`. */
  listen: string[]
  /** Multiaddrs ending in `/p2p/<peer id>`, dialled at start and kept connected. */
  bootstrap: string[]
  /** The gossip topic, see `topicFor`. */
  topic: string
  /** Synchronous, fast, never fetches. Wrapped: a throw becomes 'ignore'. */
  validate: (bytes: Uint8Array, from: string) => Verdict
  /** Every accepted message from another peer, once. */
  onMessage: (bytes: Uint8Array, from: string) => void
  log?: Log
  /** Helia's block store (weights). In memory if absent. Never closed here. */
  blockstore?: Blockstore
  /** Helia's datastore (pins; libp2p's peer store stays in memory). In memory if absent. Never closed here. */
  datastore?: Datastore
  /** Build Helia (bitswap) on the same libp2p. Default true. */
  helia?: boolean
  /** Bootstrap re-dial backoff: first delay and cap, in ms. Defaults 1 s and 60 s. */
  redial?: { initialMs?: number; maxMs?: number }
}

export interface PeerSummary {
  id: string
  addresses: string[]
}

export interface P2P {
  libp2p: P2PLibp2p
  helia?: P2PHelia
  peerId: string
  /** Our listen addresses, each ending in `/p2p/<our id>`. */
  addresses(): string[]
  /** Connected peers with the remote addresses of their open connections. */
  peers(): PeerSummary[]
  /** Best effort; resolves with the number of peers the message was sent to. */
  publish(bytes: Uint8Array): Promise<{ delivered: number }>
  /** Peers known to be subscribed to our topic. */
  subscribers(): string[]
  /** Our topic mesh (peers we forward full messages to). */
  meshPeers(): string[]
  /** The gossipsub score we give a peer (0 for a peer we do not know). */
  score(peerId: string): number
  dial(ma: string): Promise<void>
  /** Closes our connections to a peer. A bootstrap peer will be re-dialled by the backoff loop. */
  hangUp(peerId: string): Promise<void>
  /**
   * Refuses a peer (no dials either way) and closes our connections to it, until `unblock`:
   * how tests partition live nodes, and how an operator cuts off a peer.
   */
  block(peerId: string): Promise<void>
  unblock(peerId: string): void
  /** Hangs up on a peer and refuses it for `ms` (a peer that broke a protocol). */
  ban(peerId: string, ms: number): Promise<void>
  stop(): Promise<void>
}

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

const MAX_CONNECTIONS = 64
const DIAL_TIMEOUT_MS = 10_000
const GOSSIP_OUTBOUND_BUFFER_BYTES = 16 * 1024 * 1024

/** The gossip topic of a federation (DESIGN.md §6). */
/** Gossip score below which a peer's messages are dropped, and it is disconnected and refused. */
export const GRAYLIST_THRESHOLD = -80
/** How long a peer that fell below the graylist threshold is refused. */
export const BAN_MS = 60 * 60 * 1000

export function topicFor(federationId: string): string {
  return `allmende/${federationId}/records/1`
}

/** A fresh Ed25519 peer key. */
export async function generatePeerKey(): Promise<PrivateKey> {
  return generateKeyPair('Ed25519')
}

/** The protobuf-marshalled private key (libp2p's format), for a 0600 file. */
export function peerKeyToBytes(key: PrivateKey): Uint8Array {
  return privateKeyToProtobuf(key)
}

/** Inverse of `peerKeyToBytes`; only Ed25519 keys are accepted. */
export function peerKeyFromBytes(bytes: Uint8Array): PrivateKey {
  const key = privateKeyFromProtobuf(bytes)
  if (key.type !== 'Ed25519') {
    throw new TypeError(`peer key: expected an Ed25519 key, got ${key.type}`)
  }
  return key
}

function messageId(msg: Message): Uint8Array {
  return new Uint8Array(createHash('sha256').update(msg.data).digest())
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err)
}

/** The peer id in a multiaddr's last `/p2p/` component, if any. */
export function peerIdOf(ma: string): string | undefined {
  const components = multiaddr(ma).getComponents()
  for (let i = components.length - 1; i >= 0; i--) {
    const c = components[i]
    if (c?.name === 'p2p' && c.value != null) return c.value
  }
  return undefined
}

function gossipOptions(options: P2POptions): Partial<GossipsubOpts> {
  const { topic } = options
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
    allowedTopics: [topic],
    maxInboundDataLength: MAX_GOSSIP_FRAME_BYTES,
    maxOutboundBufferSize: GOSSIP_OUTBOUND_BUFFER_BYTES,
    maxInboundStreams: 4,
    maxOutboundStreams: 4,
    scoreParams: {
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

function noLog(): void {}

/** Build, start and subscribe a node. Rejects only if the node cannot start (e.g. a listen address is taken). */
export async function createP2P(options: P2POptions): Promise<P2P> {
  const log = options.log ?? noLog
  const { topic } = options
  if (options.peerKey != null && options.peerKey.type !== 'Ed25519') {
    throw new TypeError(`createP2P: peerKey must be an Ed25519 key, got ${options.peerKey.type}`)
  }
  const peerKey = options.peerKey ?? (await generatePeerKey())

  // Peers whose gossip score fell below the graylist threshold: gossipsub drops their
  // messages only after decrypting and parsing each frame, so a flooding peer still costs
  // work per message. We hang up on them and refuse them until their ban expires.
  const banned = new Map<string, number>()
  const blocked = new Set<string>()
  const isBanned = (id: string): boolean => {
    if (blocked.has(id)) return true
    const until = banned.get(id)
    if (until === undefined) return false
    if (until > Date.now()) return true
    banned.delete(id)
    return false
  }
  const libp2pOptions: Libp2pOptions<P2PServices> = {
    privateKey: peerKey,
    connectionGater: {
      denyDialPeer: (peer) => isBanned(peer.toString()),
      denyInboundEncryptedConnection: (peer) => isBanned(peer.toString()),
      denyOutboundEncryptedConnection: (peer) => isBanned(peer.toString()),
    },
    addresses: { listen: options.listen },
    transports: [tcp({ maxConnections: MAX_CONNECTIONS + 16 })],
    connectionEncrypters: [noise()],
    streamMuxers: [
      yamux({
        maxInboundStreams: 256,
        maxOutboundStreams: 256,
        maxEarlyStreams: 10,
        streamOptions: { maxReadBufferLength: 4 * 1024 * 1024, inactivityTimeout: 120_000 },
      }),
    ],
    connectionManager: {
      maxConnections: MAX_CONNECTIONS,
      maxIncomingPendingConnections: 10,
      maxParallelDials: 16,
      dialTimeout: DIAL_TIMEOUT_MS,
    },
    peerDiscovery: [],
    peerRouters: [],
    contentRouters: [],
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub(gossipOptions(options)),
    },
  }

  let libp2p: P2PLibp2p
  let helia: P2PHelia | undefined
  if (options.helia !== false) {
    // Helia 7.1.15 exports `createHeliaLight` (no routers, no block brokers);
    // `withLibp2pLight` (from @helia/libp2p, installed with helia) passes our
    // config to createLibp2p unchanged (no default services, no bootstrap
    // list, no DHT, unlike `withLibp2p`/`createHelia`) and gives libp2p
    // Helia's datastore; `withBitswap` adds the bitswap block broker on that
    // same libp2p. `createHelia({libp2p})` no longer accepts a libp2p
    // instance in this version (the option is a libp2p *config*).
    const light = createHeliaLight({
      ...(options.blockstore ? { blockstore: options.blockstore } : {}),
      ...(options.datastore ? { datastore: options.datastore } : {}),
    })
    // libp2p's peer store gets a datastore of its own, in memory: every peer that connects (any
    // stranger with a fresh id) writes a record there, and nothing a stranger sends is kept on
    // disk. Helia's datastore (pins) stays the one given. Bootstrap peers come from the config.
    const withP2P = withLibp2pLight(light, { ...libp2pOptions, datastore: new MemoryDatastore() })
    const h = withBitswap(withP2P, {
      maxInboundStreams: 32,
      maxOutboundStreams: 128,
      maxIncomingMessageSize: 2 * 1024 * 1024,
      maxOutgoingMessageSize: 2 * 1024 * 1024,
      maxWantlistSize: 1024,
    })
    try {
      await h.start()
    } catch (err) {
      await h.stop().catch(() => {})
      throw err
    }
    helia = h as P2PHelia
    libp2p = helia.libp2p
  } else {
    libp2p = await createLibp2p({
      ...libp2pOptions,
      ...(options.datastore ? { datastore: options.datastore } : {}),
    })
  }

  const pubsub = libp2p.services.pubsub
  const peerId = libp2p.peerId.toString()

  pubsub.topicValidators.set(topic, (peer, msg) => {
    const from = peer.toString()
    if (msg.data.length > MAX_GOSSIP_MESSAGE_BYTES) {
      log('warn', 'gossip-oversize', { from, bytes: msg.data.length })
      return TopicValidatorResult.Reject
    }
    let verdict: unknown
    try {
      verdict = options.validate(msg.data, from)
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
  })

  pubsub.addEventListener('gossipsub:message', (evt) => {
    const { msg, propagationSource } = evt.detail
    if (msg.topic !== topic) return
    const from = propagationSource.toString()
    if (from === peerId) return
    try {
      options.onMessage(msg.data, from)
    } catch (err) {
      log('error', 'gossip-onmessage-threw', { from, error: errorText(err) })
    }
  })

  pubsub.subscribe(topic)

  const banSweep = setInterval(() => {
    const getScore = (pubsub as unknown as { getScore?: (p: string) => number }).getScore
    if (typeof getScore !== 'function') return
    for (const peer of libp2p.getPeers()) {
      const id = peer.toString()
      if (isBanned(id) || getScore.call(pubsub, id) >= GRAYLIST_THRESHOLD) continue
      banned.set(id, Date.now() + BAN_MS)
      log('warn', 'peer-banned', { peer: id, score: getScore.call(pubsub, id), minutes: BAN_MS / 60_000 })
      libp2p.hangUp(peer).catch(() => {})
    }
  }, 500)
  banSweep.unref?.()

  // Bootstrap peers: dial now, re-dial with backoff while not connected.
  const initialMs = options.redial?.initialMs ?? 1000
  const maxMs = options.redial?.maxMs ?? 60_000
  interface BootstrapPeer {
    ma: string
    id: string
    failures: number
    timer?: NodeJS.Timeout
    dialing: boolean
  }
  const bootstrap = new Map<string, BootstrapPeer>()
  for (const ma of options.bootstrap) {
    let id: string | undefined
    try {
      id = peerIdOf(ma)
    } catch (err) {
      log('warn', 'bootstrap-bad-multiaddr', { multiaddr: ma, error: errorText(err) })
      continue
    }
    if (id == null) {
      log('warn', 'bootstrap-no-peer-id', { multiaddr: ma })
      continue
    }
    if (id === peerId || bootstrap.has(id)) continue
    bootstrap.set(id, { ma, id, failures: 0, dialing: false })
  }

  let stopping = false
  let stopped: Promise<void> | undefined
  const connectedTo = (id: string): boolean => libp2p.getConnections(peerIdFromString(id)).length > 0

  const schedule = (peer: BootstrapPeer): void => {
    if (stopping || peer.timer != null) return
    const base = Math.min(maxMs, initialMs * 2 ** Math.min(peer.failures, 30))
    const delay = Math.round(base / 2 + (Math.random() * base) / 2)
    peer.timer = setTimeout(() => {
      peer.timer = undefined
      void connect(peer)
    }, delay)
    peer.timer.unref()
  }

  const connect = async (peer: BootstrapPeer): Promise<void> => {
    if (stopping || peer.dialing) return
    if (connectedTo(peer.id)) {
      peer.failures = 0
      return
    }
    peer.dialing = true
    try {
      await libp2p.dial(multiaddr(peer.ma), { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      peer.failures = 0
      log('info', 'bootstrap-connected', { peer: peer.id })
    } catch (err) {
      peer.failures++
      if (!stopping) {
        log(peer.failures === 1 ? 'warn' : 'debug', 'bootstrap-dial-failed', {
          peer: peer.id,
          multiaddr: peer.ma,
          failures: peer.failures,
          error: errorText(err),
        })
      }
    } finally {
      peer.dialing = false
    }
    if (!stopping && !connectedTo(peer.id)) schedule(peer)
  }

  libp2p.addEventListener('peer:connect', (evt) => {
    log('info', 'peer-connected', { peer: evt.detail.toString() })
  })
  libp2p.addEventListener('peer:disconnect', (evt) => {
    const id = evt.detail.toString()
    log('info', 'peer-disconnected', { peer: id })
    const peer = bootstrap.get(id)
    if (peer != null && !stopping) {
      peer.failures = 0
      schedule(peer)
    }
  })

  for (const peer of bootstrap.values()) void connect(peer)

  const p2p: P2P = {
    libp2p,
    ...(helia ? { helia } : {}),
    peerId,
    addresses: () => libp2p.getMultiaddrs().map((ma) => ma.toString()),
    peers: () =>
      libp2p.getPeers().map((id) => ({
        id: id.toString(),
        addresses: [...new Set(libp2p.getConnections(id).map((c) => c.remoteAddr.toString()))],
      })),
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
    score: (id) => {
      const getScore = (pubsub as unknown as { getScore?: (p: string) => number }).getScore
      return typeof getScore === 'function' ? getScore.call(pubsub, id) : 0
    },
    async dial(ma) {
      await libp2p.dial(multiaddr(ma), { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
    },
    async hangUp(id) {
      await libp2p.hangUp(peerIdFromString(id))
    },
    async block(id) {
      blocked.add(id)
      await libp2p.hangUp(peerIdFromString(id))
    },
    async ban(id, ms) {
      banned.set(id, Date.now() + ms)
      await libp2p.hangUp(peerIdFromString(id))
    },
    unblock(id) {
      blocked.delete(id)
      const peer = bootstrap.get(id)
      if (peer != null && !stopping) void connect(peer)
    },
    stop() {
      stopped ??= (async () => {
        stopping = true
        clearInterval(banSweep)
        for (const peer of bootstrap.values()) {
          if (peer.timer != null) clearTimeout(peer.timer)
          peer.timer = undefined
        }
        try {
          if (helia != null) await helia.stop()
        } finally {
          await libp2p.stop()
        }
      })()
      return stopped
    },
  }
  return p2p
}
