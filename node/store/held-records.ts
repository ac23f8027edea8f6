/**
 * The records held, as the fold and the indexes the node keeps beside it (ADR 0015): the ingest
 * limits' tally, the governance proposals (with the head, their electorates are the chain's
 * states), and the seals and checkpoints whose list blocks have not all come yet. A held record
 * is in the fold at once; one waiting for its lists is added again, lists attached, when they come.
 */
import type { CID } from 'multiformats/cid'
import {
  type AdmissionTally,
  type AnyVerified,
  attachLists,
  type BlockSource,
  createAdmissionTally,
  type Fold,
  GOVERNANCE_ACTIONS,
} from '../../protocol/index.js'
import type { HeldIds } from './held-ids.js'
import { createInterner } from './intern.js'

export interface HeldRecords {
  readonly fold: Fold
  /** What the ingest limits count (protocol/admission.ts). */
  readonly tally: AdmissionTally
  /** The governance proposals held, in the order they were held. */
  readonly governance: readonly CID[]
  /** Holds a record: in the fold (with its lists if their blocks are held), the tally and the ids. */
  hold(record: AnyVerified): void
  /** Whether a held seal or checkpoint still waits for list blocks. */
  waitsForLists(key: string): boolean
  /** Attaches the lists of the waiting records whose blocks are all held now. */
  attachWaiting(): void
}

export function createHeldRecords(parts: {
  fold: Fold
  federation: CID
  ids: HeldIds
  blocks: BlockSource
}): HeldRecords {
  const { fold, ids, blocks } = parts
  const tally = createAdmissionTally()
  const governance: CID[] = []
  const waiting = new Map<string, AnyVerified>()
  const intern = createInterner(parts.federation)
  return {
    fold,
    tally,
    governance,
    hold(v) {
      intern(v)
      ids.add(v.key)
      const withLists = attachLists(v, blocks)
      if (withLists.ok) {
        fold.add(withLists.value)
        waiting.delete(v.key)
      } else {
        fold.add(v)
        waiting.set(v.key, v)
      }
      tally.add(v)
      const r = v.record
      if (r.kind === 'proposal' && GOVERNANCE_ACTIONS.has(r.body.action.type)) governance.push(v.cid)
    },
    waitsForLists: (key) => waiting.has(key),
    attachWaiting() {
      for (const v of [...waiting.values()]) {
        const withLists = attachLists(v, blocks)
        if (withLists.ok) {
          waiting.delete(v.key)
          fold.add(withLists.value)
        }
      }
    },
  }
}
