/**
 * The peers this node refuses (ADR 0018): peers banned for a while (a gossip
 * score below the graylist threshold, a sync fault) and peers blocked until
 * unblocked (an operator's cut, a test's partition). One list, enforced by
 * libp2p's connection gater: no dial to them, no connection from them.
 */

import type { GossipSub } from '@libp2p/gossipsub'
import type { ConnectionGater } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'
import { GRAYLIST_THRESHOLD, scoreOf } from './gossipsub.js'
import type { Log } from './log.js'

/** How long a peer that fell below the graylist threshold is refused. */
export const BAN_MS = 60 * 60 * 1000
/** How often gossip scores are looked at. */
const SWEEP_MS = 500

export interface PeerBans {
  /** True while the peer is banned or blocked. */
  refuses(peerId: string): boolean
  /** Refuses the peer for `ms`. */
  ban(peerId: string, ms: number): void
  /** Refuses the peer until `unblock`. */
  block(peerId: string): void
  unblock(peerId: string): void
  /** The gater that makes libp2p refuse them. */
  readonly gater: ConnectionGater
}

export function createPeerBans(now: () => number = Date.now): PeerBans {
  /** Each banned peer's end of ban. */
  const bannedUntil = new Map<string, number>()
  const blocked = new Set<string>()
  const refuses = (id: string): boolean => {
    if (blocked.has(id)) return true
    const until = bannedUntil.get(id)
    if (until === undefined) return false
    if (until > now()) return true
    bannedUntil.delete(id)
    return false
  }
  return {
    refuses,
    ban: (id, ms) => {
      bannedUntil.set(id, now() + ms)
    },
    block: (id) => {
      blocked.add(id)
    },
    unblock: (id) => {
      blocked.delete(id)
    },
    gater: {
      denyDialPeer: (peer) => refuses(peer.toString()),
      denyInboundEncryptedConnection: (peer) => refuses(peer.toString()),
      denyOutboundEncryptedConnection: (peer) => refuses(peer.toString()),
    },
  }
}

/**
 * Bans, for `BAN_MS`, every connected peer whose gossip score fell below the graylist
 * threshold, and hangs up on it. Gossipsub drops a graylisted peer's messages only after
 * decrypting and parsing each frame, so a flooding peer still costs work per message until
 * it is gone. Returns the function that stops the sweep.
 */
export function sweepGraylisted(libp2p: Libp2p<{ pubsub: GossipSub }>, bans: PeerBans, log: Log): () => void {
  const pubsub = libp2p.services.pubsub
  const sweep = setInterval(() => {
    for (const peer of libp2p.getPeers()) {
      const id = peer.toString()
      if (bans.refuses(id)) continue
      const score = scoreOf(pubsub, id)
      if (score >= GRAYLIST_THRESHOLD) continue
      bans.ban(id, BAN_MS)
      log('warn', 'peer-banned', { peer: id, score, minutes: BAN_MS / 60_000 })
      libp2p.hangUp(peer).catch(() => {})
    }
  }, SWEEP_MS)
  sweep.unref?.()
  return () => clearInterval(sweep)
}
