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

/** Eligible weights of states already seen: the fold asks once per proposal, seal and replay. */
const eligibleWeights = new WeakMap<GovState, number>()

/** Total weight of the voters: the quorum's denominator side. */
export function eligibleWeight(state: GovState): number {
  let w = eligibleWeights.get(state)
  if (w === undefined) {
    w = 0
    for (const m of state.members.values()) if (m.roles.includes('voter')) w += m.weight
    eligibleWeights.set(state, w)
  }
  return w
}

function fractionOk(f: Fraction): boolean {
  return f[1] >= 1 && f[0] >= 0 && f[0] <= f[1]
}

/** What the well-formedness check needs from the member list: counts, and the first member found wrong. */
interface MemberTally {
  readonly count: number
  readonly stewards: number
  readonly voters: number
  readonly problem: string | undefined
}

function tallyMembers(members: Iterable<Member>, retired: ReadonlySet<Did>): MemberTally {
  let stewards = 0
  let voters = 0
  let count = 0
  const seen = new Set<Did>()
  const tally = (problem: string) => ({ count, stewards, voters, problem })
  for (const m of members) {
    count++
    if (seen.has(m.id)) return tally(`member ${m.id} is listed twice`)
    seen.add(m.id)
    if (retired.has(m.id)) return tally(`key ${m.id} was removed or replaced earlier in the chain`)
    if (m.weight < 1) return tally(`member ${m.id} has weight ${m.weight}; every weight is at least 1`)
    if (m.roles.includes('steward')) stewards++
    if (m.roles.includes('voter')) voters++
  }
  return { count, stewards, voters, problem: undefined }
}

/**
 * Tallies of states already seen, so a governance step re-counts only the member it changes
 * rather than every member (the fold applies each step several times; docs/adr/0020).
 */
const tallies = new WeakMap<GovState, MemberTally>()

function tallyOf(state: GovState): MemberTally {
  let tally = tallies.get(state)
  if (!tally) {
    tally = tallyMembers(state.members.values(), state.retired)
    tallies.set(state, tally)
  }
  return tally
}

/** Why `members` + `rules` are not a well-formed state, or undefined when they are. */
export function wellFormedProblem(
  members: Iterable<Member>,
  rules: Rules,
  retired: ReadonlySet<Did> = new Set(),
): string | undefined {
  return tallyProblem(tallyMembers(members, retired), rules)
}

function tallyProblem(tally: MemberTally, rules: Rules): string | undefined {
  if (tally.problem) return tally.problem
  const { count, stewards, voters } = tally
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

/**
 * Results already computed, by state and action object: the fold applies the same decision to the
 * same state when it evaluates it and again when it replays the chain for a checkpoint, and both
 * then share one state object (states are frozen and never modified).
 */
const applied = new WeakMap<GovState, WeakMap<Action, ActionResult>>()

/** The state a governance action leads to from `state`, or why it is void. */
export function applyAction(state: GovState, action: Action): ActionResult {
  let byAction = applied.get(state)
  if (!byAction) {
    byAction = new WeakMap()
    applied.set(state, byAction)
  }
  let result = byAction.get(action)
  if (!result) {
    result = applyOnce(state, action)
    byAction.set(action, result)
  }
  return result
}

function applyOnce(state: GovState, action: Action): ActionResult {
  const change = memberChange(state, action)
  if (!change.ok) return change
  const { members, retired, rules, tally } = change
  const problem = tallyProblem(tally, rules)
  if (problem)
    return {
      ok: false,
      code: 'action-ill-formed',
      message: `the decision would leave an ill-formed state: ${problem}`,
    }
  const next: GovState = Object.freeze({ members, rules, retired, height: state.height + 1 })
  tallies.set(next, tally)
  return { ok: true, state: next }
}

type Change =
  | {
      ok: true
      members: ReadonlyMap<Did, Member>
      retired: ReadonlySet<Did>
      rules: Rules
      tally: MemberTally
    }
  | { ok: false; code: InapplicableCode; message: string }

/**
 * The members, retired keys and rules after `action`, with their tally. When every member of
 * `state` was well-formed, only the member the action adds, removes or renames can change the
 * tally: the keys it retires leave the member list in the same step.
 */
function memberChange(state: GovState, action: Action): Change {
  const before = tallyOf(state)
  const counted = (members: ReadonlyMap<Did, Member>, retired: ReadonlySet<Did>, delta: MemberTally) =>
    before.problem === undefined ? delta : tallyMembers(members.values(), retired)
  switch (action.type) {
    case 'admit-member': {
      const m = action.member
      if (state.members.has(m.id))
        return { ok: false, code: 'action-member-exists', message: `${m.id} is already a member` }
      if (state.retired.has(m.id))
        return { ok: false, code: 'action-key-retired', message: `${m.id} was removed or replaced before` }
      const members = new Map(state.members).set(m.id, m)
      const delta = {
        count: before.count + 1,
        stewards: before.stewards + (m.roles.includes('steward') ? 1 : 0),
        voters: before.voters + (m.roles.includes('voter') ? 1 : 0),
        problem:
          m.weight < 1 ? `member ${m.id} has weight ${m.weight}; every weight is at least 1` : undefined,
      }
      return {
        ok: true,
        members,
        retired: state.retired,
        rules: state.rules,
        tally: counted(members, state.retired, delta),
      }
    }
    case 'remove-member': {
      const old = state.members.get(action.id)
      if (!old) return { ok: false, code: 'action-member-unknown', message: `${action.id} is not a member` }
      const members = new Map(state.members)
      members.delete(action.id)
      const retired = new Set(state.retired).add(action.id)
      const delta = {
        count: before.count - 1,
        stewards: before.stewards - (old.roles.includes('steward') ? 1 : 0),
        voters: before.voters - (old.roles.includes('voter') ? 1 : 0),
        problem: undefined,
      }
      return { ok: true, members, retired, rules: state.rules, tally: counted(members, retired, delta) }
    }
    case 'replace-key': {
      const old = state.members.get(action.id)
      if (!old) return { ok: false, code: 'action-member-unknown', message: `${action.id} is not a member` }
      if (state.members.has(action.newId))
        return { ok: false, code: 'action-member-exists', message: `${action.newId} is already a member` }
      if (state.retired.has(action.newId))
        return {
          ok: false,
          code: 'action-key-retired',
          message: `${action.newId} was removed or replaced before`,
        }
      const members = new Map(state.members)
      members.delete(action.id)
      members.set(action.newId, { ...old, id: action.newId })
      const retired = new Set(state.retired).add(action.id)
      return { ok: true, members, retired, rules: state.rules, tally: counted(members, retired, before) }
    }
    case 'change-rules':
      // The member list is unchanged, and no state's members are ever modified: share it.
      return { ok: true, members: state.members, retired: state.retired, rules: action.rules, tally: before }
    default:
      return { ok: false, code: 'action-ill-formed', message: `${action.type} is not a governance action` }
  }
}
