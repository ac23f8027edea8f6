/**
 * A canonical encoding of a federation state (SPEC.md §8.8): two states are
 * the same iff these bytes are equal. Used by the order-independence
 * properties, the conformance runner and nodes comparing notes.
 */
import { encode } from './cbor.js'
import { compareCids } from './cid.js'
import type { FederationState } from './fold/index.js'

export function canonicalState(state: FederationState): Uint8Array {
  const proposals = [...state.proposals.values()]
    .sort((a, b) => compareCids(a.cid, b.cid))
    .map((p) => ({
      cid: p.cid,
      phase: p.phase,
      reason: p.reason?.code ?? null,
      tally: [p.tally.yes, p.tally.no, p.tally.abstain],
      eligible: p.eligible,
      outcome: p.outcome ?? null,
      weightsVerified: p.weightsVerified ?? null,
      decidedBy: p.decidedBy ?? null,
      equivocators: [...p.equivocators],
      confirmed: p.confirmed,
    }))
  const manifests = [...state.manifests.values()]
    .sort((a, b) => compareCids(a.cid, b.cid))
    .map((m) => ({
      cid: m.cid,
      status: m.status,
      ratifiedBy: [...m.ratifiedBy],
      revokedBy: [...m.revokedBy],
    }))
  const models = [...state.models.values()]
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .map((m) => ({
      key: m.key,
      status: m.status,
      manifests: [...m.manifests],
      manifest: m.manifest ?? null,
      decision: m.decision ?? null,
    }))
  return encode({
    federation: state.federation,
    head: state.head,
    height: state.height,
    members: state.members.map((m) => ({ id: m.id, roles: [...m.roles], weight: m.weight })),
    rules: state.rules,
    proposals,
    manifests,
    models,
    checkpoint: state.checkpoint
      ? { cid: state.checkpoint.cid, signers: [...state.checkpoint.signers] }
      : null,
    checkpointEquivocators: [...state.checkpointEquivocators],
  })
}
