/**
 * Witness times (SPEC.md §10, steward duties): when this node first received
 * each proposal, vote and attestation, by its own clock, kept in an
 * append-only file beside the record log. A steward counts only votes and
 * attestations it received before `closesAt + sealGraceMs/2` and never seals
 * a proposal it first saw after `at + sealGraceMs`, so a backdated record
 * (signed `at` in the past, sent late) is never counted. A record with no witness time (received before the
 * file existed, or whose entry was lost to a crash) counts as seen too late:
 * the safe side.
 *
 * Each entry is one frame of the record-log format: the record's CID key
 * (36 bytes) then the time (u64, big-endian ms).
 */
import type { Kind } from '../protocol/index.js'
import { NodeError } from './errors.js'
import { openRecordLog, type RecordLog } from './record-log.js'

/** Whether a steward's duties ask when records of this kind were first received. */
export function isWitnessed(kind: Kind): boolean {
  return kind === 'vote' || kind === 'proposal' || kind === 'attestation'
}

export interface WitnessLog {
  /** When the record under `key` was first received here, if known. */
  at(key: string): number | undefined
  /** Notes a first reception (no-op if already known); durable in the background. */
  note(key: string, at: number): void
  close(): Promise<void>
}

export async function openWitnessLog(path: string, log: (event: object) => void): Promise<WitnessLog> {
  const times = new Map<string, number>()
  const file: RecordLog = await openRecordLog(path, { log })
  await file.replay((entry) => {
    if (entry.length !== 44) return
    const key = String.fromCharCode.apply(null, entry.subarray(0, 36) as unknown as number[])
    const at = Number(new DataView(entry.buffer, entry.byteOffset + 36, 8).getBigUint64(0))
    if (!times.has(key)) times.set(key, at)
  })
  let pending: Promise<unknown> = Promise.resolve()
  return {
    at: (key) => times.get(key),
    note(key, at) {
      if (times.has(key)) return
      if (key.length !== 36) throw new NodeError('internal', 'a witness key is a 36-byte CID key')
      times.set(key, at)
      const entry = new Uint8Array(44)
      for (let i = 0; i < 36; i++) entry[i] = key.charCodeAt(i)
      new DataView(entry.buffer).setBigUint64(36, BigInt(at))
      pending = file.append(entry).catch((e) => log({ event: 'witness-write-failed', error: String(e) }))
    },
    async close() {
      await pending
      await file.close()
    },
  }
}
