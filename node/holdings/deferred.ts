/**
 * Peers worth asking again (docs/adr/0029-holding-announcements.md, SPEC §15.5): a peer whose
 * last sync answer held messages this node could not judge yet (`unknown-weights`,
 * `not-member`) is asked again once the node holds more records. A node that just joined needs
 * that within seconds (its first answers come before its records), but a peer that keeps such
 * messages in every answer would have the node pull its whole answer every few seconds: so the
 * wait doubles with each answer that still holds them, from `firstMs` up to `maxMs`.
 */

export const DEFERRED_FIRST_RETRY_MS = 2_000
export const DEFERRED_MAX_RETRY_MS = 60_000

export class DeferredPeers {
  /** peer → the record count and time of its last answer that held deferred messages, and the wait after it. */
  private readonly byPeer = new Map<string, { records: number; at: number; waitMs: number }>()

  constructor(
    private readonly now: () => number,
    private readonly firstMs = DEFERRED_FIRST_RETRY_MS,
    private readonly maxMs = DEFERRED_MAX_RETRY_MS,
  ) {}

  /** Notes a peer's answer: `deferred` messages in it waited for records, with `records` held then. */
  answered(peer: string, deferred: number, records: number): void {
    if (deferred === 0) {
      this.byPeer.delete(peer)
      return
    }
    const before = this.byPeer.get(peer)
    const waitMs = before ? Math.min(before.waitMs * 2, this.maxMs) : this.firstMs
    this.byPeer.set(peer, { records, at: this.now(), waitMs })
  }

  /** The peers to ask again now that `records` are held. */
  due(records: number): string[] {
    const now = this.now()
    return [...this.byPeer]
      .filter(([, last]) => last.records !== records && now - last.at >= last.waitMs)
      .map(([peer]) => peer)
  }
}
