/**
 * What this steward has done (SPEC.md §10, steward duties; ADR 0016): the proposals it sealed or
 * decided never to seal, the ratifications it sealed passed with their weights verified, and the
 * newest epoch it signed a checkpoint for. Read back at start from its own seals and checkpoints
 * in the log, so "never a second seal" and "one checkpoint per epoch" hold across restarts.
 */
import type { CID } from 'multiformats/cid'
import { cidKey, type Did, type Fold, type Verified } from '../../protocol/index.js'

export interface OwnRecords {
  /** Keys of the proposals sealed here, or decided never to be sealed here. */
  readonly handled: Set<string>
  /** The ratifications of `version` (name@version) sealed here passed, weights verified. */
  pledgesOf(version: string): readonly CID[]
  /** Remembers a ratification sealed passed with its weights verified. */
  pledge(proposal: CID): void
  /** The newest epoch a checkpoint was signed for here; -1 for none. */
  signedEpoch: number
}

/** The manifest a ratify-model proposal names, and its `name@version`; undefined for other proposals. */
export function ratifies(
  fold: Pick<Fold, 'get'>,
  proposal: CID,
): { manifest: Verified<'manifest'> | undefined; version: string | undefined } | undefined {
  const action = (fold.get(proposal) as Verified<'proposal'> | undefined)?.record.body.action
  if (action?.type !== 'ratify-model') return undefined
  const manifest = fold.get(action.manifest) as Verified<'manifest'> | undefined
  return { manifest, version: manifest && `${manifest.record.body.name}@${manifest.record.body.version}` }
}

/** This steward's record, from the records `did` signed that the fold holds. */
export function readOwnRecords(fold: Pick<Fold, 'get' | 'records'>, did: Did): OwnRecords {
  const handled = new Set<string>()
  const pledged = new Map<string, CID[]>()
  const own: OwnRecords = {
    handled,
    pledgesOf: (version) => pledged.get(version) ?? [],
    pledge(proposal) {
      const version = ratifies(fold, proposal)?.version
      if (version !== undefined) pledged.set(version, [...(pledged.get(version) ?? []), proposal])
    },
    signedEpoch: -1,
  }
  for (const r of fold.records()) {
    if (r.record.author !== did) continue
    if (r.record.kind === 'seal') {
      handled.add(cidKey(r.record.body.proposal))
      if (r.record.body.outcome === 'passed' && r.record.body.weightsVerified === true)
        own.pledge(r.record.body.proposal)
    } else if (r.record.kind === 'checkpoint')
      own.signedEpoch = Math.max(own.signedEpoch, r.record.body.epoch)
  }
  return own
}
