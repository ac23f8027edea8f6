/**
 * Interning of the values records repeat (ADR 0015): every record repeats the federation id, most
 * repeat a proposal's CID and an author's DID. Sharing one object per value (equal by value, so
 * nothing changes in meaning) saves most of a record's heap: a decoded CID is five objects.
 */
import type { CID } from 'multiformats/cid'
import { type AnyVerified, cidKey } from '../../protocol/index.js'
import { isFutureRecord } from '../../protocol/record.js'

/** Fields of a body that name another record. */
const NAMING_FIELDS = ['proposal', 'subject', 'basis'] as const

/** Makes a held record share the federation id, its author's DID and the CIDs it names. */
export type Interner = (record: AnyVerified) => void

export function createInterner(federation: CID): Interner {
  const cids = new Map<string, CID>([[cidKey(federation), federation]])
  const dids = new Map<string, string>()
  return (v) => {
    // A future record's body is the later version's: what its fields name is not known here.
    if (isFutureRecord(v)) return
    const r = v.record as unknown as { federation?: CID; author: string; body: Record<string, unknown> }
    if (r.federation) r.federation = federation
    const author = dids.get(r.author)
    if (author === undefined) dids.set(r.author, r.author)
    else r.author = author
    for (const field of NAMING_FIELDS) {
      const c = r.body[field] as CID | undefined
      if (!c) continue
      const k = cidKey(c)
      const shared = cids.get(k)
      if (shared) r.body[field] = shared
      else cids.set(k, c)
    }
    // Records that others name: later records share this record's own CID.
    if (v.record.kind === 'proposal' || v.record.kind === 'manifest') {
      if (!cids.has(v.key)) cids.set(v.key, v.cid)
    }
  }
}
