/**
 * The gossip validator and its batch form for sync (ADR 0015). `check` is synchronous, never
 * throws and never touches the network. Verdicts: *reject* only for invalid bytes; *ignore* for
 * what admission does not take (protocol/admission.ts: duplicates, unknown authors, records past
 * the ingest limits); *accept* otherwise (inapplicable and pending records are kept, and so are
 * future records, well-signed records of a later version: accepted, so that gossip relays them and
 * scores no peer down for them; docs/adr/0023).
 */
import type { CID } from 'multiformats/cid'
import {
  type AdmissionState,
  type AnyVerified,
  admit,
  decodeRecord,
  type Ed25519Backend,
} from '../../protocol/index.js'
import { decodeOwnRecord } from '../../protocol/record.js'
import type { Logger } from '../log.js'
import { nativeSha256 } from '../sha256.js'
import { createVerifyPool, type VerifyPool } from '../verify-pool.js'
import type { Checked } from './types.js'

/** Smaller batches are checked on this thread: the round trip to a worker would cost more than it saves. */
const POOL_BATCH = 64

export interface Validator {
  check(bytes: Uint8Array): Checked
  /** `check` for a batch, verified on worker threads; the same verdicts. */
  checkMany(records: readonly Uint8Array[]): Promise<Checked[]>
  /** Records by kind and verdict: `vote|accept` → n. */
  readonly verdicts: Map<string, number>
  close(): Promise<void>
}

export function createValidator(parts: {
  federation: CID
  ed25519: Ed25519Backend
  admission: AdmissionState
  clock: () => number
  log: Logger
}): Validator {
  const { federation, ed25519, admission, clock, log } = parts
  const verdicts = new Map<string, number>()
  const count = (kind: string, verdict: string) => {
    const k = `${kind}|${verdict}`
    verdicts.set(k, (verdicts.get(k) ?? 0) + 1)
  }

  /** The node's policy for a record whose bytes passed every check. */
  const judge = (v: AnyVerified): Checked => {
    const decision = admit(v, admission, clock())
    if (decision.admitted) {
      count(v.record.kind, 'accept')
      return { verdict: 'accept', record: v }
    }
    count(v.record.kind, decision.code === 'duplicate' ? 'duplicate' : 'ignore')
    return { verdict: 'ignore', code: decision.code, message: decision.message, record: v }
  }

  const check = (input: Uint8Array): Checked => {
    // A compact copy: the decoded record keeps views into these bytes, and a small view
    // into a pooled network buffer would pin the whole pool slab for as long as the record lives.
    const bytes = Uint8Array.prototype.slice.call(input)
    let decoded: ReturnType<typeof decodeRecord>
    try {
      decoded = decodeRecord(bytes, { federation, ed25519, sha256: nativeSha256 })
    } catch (e) {
      // decodeRecord never throws by contract; if it ever does, the input is not trusted.
      log.error('validator-threw', { error: e as Error })
      return { verdict: 'ignore', code: 'internal', message: 'validation failed unexpectedly' }
    }
    if (!decoded.ok) {
      count('unknown', 'reject')
      return { verdict: 'reject', code: decoded.code, message: decoded.message }
    }
    return judge(decoded.value)
  }

  // Workers for batches (sync), started on first use.
  let pool: VerifyPool | undefined
  const checkMany = async (inputs: readonly Uint8Array[]): Promise<Checked[]> => {
    if (inputs.length < POOL_BATCH) return inputs.map(check)
    pool ??= createVerifyPool(federation)
    const copies = inputs.map((b) => Uint8Array.prototype.slice.call(b) as Uint8Array)
    const failures = await pool.verify(copies)
    return copies.map((bytes, i) => {
      const bad = failures[i]
      if (bad) {
        count('unknown', 'reject')
        return { verdict: 'reject', code: bad.code, message: bad.message }
      }
      // The worker ran decodeRecord on these bytes: decoding them again is all that is left.
      const v = decodeOwnRecord(bytes, nativeSha256)
      if (!v || v.record.kind === 'genesis') return check(bytes)
      return judge(v)
    })
  }

  return {
    check,
    checkMany,
    verdicts,
    async close() {
      await pool?.close()
    },
  }
}
