/**
 * Records of a later version, as a node of that version would sign them (SPEC.md §5.1, Versions;
 * docs/adr/0023): this implementation never signs one, so tests forge them with the Simulator's
 * keys over the same signing bytes.
 */
import { encode } from '../../protocol/cbor.js'
import { decodeRecord, type FutureRecord, isFutureRecord } from '../../protocol/record.js'
import type { Simulator } from './simulator.js'

export interface FutureFields {
  /** An integer ≥ 2; 2 unless given. */
  readonly v?: number
  readonly kind: string
  readonly body: Record<string, unknown>
}

/** The plain record `by` signs at `at` (simulation time): what a later version would send. */
export function futureRecordFields(
  sim: Simulator,
  by: string,
  at: number,
  f: FutureFields,
): Record<string, unknown> {
  const unsigned = {
    v: f.v ?? 2,
    kind: f.kind,
    federation: sim.federation,
    author: sim.did(by),
    at: sim.base + at,
    body: f.body,
  }
  return sim.forge(unsigned, by)
}

/** A future record signed by `by`, decoded as a node of this version reads it. */
export function signFutureRecord(sim: Simulator, by: string, at: number, f: FutureFields): FutureRecord {
  const bytes = encode(futureRecordFields(sim, by, at, f))
  const decoded = decodeRecord(bytes, { federation: sim.federation })
  if (!decoded.ok) throw new TypeError(`not a valid future record: ${decoded.code} (${decoded.message})`)
  if (!isFutureRecord(decoded.value)) throw new TypeError('read as a record of this version')
  return decoded.value
}
