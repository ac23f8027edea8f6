/**
 * Whose seals and checkpoints name list blocks (ADR 0005): only a steward's, in some state of the
 * governance chain (chain-states.ts), since only those can ever count; a member's seal could
 * otherwise make every node keep a million entries of its choosing. One by anyone else is held
 * as a record and its lists are not wanted (deferred) until a decision makes its author a
 * steward: deferred records are looked at again whenever the governance head changes.
 */
import type { AnyVerified, GovState } from '../../protocol/index.js'
import { stewardsEver } from '../chain-states.js'
import type { HeldRecords } from './held-records.js'
import { type ListBlocks, listRoots, NO_BLOCKS } from './list-blocks.js'

export interface ListNaming {
  /** Whether a seal's or checkpoint's author is a steward in some chain state: its lists count. */
  namesLists(record: AnyVerified): boolean
  /** A held seal or checkpoint: its lists named now, or deferred until its author is a steward. */
  place(record: AnyVerified): void
  /** Whether a held seal's or checkpoint's lists are deferred (its author is no steward yet). */
  isDeferred(key: string): boolean
  /** Names the lists of the deferred records whose authors a new head made stewards. */
  review(): void
  /**
   * At start, of the seals and checkpoints replayed: defers those whose lists are not wanted
   * and returns the others, whose lists are named.
   */
  sortReplayed(holders: readonly AnyVerified[]): AnyVerified[]
}

export function createListNaming(parts: { records: HeldRecords; blocks: ListBlocks }): ListNaming {
  const { records, blocks } = parts
  const fold = records.fold
  const stewards = stewardsEver(fold, records.governance)
  const namesLists = (v: AnyVerified) => stewards().has(v.record.author)
  /** Held seals and checkpoints by key whose lists are not wanted: bounded by the records held. */
  const deferred = new Map<string, AnyVerified>()
  let deferredUnder: GovState | undefined
  /** Names the lists of `holders` (held already): sync asks for them from now on. */
  const nameListsOf = (holders: readonly AnyVerified[]) => {
    if (holders.length > 0) blocks.commit(blocks.follow(holders.flatMap(listRoots), NO_BLOCKS))
  }
  return {
    namesLists,
    place(v) {
      if (namesLists(v)) nameListsOf([v])
      else deferred.set(v.key, v)
    },
    isDeferred: (key) => deferred.has(key),
    review() {
      if (deferred.size === 0) return
      const head = fold.headState()
      if (head === deferredUnder) return
      deferredUnder = head
      const now: AnyVerified[] = []
      for (const v of deferred.values()) if (namesLists(v)) now.push(v)
      for (const v of now) deferred.delete(v.key)
      nameListsOf(now)
    },
    sortReplayed(holders) {
      const naming: AnyVerified[] = []
      for (const v of holders) {
        if (namesLists(v)) naming.push(v)
        else deferred.set(v.key, v)
      }
      deferredUnder = fold.headState()
      return naming
    },
  }
}
