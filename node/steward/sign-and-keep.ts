/**
 * The one way a steward's own record enters the world: signed, then kept in its own log with the
 * blocks it names, and only then published. A seal or checkpoint that is not in the log is never
 * published nor counted as done, so a crash between signing and publishing cannot make the
 * steward sign a second, different record for the same duty (an equivocation).
 */
import type { Block } from '../../protocol/cidlist.js'
import { type Signer, signRecord, type Verified } from '../../protocol/index.js'
import type { RecordStore } from '../store.js'

type DutyKind = 'seal' | 'checkpoint'

export type Kept<K extends DutyKind> =
  | { readonly ok: true; readonly record: Verified<K> }
  | { readonly ok: false; readonly code: string | undefined; readonly message: string | undefined }

export async function signAndKeep<K extends DutyKind>(
  store: RecordStore,
  signer: Signer,
  fields: Parameters<typeof signRecord<K>>[0],
  extra: Parameters<typeof signRecord<K>>[2],
  blocks: readonly Block[],
): Promise<Kept<K>> {
  const record = signRecord(fields, signer, extra)
  const taken = await store.ingest(
    record.bytes,
    blocks.map((b) => b.bytes),
  )
  if (taken.verdict !== 'accept') return { ok: false, code: taken.code, message: taken.message }
  return { ok: true, record }
}
