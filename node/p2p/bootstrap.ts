/**
 * Bootstrap peers: the only way this node finds peers (no DHT, no mDNS, no
 * public lists), besides whoever dials in. Each is dialled at start without
 * blocking it, and re-dialled with capped, jittered exponential backoff
 * whenever we are not connected to it, until `stop`. Dial failures are
 * logged, never thrown.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import { errorText, type Log } from './log.js'

export interface BootstrapParts {
  readonly libp2p: Libp2p
  /** Multiaddrs ending in `/p2p/<peer id>`. */
  readonly bootstrap: readonly string[]
  /** First re-dial delay and its cap, in ms. */
  readonly initialMs: number
  readonly maxMs: number
  readonly dialTimeoutMs: number
  readonly log: Log
  /** In [0, 1): the jitter of each delay (default Math.random). */
  readonly random?: () => number
}

export interface Bootstrap {
  /** Dials every bootstrap peer we are not connected to. */
  start(): void
  /** Dials `peerId` now if it is a bootstrap peer (after it was unblocked). */
  redial(peerId: string): void
  /** No more dials. */
  stop(): void
}

interface BootstrapPeer {
  ma: string
  id: string
  failures: number
  timer?: NodeJS.Timeout
  dialing: boolean
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

/** Keeps us connected to the bootstrap peers; call `start` once libp2p runs. */
export function createBootstrap(parts: BootstrapParts): Bootstrap {
  const { libp2p, log, initialMs, maxMs } = parts
  const random = parts.random ?? Math.random
  const peers = bootstrapPeers(parts.bootstrap, libp2p.peerId.toString(), log)
  let stopping = false
  const connectedTo = (id: string): boolean => libp2p.getConnections(peerIdFromString(id)).length > 0

  const schedule = (peer: BootstrapPeer): void => {
    if (stopping || peer.timer != null) return
    const base = Math.min(maxMs, initialMs * 2 ** Math.min(peer.failures, 30))
    const delay = Math.round(base / 2 + (random() * base) / 2)
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
      await libp2p.dial(multiaddr(peer.ma), { signal: AbortSignal.timeout(parts.dialTimeoutMs) })
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

  libp2p.addEventListener('peer:disconnect', (evt) => {
    const peer = peers.get(evt.detail.toString())
    if (peer != null && !stopping) {
      peer.failures = 0
      schedule(peer)
    }
  })

  return {
    start() {
      for (const peer of peers.values()) void connect(peer)
    },
    redial(id) {
      const peer = peers.get(id)
      if (peer != null && !stopping) void connect(peer)
    },
    stop() {
      stopping = true
      for (const peer of peers.values()) {
        if (peer.timer != null) clearTimeout(peer.timer)
        peer.timer = undefined
      }
    },
  }
}

/** The bootstrap multiaddrs by peer id: bad entries are logged and left out, as are our own id and repeats. */
function bootstrapPeers(multiaddrs: readonly string[], ourId: string, log: Log): Map<string, BootstrapPeer> {
  const peers = new Map<string, BootstrapPeer>()
  for (const ma of multiaddrs) {
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
    if (id === ourId || peers.has(id)) continue
    peers.set(id, { ma, id, failures: 0, dialing: false })
  }
  return peers
}
