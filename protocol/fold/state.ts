/**
 * The federation state (SPEC.md §8.8): the head and its members and rules (§8.2), every
 * proposal's view, every applicable manifest with its status, and the status of every model
 * version (§8.7).
 */
import type { CID } from 'multiformats/cid'
import { cidKey, compareCids } from '../cid.js'
import type { Did } from '../did.js'
import { headOf } from './chain.js'
import { push } from './indexes.js'
import { manifestApplicable } from './manifests.js'
import type { FoldReader } from './reader.js'
import type { FederationState, ManifestView, ModelView, ProposalView } from './types.js'
import { checkpointView, proposalView } from './views.js'

/** Final-passed ratify and revoke proposals by the key of the manifest they name. */
interface Decisions {
  readonly ratifiedBy: Map<string, CID[]>
  readonly revokedBy: Map<string, CID[]>
}

export function federationState(
  reader: FoldReader,
  recordCount: number,
  checkpointEquivocators: readonly Did[],
): FederationState {
  const head = headOf(reader)
  const { proposals, decisions } = proposalViews(reader)
  const manifests = manifestViews(reader, decisions)
  const members = [...head.state.members.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return Object.freeze({
    federation: reader.federation,
    genesis: reader.genesis,
    head: head.cid,
    height: head.state.height,
    members,
    rules: head.state.rules,
    proposals,
    manifests,
    models: modelViews(manifests),
    recordCount,
    ...(reader.anchor ? { checkpoint: checkpointView(reader.anchor) } : {}),
    checkpointEquivocators,
  })
}

function proposalViews(reader: FoldReader): {
  proposals: Map<string, ProposalView>
  decisions: Decisions
} {
  const proposals = new Map<string, ProposalView>()
  const decisions: Decisions = { ratifiedBy: new Map(), revokedBy: new Map() }
  for (const [key, proposal] of reader.indexes.proposalsByKey) {
    const view = proposalView(proposal, reader)
    proposals.set(key, view)
    if (view.phase === 'final-passed') {
      const action = proposal.record.body.action
      if (action.type === 'ratify-model') push(decisions.ratifiedBy, cidKey(action.manifest), proposal.cid)
      if (action.type === 'revoke-model') push(decisions.revokedBy, cidKey(action.manifest), proposal.cid)
    }
  }
  return { proposals, decisions }
}

/** Every applicable manifest: revoked for good once a revocation passed, else ratified or proposed. */
function manifestViews(reader: FoldReader, decisions: Decisions): Map<string, ManifestView> {
  const manifests = new Map<string, ManifestView>()
  for (const [key, manifest] of reader.indexes.manifestsByKey) {
    if (!manifestApplicable(manifest, reader)) continue
    const ratifiedBy = (decisions.ratifiedBy.get(key) ?? []).sort(compareCids)
    const revokedBy = (decisions.revokedBy.get(key) ?? []).sort(compareCids)
    const body = manifest.record.body
    const view: ManifestView = Object.freeze({
      cid: manifest.cid,
      author: manifest.record.author,
      name: body.name,
      version: body.version,
      ...(body.base ? { base: body.base } : {}),
      status: revokedBy.length > 0 ? 'revoked' : ratifiedBy.length > 0 ? 'ratified' : 'proposed',
      ratifiedBy,
      revokedBy,
    })
    manifests.set(key, view)
  }
  return manifests
}

/**
 * Per name@version over its applicable manifests: ratified with the one ratified manifest,
 * conflicted with more than one, revoked when every one is revoked, else proposed.
 */
function modelViews(manifests: ReadonlyMap<string, ManifestView>): Map<string, ModelView> {
  const byVersion = new Map<string, ManifestView[]>()
  for (const view of manifests.values()) push(byVersion, `${view.name}@${view.version}`, view)
  const models = new Map<string, ModelView>()
  for (const [key, versions] of byVersion) {
    versions.sort((a, b) => compareCids(a.cid, b.cid))
    const ratified = versions.filter((m) => m.status === 'ratified')
    const base = { key, manifests: versions.map((m) => m.cid) }
    let model: ModelView
    if (ratified.length === 1)
      model = {
        ...base,
        status: 'ratified',
        manifest: ratified[0]!.cid,
        decision: ratified[0]!.ratifiedBy[0]!,
      }
    else if (ratified.length > 1) model = { ...base, status: 'conflicted' }
    else if (versions.every((m) => m.status === 'revoked'))
      model = { ...base, status: 'revoked', decision: versions[0]!.revokedBy[0]! }
    else model = { ...base, status: 'proposed' }
    models.set(key, Object.freeze(model))
  }
  return models
}
