/**
 * What people type for members and rules (SPEC §5.2 for the rules they become): member specs parsed from the right
 * (`did:key:z6Mk…:steward,voter:1`), `--rule ACTION:quorum=1/2,threshold=2/3`,
 * `--require ACTION:KIND=MIN` and the timing options. Every mistake is a usage error (exit 2).
 */
import type { Command } from 'commander'
import {
  ACTION_TYPES,
  type ActionRule,
  type Fraction,
  type Member,
  parseRegistrableDid,
  ROLES,
  type Role,
  type Rules,
} from '../protocol/index.js'
import { collect, usage } from './context.js'
import { formatDuration as formatMs, parseDuration, parseSize } from './durations.js'

export function parseRoles(text: string, where: string): Role[] {
  const roles = new Set<Role>()
  for (const raw of text.split(',')) {
    const r = raw.trim()
    if (!(ROLES as readonly string[]).includes(r))
      throw usage(`${where}: unknown role "${r}" (roles are ${ROLES.join(', ')})`)
    roles.add(r as Role)
  }
  return [...roles].sort()
}

export function parseWeight(text: string, where: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 2 ** 32)
    throw usage(`${where}: the weight must be an integer from 1 to 2^32, not "${text}"`)
  return Number(text)
}

export function checkDid(did: string, where: string): string {
  const parsed = parseRegistrableDid(did)
  if (!parsed.ok) throw usage(`${where}: ${did} is not a member key: ${parsed.message}`)
  return did
}

/** `DID:ROLES[:WEIGHT]`, read from the right (the did itself holds colons). */
export function parseMemberSpec(spec: string): Member {
  const where = `--member ${spec}`
  const parts = spec.split(':')
  let weight = 1
  if (parts.length > 1 && /^\d+$/.test(parts[parts.length - 1]!)) weight = parseWeight(parts.pop()!, where)
  // A did:key has three parts of its own: with fewer than four, the roles are missing.
  if (parts.length < 4 || !spec.startsWith('did:'))
    throw usage(`${where}: expected DID:ROLES[:WEIGHT], e.g. did:key:z6Mk…:steward,voter:1`)
  const roles = parseRoles(parts.pop()!, where)
  return { id: checkDid(parts.join(':'), where), roles, weight }
}

/** Members sorted by id, each once. */
export function parseMembers(specs: readonly string[]): Member[] {
  const byId = new Map<string, Member>()
  for (const spec of specs) {
    const m = parseMemberSpec(spec)
    if (byId.has(m.id)) throw usage(`--member: ${m.id} is listed twice`)
    byId.set(m.id, m)
  }
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}

function parseFraction(text: string, where: string): Fraction {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim())
  if (!m) throw usage(`${where}: a fraction is N/D, like 2/3, not "${text}"`)
  const n = Number(m[1])
  const d = Number(m[2])
  if (d < 1 || n > d || d > 2 ** 32) throw usage(`${where}: ${text} must satisfy 0 ≤ N ≤ D, 1 ≤ D ≤ 2^32`)
  return [n, d]
}

function actionName(text: string, where: string): string {
  const a = text === 'default' ? '*' : text
  if (a !== '*' && !(ACTION_TYPES as readonly string[]).includes(a))
    throw usage(`${where}: unknown action "${text}" (one of ${ACTION_TYPES.join(', ')}, or * / default)`)
  return a
}

export interface RuleOptions {
  rule?: string[]
  require?: string[]
  votingPeriod?: string
  sealThreshold?: string
  sealGrace?: string
  weightsDeadline?: string
  sealDeadline?: string
  checkpointInterval?: string
  maxOpenProposals?: string
  maxModelBytes?: string
}

/** The rule options, shared by `federation create` and `propose rules`. */
export function withRuleOptions(cmd: Command, defaults: 'create' | 'change'): Command {
  const d = (create: string) => (defaults === 'create' ? ` (default ${create})` : ' (default: unchanged)')
  return cmd
    .option(
      '--rule <ACTION:quorum=N/D,threshold=N/D>',
      `quorum and threshold of an action; ACTION is one of ${ACTION_TYPES.join(', ')} or * (every other)${defaults === 'create' ? '; default *:quorum=1/2,threshold=1/2' : ''}`,
      collect,
    )
    .option(
      '--require <ACTION:KIND=MIN>',
      'attestations a ratification needs: MIN passing audits of KIND',
      collect,
    )
    .option('--voting-period <dur>', `the shortest voting period${d('7d')}`)
    .option('--seal-threshold <t>', `seals needed to decide${d('a majority of the stewards')}`)
    .option('--seal-grace <dur>', `wait after closing before sealing${d('30s')}`)
    .option('--weights-deadline <dur>', `time to fetch and verify weights after closing${d('2h')}`)
    .option('--seal-deadline <dur>', `last moment for seals after closing${d('6h')}`)
    .option('--checkpoint-interval <dur>', `between checkpoints${d('1h')}`)
    .option('--max-open-proposals <n>', `open proposals per author${d('10')}`)
    .option('--max-model-bytes <size>', `largest model, e.g. 500GB or 1TiB${d('1TiB')}`)
}

function duration(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined
  const ms = parseDuration(text)
  if (ms === undefined) throw usage(`${flag}: not a duration: "${text}" (use e.g. 30s, 5m, 2h, 7d)`)
  return ms
}

function count(text: string | undefined, flag: string, min: number): number | undefined {
  if (text === undefined) return undefined
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) < min)
    throw usage(`${flag}: expected an integer ≥ ${min}, not "${text}"`)
  return Number(text)
}

export function defaultRules(stewards: number): Rules {
  return {
    votingPeriodMs: 7 * 86_400_000,
    sealThreshold: Math.floor(stewards / 2) + 1,
    sealGraceMs: 30_000,
    weightsDeadlineMs: 2 * 3_600_000,
    sealDeadlineMs: 6 * 3_600_000,
    checkpointIntervalMs: 3_600_000,
    maxModelBytes: 2 ** 40,
    maxOpenProposalsPerAuthor: 10,
    actions: { '*': { quorum: [1, 2], threshold: [1, 2], requiredAttestations: [] } },
  }
}

/** `base` with the options applied. Not yet checked for well-formedness. */
export function applyRuleOptions(base: Rules, opts: RuleOptions): Rules {
  let maxModelBytes: number | undefined
  if (opts.maxModelBytes !== undefined) {
    maxModelBytes = parseSize(opts.maxModelBytes)
    if (maxModelBytes === undefined)
      throw usage(`--max-model-bytes: not a size: "${opts.maxModelBytes}" (use e.g. 500GB, 1TiB)`)
  }
  const pick = <T>(v: T | undefined, old: T): T => (v === undefined ? old : v)
  const actions: Record<string, ActionRule> = {}
  for (const [k, v] of Object.entries(base.actions)) actions[k] = v
  const ruleOf = (a: string): ActionRule => actions[a] ?? actions['*']!
  for (const spec of opts.rule ?? []) {
    const where = `--rule ${spec}`
    const colon = spec.indexOf(':')
    if (colon < 0) throw usage(`${where}: expected ACTION:quorum=N/D,threshold=N/D`)
    const a = actionName(spec.slice(0, colon), where)
    let rule = ruleOf(a)
    for (const part of spec.slice(colon + 1).split(',')) {
      const [key, value] = part.split('=')
      if (value === undefined) throw usage(`${where}: expected quorum=N/D or threshold=N/D, not "${part}"`)
      if (key === 'quorum') rule = { ...rule, quorum: parseFraction(value, where) }
      else if (key === 'threshold') rule = { ...rule, threshold: parseFraction(value, where) }
      else throw usage(`${where}: unknown setting "${key}" (quorum or threshold)`)
    }
    actions[a] = rule
  }
  for (const spec of opts.require ?? []) {
    const where = `--require ${spec}`
    const m = /^([^:]+):([a-z][a-z0-9._-]*)=(\d+)$/.exec(spec)
    if (!m) throw usage(`${where}: expected ACTION:KIND=MIN, e.g. ratify-model:eval=2`)
    const a = actionName(m[1]!, where)
    const min = Number(m[3])
    if (min < 1 || min > 10_000) throw usage(`${where}: MIN must be from 1 to 10000`)
    const rule = ruleOf(a)
    const rest = rule.requiredAttestations.filter((r) => r.kind !== m[2])
    const requiredAttestations = [...rest, { kind: m[2]!, min }].sort((x, y) =>
      x.kind < y.kind ? -1 : x.kind > y.kind ? 1 : 0,
    )
    actions[a] = { ...rule, requiredAttestations }
  }
  return {
    votingPeriodMs: pick(duration(opts.votingPeriod, '--voting-period'), base.votingPeriodMs),
    sealThreshold: pick(count(opts.sealThreshold, '--seal-threshold', 1), base.sealThreshold),
    sealGraceMs: pick(duration(opts.sealGrace, '--seal-grace'), base.sealGraceMs),
    weightsDeadlineMs: pick(duration(opts.weightsDeadline, '--weights-deadline'), base.weightsDeadlineMs),
    sealDeadlineMs: pick(duration(opts.sealDeadline, '--seal-deadline'), base.sealDeadlineMs),
    checkpointIntervalMs: pick(
      duration(opts.checkpointInterval, '--checkpoint-interval'),
      base.checkpointIntervalMs,
    ),
    maxModelBytes: pick(maxModelBytes, base.maxModelBytes),
    maxOpenProposalsPerAuthor: pick(
      count(opts.maxOpenProposals, '--max-open-proposals', 1),
      base.maxOpenProposalsPerAuthor,
    ),
    actions,
  }
}

/** Human lines describing rules. */
export function describeRules(r: Rules): string[] {
  const f = (x: Fraction) => `${x[0]}/${x[1]}`
  const dur = (ms: number) => formatMs(ms)
  const lines = [
    `voting period ≥ ${dur(r.votingPeriodMs)}, seal threshold ${r.sealThreshold}, seal grace ${dur(r.sealGraceMs)}`,
    `weights deadline ${dur(r.weightsDeadlineMs)}, seal deadline ${dur(r.sealDeadlineMs)}, checkpoint every ${dur(r.checkpointIntervalMs)}`,
    `at most ${r.maxOpenProposalsPerAuthor} open proposals per author, models up to ${r.maxModelBytes} bytes`,
  ]
  for (const [a, rule] of Object.entries(r.actions).sort()) {
    const req = rule.requiredAttestations.map((x) => `${x.kind}≥${x.min}`).join(', ')
    lines.push(
      `${a}: quorum ${f(rule.quorum)}, threshold ${f(rule.threshold)}${req ? `, requires ${req}` : ''}`,
    )
  }
  return lines
}
