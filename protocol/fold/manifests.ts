/**
 * Manifests and attestations (SPEC.md §8.7): applicable when their author holds the role in some
 * state of the chain; an attestation also needs its manifest known and applicable. An
 * attestation counts for a proposal only through a seal (seals.ts).
 */
import { cidKey } from '../cid.js'
import type { Verified } from '../record.js'
import type { FoldReader } from './reader.js'
import { APPLIED, inapplicable, pending } from './reports.js'
import type { RecordReport } from './types.js'

export function manifestApplicable(manifest: Verified<'manifest'>, reader: FoldReader): boolean {
  return reader.holdersEver('publisher').has(manifest.record.author)
}

export function manifestReport(manifest: Verified<'manifest'>, reader: FoldReader): RecordReport {
  return manifestApplicable(manifest, reader)
    ? APPLIED
    : inapplicable('author-role', 'the author is a publisher in no governance state')
}

export function attestationReport(attestation: Verified<'attestation'>, reader: FoldReader): RecordReport {
  if (!reader.holdersEver('auditor').has(attestation.record.author))
    return inapplicable('author-role', 'the author is an auditor in no governance state')
  const manifest = reader.indexes.manifestsByKey.get(cidKey(attestation.record.body.subject))
  if (!manifest) return pending('manifest-unknown', 'the manifest is not known yet')
  if (!manifestApplicable(manifest, reader))
    return inapplicable('manifest-inapplicable', 'the manifest was published by no publisher')
  return APPLIED
}
