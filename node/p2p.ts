/**
 * The node's network layer, assembled from its parts: one libp2p 3 node for a
 * private federation, gossipsub for records (p2p/gossipsub.ts), and (unless
 * `helia: false`) a Helia node built from its light pieces on that same
 * libp2p, for bitswap. Peers come from the bootstrap list (p2p/bootstrap.ts)
 * and whoever dials in; refused peers are one list (p2p/bans.ts). Sync runs
 * on the same libp2p (protocol/SPEC.md §14).
 *
 * What the node runs: TCP, Noise, Yamux, Identify, Ping, gossipsub; Helia's
 * blockstore with the bitswap block broker. What it does not run: public
 * bootstrap lists, DHT, mDNS, autoNAT, autoTLS, UPnP, circuit relay,
 * delegated routing, public HTTP gateways.
 *
 * Limits on untrusted input: connection manager `maxConnections`, pending
 * inbound upgrades, yamux streams per connection and read buffers, gossipsub
 * RPC frame size, per-message size, allowed topics, outbound buffer. `stop`
 * stops Helia (which stops libp2p) and then libp2p; it never closes the
 * blockstore or datastore it was given (their owner closes them).
 */
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { type GossipSub, gossipsub } from '@libp2p/gossipsub'
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
import { createPeerBans, sweepGraylisted } from './p2p/bans.js'
import { createBootstrap } from './p2p/bootstrap.js'
import { gossipOptions, joinGossip, type Verdict } from './p2p/gossipsub.js'
import { type Log, noLog } from './p2p/log.js'
import { generatePeerKey } from './p2p/peer-key.js'

export { BAN_MS } from './p2p/bans.js'
export { peerIdOf } from './p2p/bootstrap.js'
export {
  GRAYLIST_THRESHOLD,
  MAX_GOSSIP_FRAME_BYTES,
  MAX_GOSSIP_MESSAGE_BYTES,
  type Verdict,
} from './p2p/gossipsub.js'
export type { Log, LogLevel } from './p2p/log.js'
export { generatePeerKey, peerKeyFromBytes, peerKeyToBytes } from './p2p/peer-key.js'
export type { PrivateKey }
export type Blockstore = NonNullable<HeliaInit['blockstore']>
export type Datastore = NonNullable<HeliaInit['datastore']>

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
  /** More topics the node may join later (holding announcements); only these and `topic` are allowed. */
  otherTopics?: readonly string[]
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

const MAX_CONNECTIONS = 64
const DIAL_TIMEOUT_MS = 10_000

/** The gossip topic of a federation. */
export function topicFor(federationId: string): string {
  return `allmende/${federationId}/records/1`
}

/** Build, start and subscribe a node. Rejects only if the node cannot start (e.g. a listen address is taken). */
export async function createP2P(options: P2POptions): Promise<P2P> {
  const log = options.log ?? noLog
  if (options.peerKey != null && options.peerKey.type !== 'Ed25519') {
    throw new TypeError(`createP2P: peerKey must be an Ed25519 key, got ${options.peerKey.type}`)
  }
  const peerKey = options.peerKey ?? (await generatePeerKey())
  const bans = createPeerBans()
  const { libp2p, helia } = await startLibp2p(options, libp2pOptions(options, peerKey, bans.gater))
  const peerId = libp2p.peerId.toString()
  const gossip = joinGossip(libp2p.services.pubsub, { ...options, peerId, log })
  const stopSweep = sweepGraylisted(libp2p, bans, log)

  libp2p.addEventListener('peer:connect', (evt) => {
    log('info', 'peer-connected', { peer: evt.detail.toString() })
  })
  libp2p.addEventListener('peer:disconnect', (evt) => {
    log('info', 'peer-disconnected', { peer: evt.detail.toString() })
  })
  const bootstrap = createBootstrap({
    libp2p,
    bootstrap: options.bootstrap,
    initialMs: options.redial?.initialMs ?? 1000,
    maxMs: options.redial?.maxMs ?? 60_000,
    dialTimeoutMs: DIAL_TIMEOUT_MS,
    log,
  })
  bootstrap.start()

  let stopped: Promise<void> | undefined
  return {
    libp2p,
    ...(helia ? { helia } : {}),
    peerId,
    addresses: () => libp2p.getMultiaddrs().map((ma) => ma.toString()),
    peers: () =>
      libp2p.getPeers().map((id) => ({
        id: id.toString(),
        addresses: [...new Set(libp2p.getConnections(id).map((c) => c.remoteAddr.toString()))],
      })),
    ...gossip,
    async dial(ma) {
      await libp2p.dial(multiaddr(ma), { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
    },
    async hangUp(id) {
      await libp2p.hangUp(peerIdFromString(id))
    },
    async block(id) {
      bans.block(id)
      await libp2p.hangUp(peerIdFromString(id))
    },
    async ban(id, ms) {
      bans.ban(id, ms)
      await libp2p.hangUp(peerIdFromString(id))
    },
    unblock(id) {
      bans.unblock(id)
      bootstrap.redial(id)
    },
    stop() {
      stopped ??= (async () => {
        bootstrap.stop()
        stopSweep()
        try {
          if (helia != null) await helia.stop()
        } finally {
          await libp2p.stop()
        }
      })()
      return stopped
    },
  }
}

/** libp2p's configuration: our transports, limits and services, no discovery or routing. */
function libp2pOptions(
  options: P2POptions,
  peerKey: PrivateKey,
  connectionGater: Libp2pOptions['connectionGater'],
): Libp2pOptions<P2PServices> {
  return {
    privateKey: peerKey,
    connectionGater,
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
      pubsub: gossipsub(gossipOptions(options.topic, options.otherTopics)),
    },
  }
}

/** Starts libp2p, with Helia and bitswap on it unless `helia: false`. */
async function startLibp2p(
  options: P2POptions,
  config: Libp2pOptions<P2PServices>,
): Promise<{ libp2p: P2PLibp2p; helia?: P2PHelia }> {
  if (options.helia === false) {
    const libp2p = await createLibp2p({
      ...config,
      ...(options.datastore ? { datastore: options.datastore } : {}),
    })
    return { libp2p }
  }
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
  const withP2P = withLibp2pLight(light, { ...config, datastore: new MemoryDatastore() })
  const withBlocks = withBitswap(withP2P, {
    maxInboundStreams: 32,
    maxOutboundStreams: 128,
    maxIncomingMessageSize: 2 * 1024 * 1024,
    maxOutgoingMessageSize: 2 * 1024 * 1024,
    maxWantlistSize: 1024,
  })
  try {
    await withBlocks.start()
  } catch (err) {
    await withBlocks.stop().catch(() => {})
    throw err
  }
  const helia = withBlocks as P2PHelia
  return { libp2p: helia.libp2p, helia }
}
