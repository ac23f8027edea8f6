/**
 * Governance states (SPEC.md §8.2): members, rules, and the keys retired
 * along the chain. `wellFormed` is the check every genesis and every
 * governance decision must pass, so no change can brick the federation.
 * `applyAction` computes `state(G) = apply(G.action, state(G.basis))`. The rules' optional
 * `minVersion` is read by protocol/fold/versions.ts (docs/adr/0023).
 */

import type { InapplicableCode } from './codes.js'
import type { Did } from './did.js'
import { LIMITS } from './limits.js'
import type { Action, ActionRule, Fraction, Member, Role, Rules } from './types.js'

export interface GovState {
  /** By key. Iteration order is not significant; use `sortedMembers` for output. */
  readonly members: ReadonlyMap<Did, Member>
  readonly rules: Rules
  /** Keys removed or replaced earlier in the chain: never members again. */
  readonly retired: ReadonlySet<Did>
  /** Position in the governance chain: 0 for the genesis. */
  readonly height: number
}

export function genesisState(members: readonly Member[], rules: Rules): GovState {
  return Object.freeze({
    members: new Map(members.map((m) => [m.id, m])),
    rules,
    retired: new Set<Did>(),
    height: 0,
  })
}

export function hasRole(state: GovState, id: Did, role: Role): boolean {
  const m = state.members.get(id)
  return m?.roles.includes(role) === true
}

export function ruleFor(rules: Rules, actionType: string): ActionRule {
  return rules.actions[actionType] ?? rules.actions['*']!
}

export function stewardsOf(state: GovState): Did[] {
  const out: Did[] = []
  for (const m of state.members.values()) if (m.roles.includes('steward')) out.push(m.id)
  return out
}

/** Total weight of the voters: the quorum's denominator side. */
export function eligibleWeight(state: GovState): number {
  let w = 0
  for (const m of state.members.values()) if (m.roles.includes('voter')) w += m.weight
  return w
}

function fractionOk(f: Fraction): boolean {
  return f[1] >= 1 && f[0] >= 0 && f[0] <= f[1]
}

/** Why `members` + `rules` are not a well-formed state, or undefined when they are. */
export function wellFormedProblem(
  members: Iterable<Member>,
  rules: Rules,
  retired: ReadonlySet<Did> = new Set(),
): string | undefined {
  let stewards = 0
  let voters = 0
  let count = 0
  const seen = new Set<Did>()
  for (const m of members) {
    count++
    if (seen.has(m.id)) return `member ${m.id} is listed twice`
    seen.add(m.id)
    if (retired.has(m.id)) return `key ${m.id} was removed or replaced earlier in the chain`
    if (m.weight < 1) return `member ${m.id} has weight ${m.weight}; every weight is at least 1`
    if (m.roles.includes('steward')) stewards++
    if (m.roles.includes('voter')) voters++
  }
  const t = rules.sealThreshold
  if (count > LIMITS.maxMembers) return `more than ${LIMITS.maxMembers} members`
  if (t < 1) return 'the seal threshold must be at least 1'
  if (stewards < t) return `${stewards} stewards cannot reach the seal threshold ${t}`
  if (2 * t <= stewards) return `seal threshold ${t} must be more than half of ${stewards} stewards`
  if (voters < 1) return 'at least one voter is needed'
  if (rules.votingPeriodMs <= 2 * rules.sealGraceMs)
    return 'the voting period must be longer than twice the seal grace'
  if (!(rules.sealGraceMs < rules.weightsDeadlineMs && rules.weightsDeadlineMs < rules.sealDeadlineMs)) {
    return 'timings must satisfy sealGraceMs < weightsDeadlineMs < sealDeadlineMs'
  }
  if (rules.checkpointIntervalMs < 1) return 'the checkpoint interval must be at least 1 ms'
  if (rules.maxOpenProposalsPerAuthor < 1) return 'maxOpenProposalsPerAuthor must be at least 1'
  if (rules.minVersion !== undefined && !(rules.minVersion >= 1)) return 'minVersion must be at least 1'
  for (const [name, rule] of Object.entries(rules.actions)) {
    if (!fractionOk(rule.quorum)) return `quorum of "${name}" must satisfy 0 ≤ n ≤ d, d ≥ 1`
    if (!fractionOk(rule.threshold)) return `threshold of "${name}" must satisfy 0 ≤ n ≤ d, d ≥ 1`
  }
  return undefined
}

export type ActionResult =
  | { ok: true; state: GovState }
  | { ok: false; code: InapplicableCode; message: string }

/** The state a governance action leads to from `state`, or why it is void. */
export function applyAction(state: GovState, action: Action): ActionResult {
  const members = new Map(state.members)
  let retired = state.retired
  let rules = state.rules
  switch (action.type) {
    case 'admit-member': {
      const m = action.member
      if (members.has(m.id))
        return { ok: false, code: 'action-member-exists', message: `${m.id} is already a member` }
      if (retired.has(m.id))
        return { ok: false, code: 'action-key-retired', message: `${m.id} was removed or replaced before` }
      members.set(m.id, m)
      break
    }
    case 'remove-member': {
      if (!members.has(action.id))
        return { ok: false, code: 'action-member-unknown', message: `${action.id} is not a member` }
      members.delete(action.id)
      retired = new Set(retired).add(action.id)
      break
    }
    case 'replace-key': {
      const old = members.get(action.id)
      if (!old) return { ok: false, code: 'action-member-unknown', message: `${action.id} is not a member` }
      if (members.has(action.newId))
        return { ok: false, code: 'action-member-exists', message: `${action.newId} is already a member` }
      if (retired.has(action.newId))
        return {
          ok: false,
          code: 'action-key-retired',
          message: `${action.newId} was removed or replaced before`,
        }
      members.delete(action.id)
      members.set(action.newId, { ...old, id: action.newId })
      retired = new Set(retired).add(action.id)
      break
    }
    case 'change-rules':
      rules = action.rules
      break
    default:
      return { ok: false, code: 'action-ill-formed', message: `${action.type} is not a governance action` }
  }
  const problem = wellFormedProblem(members.values(), rules, retired)
  if (problem)
    return {
      ok: false,
      code: 'action-ill-formed',
      message: `the decision would leave an ill-formed state: ${problem}`,
    }
  return { ok: true, state: Object.freeze({ members, rules, retired, height: state.height + 1 }) }
}
