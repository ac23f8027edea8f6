/**
 * The ids (CID digests) of every record and list block held: what sync reconciles (ADR 0015).
 * Records and list blocks are held under their CID key (`cidKey`); sync speaks in ids.
 */
import { createIdSet, type IdSet } from '../sync/id-set.js'

export interface HeldIds {
  readonly ids: IdSet
  /** Adds the id of the record or list block held under `key`. */
  add(key: string): void
}

export function createHeldIds(): HeldIds {
  const ids = createIdSet()
  // A key is the CID's 36 bytes as one char each; the id is the digest after the 4-byte prefix.
  // One scratch buffer: the set copies what it keeps, and this runs once per record held.
  const scratch = new Uint8Array(32)
  return {
    ids,
    add(key) {
      for (let i = 0; i < 32; i++) scratch[i] = key.charCodeAt(i + 4)
      ids.add(scratch)
    },
  }
}
