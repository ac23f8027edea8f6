/**
 * Text at the edges (STYLE.md 3): records and states rendered as JSON for the
 * HTTP API and the CLI. CIDs become their base32 text, byte strings hex.
 */
import { CID } from 'multiformats/cid'
import {
  type FederationState,
  type ProposalView,
  proposalStatus,
  quorumMet,
  ruleFor,
  stateRoot,
} from '../protocol/index.js'

/** Any decoded DAG-CBOR value as plain JSON: CIDs as strings, bytes as hex. */
export function toJson(value: unknown): unknown {
  const cid = CID.asCID(value)
  if (cid) return cid.toString()
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex')
  if (Array.isArray(value)) return value.map(toJson)
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = toJson(v)
    return out
  }
  return value
}

export function proposalJson(p: ProposalView, now: number): Record<string, unknown> {
  const status = proposalStatus(p, now)
  const rule = p.rules ? ruleFor(p.rules, p.action.type) : undefined
  const cast = p.tally.yes + p.tally.no + p.tally.abstain
  const quorumNeeded = rule ? Math.ceil((rule.quorum[0] * p.eligible) / rule.quorum[1]) : undefined
  return {
    id: p.cid.toString(),
    title: p.title,
    author: p.author,
    at: p.at,
    closesAt: p.closesAt,
    basis: p.basis.toString(),
    action: toJson(p.action),
    governance: p.governance,
    status,
    ...(p.reason ? { reason: p.reason } : {}),
    tally: p.tally,
    eligible: p.eligible,
    ...(quorumNeeded !== undefined
      ? { quorumNeeded, quorumMet: rule ? quorumMet(p.tally, p.eligible, rule) : false }
      : {}),
    cast,
    ...(p.outcome ? { outcome: p.outcome } : {}),
    ...(p.weightsVerified !== undefined ? { weightsVerified: p.weightsVerified } : {}),
    ...(p.decidedBy ? { decidedBy: p.decidedBy.toString() } : {}),
    equivocators: p.equivocators,
    confirmed: p.confirmed,
    timeLeftMs: Math.max(0, p.closesAt - now),
    ...(status === 'closed-awaiting-seals' && p.rules
      ? { sealDeadline: p.closesAt + p.rules.sealDeadlineMs }
      : {}),
  }
}

export function stateJson(state: FederationState): Record<string, unknown> {
  return {
    federation: state.federation.toString(),
    head: state.head.toString(),
    height: state.height,
    stateRoot: stateRoot(state).toString(),
    records: state.recordCount,
    members: state.members.map((m) => ({ id: m.id, roles: m.roles, weight: m.weight })),
    rules: toJson(state.rules),
    ...(state.checkpoint
      ? {
          checkpoint: {
            id: state.checkpoint.cid.toString(),
            epoch: state.checkpoint.epoch,
            height: state.checkpoint.height,
            head: state.checkpoint.head.toString(),
            stateRoot: state.checkpoint.stateRoot.toString(),
            signers: state.checkpoint.signers,
          },
        }
      : {}),
    checkpointEquivocators: state.checkpointEquivocators,
  }
}
