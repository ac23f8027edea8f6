/**
 * Holdings gossip (docs/adr/0029-holding-announcements.md): announcements and bindings travel on
 * a topic of their own, apart from records, under the same gossipsub rules (p2p/gossipsub.ts:
 * unsigned messages whose id is the sha256 of their bytes, a topic validator that runs before a
 * message is delivered or forwarded, `reject` lowering the sender's score). The validator is the
 * intake: a message is stored only once every check passed, and only then forwarded.
 */
import type { GossipSub } from '@libp2p/gossipsub'
import type { Logger } from '../log.js'
import { type Gossip, joinGossip } from '../p2p/gossipsub.js'
import type { Intake } from './intake.js'

/** The holdings topic of a federation. */
export function holdingsTopicFor(federationId: string): string {
  return `allmende/${federationId}/holdings/1`
}

export function joinHoldingsGossip(
  pubsub: GossipSub,
  options: { federation: string; peerId: string; intake: Intake; log: Logger },
): Gossip {
  return joinGossip(pubsub, {
    topic: holdingsTopicFor(options.federation),
    peerId: options.peerId,
    validate: (bytes) => options.intake.take(bytes).verdict,
    // Stored by the validator already: nothing is left to do with an accepted message.
    onMessage: () => {},
    log: (level, event, fields) =>
      options.log.log(level, `holdings-${event}`, fields as Record<string, unknown>),
  })
}
