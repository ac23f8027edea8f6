/**
 * The weights settings of a node's config: what it mirrors, how long it keeps uploads nobody
 * ratified, how fast it re-hashes what it holds, and what it says about itself in holding
 * announcements. Parsed apart from the rest of the config (config.ts) so that the settings of
 * one wing read as one list.
 */
import { NodeError } from './errors.js'
import { isGatewayUrl } from './holdings/wire.js'

/**
 * `none`: hold only what this node's own duties need (a steward's checks, uploads); `ratified`:
 * every ratified version; a list of name patterns (`occiglot/*`, `*-de`): the ratified versions
 * whose name matches one of them (`*` stands for any run of characters, `/` included).
 */
export type MirrorPolicy = 'none' | 'ratified' | readonly string[]

export interface WeightsConfig {
  /** What this node fetches, verifies, pins and serves of its own accord (default `none`). */
  readonly mirror?: MirrorPolicy
  /** Uploads never ratified are let go this long after they stop being able to be (default 30 days). */
  readonly unratifiedRetentionMs?: number
  /** A ratified version held by fewer holders than this is flagged in the replication report (default 3). */
  readonly minHolders?: number
  /**
   * The base URLs of this node's trustless gateway as others reach it, put in its holding
   * announcements (default `http://<api>` when `api` names an address others can dial: not a
   * wildcard such as 0.0.0.0).
   */
  readonly announceGateways?: readonly string[]
  /** How often a holding announcement is renewed (default 4 hours; it expires after three missed renewals). */
  readonly holdingRenewMs?: number
  /** Bytes per second the background scrub re-hashes at most (default 32 MiB/s; 0 turns scrubbing off). */
  readonly scrubBytesPerSecond?: number
}

export const WEIGHTS_CONFIG_DEFAULTS = Object.freeze({
  mirror: 'none' as MirrorPolicy,
  unratifiedRetentionMs: 30 * 24 * 60 * 60 * 1000,
  minHolders: 3,
  holdingRenewMs: 4 * 60 * 60 * 1000,
  scrubBytesPerSecond: 32 * 1024 * 1024,
})

export const WEIGHTS_CONFIG_KEYS = [
  'mirror',
  'unratifiedRetentionMs',
  'minHolders',
  'announceGateways',
  'holdingRenewMs',
  'scrubBytesPerSecond',
] as const

/** The most name patterns a mirror policy may hold, and the longest pattern. */
export const MAX_MIRROR_PATTERNS = 256
export const MAX_MIRROR_PATTERN_CHARS = 200

// A base URL with no path here; holding announcements (holdings/wire.ts) refuse more, and a
// setting they refuse would make every announcement fail to sign, so both checks apply.
const GATEWAY_URL = /^https?:\/\/[^\s/]+\/?$/

function invalid(message: string): NodeError {
  return new NodeError('config-invalid', message, { status: 400 })
}

/** Why `value` is not a mirror policy, or undefined when it is one. */
export function mirrorPolicyProblem(value: unknown): string | undefined {
  if (value === 'none' || value === 'ratified') return undefined
  if (!Array.isArray(value)) return 'must be "none", "ratified" or a list of name patterns'
  if (value.length > MAX_MIRROR_PATTERNS) return `holds over ${MAX_MIRROR_PATTERNS} patterns`
  for (const p of value) {
    if (typeof p !== 'string' || p.length === 0 || p.length > MAX_MIRROR_PATTERN_CHARS)
      return `each pattern must be a text of 1 to ${MAX_MIRROR_PATTERN_CHARS} characters`
    if (/[\s@]/.test(p)) return `the pattern "${p}" holds a space or "@" (patterns match model names only)`
  }
  return undefined
}

/** Whether the model name `name` falls under `policy`. */
export function mirrors(policy: MirrorPolicy, name: string): boolean {
  if (policy === 'none') return false
  if (policy === 'ratified') return true
  return policy.some((pattern) => globMatches(pattern, name))
}

/**
 * `*` for any run of characters; everything else literal. Two pointers, backing off to the last
 * `*` seen: linear in the name for each `*`, never exponential (a backtracking regex built from
 * `*a*a*a…b` took minutes on a name of forty `a`s, and the policy is matched on every tick).
 */
function globMatches(pattern: string, name: string): boolean {
  let p = 0
  let n = 0
  let star = -1 // the index in `pattern` just after the last `*` seen
  let resume = 0 // where in `name` that `*` stopped matching
  while (n < name.length) {
    if (p < pattern.length && pattern[p] === '*') {
      while (pattern[p] === '*') p++
      star = p
      resume = n
    } else if (p < pattern.length && pattern[p] === name[n]) {
      p++
      n++
    } else if (star >= 0) {
      // The last `*` takes one more character; the rest of the pattern tries again after it.
      p = star
      n = ++resume
    } else return false
  }
  while (pattern[p] === '*') p++
  return p === pattern.length
}

function wholeNumber(
  c: Record<string, unknown>,
  key: string,
  min: number,
  where: string,
): number | undefined {
  const v = c[key]
  if (v === undefined) return undefined
  if (!Number.isSafeInteger(v) || (v as number) < min)
    throw invalid(`${where}: "${key}" must be a whole number, ${min} or more`)
  return v as number
}

/** The weights settings present in the raw config `c`, checked. */
export function parseWeightsConfig(c: Record<string, unknown>, where: string): WeightsConfig {
  if (c.mirror !== undefined) {
    const why = mirrorPolicyProblem(c.mirror)
    if (why) throw invalid(`${where}: "mirror" ${why}`)
  }
  const announce = c.announceGateways
  if (
    announce !== undefined &&
    (!Array.isArray(announce) ||
      announce.length > 8 ||
      announce.some((g) => typeof g !== 'string' || !GATEWAY_URL.test(g) || !isGatewayUrl(g)))
  )
    throw invalid(`${where}: "announceGateways" must be a list of at most 8 http(s)://host:port URLs`)
  const numbers: Record<string, number> = {}
  for (const [key, min] of [
    ['unratifiedRetentionMs', 0],
    ['minHolders', 1],
    ['holdingRenewMs', 1000],
    ['scrubBytesPerSecond', 0],
  ] as const) {
    const v = wholeNumber(c, key, min, where)
    if (v !== undefined) numbers[key] = v
  }
  return {
    ...(c.mirror !== undefined ? { mirror: c.mirror as MirrorPolicy } : {}),
    ...(announce !== undefined ? { announceGateways: announce as string[] } : {}),
    ...numbers,
  }
}

/**
 * The gateway URLs a node announces: its setting, or `http://<api>` when others can dial it. A
 * wildcard or loopback API (127.0.0.0/8, ::1, localhost) is announced only when set: another
 * node dialing it would reach itself.
 */
export function announcedGateways(config: { api: string; announceGateways?: readonly string[] }): string[] {
  if (config.announceGateways) return [...config.announceGateways]
  const host = config.api.slice(0, config.api.lastIndexOf(':')).toLowerCase()
  if (['0.0.0.0', '::', '[::]', '::1', '[::1]', 'localhost'].includes(host)) return []
  if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) return []
  return [`http://${config.api}`]
}

/**
 * The policy after `node mirror add PATTERN|ratified`: `ratified` replaces any list; a pattern
 * joins the list (once), and adding one to `ratified` changes nothing (it already covers every name).
 */
export function mirrorAdded(policy: MirrorPolicy, entry: string): MirrorPolicy {
  if (entry === 'ratified') return 'ratified'
  if (policy === 'ratified') return policy
  const patterns = policy === 'none' ? [] : policy
  return patterns.includes(entry) ? patterns : [...patterns, entry]
}

/**
 * The policy after `node mirror rm PATTERN|ratified`, or undefined when `entry` is not in it.
 * A list left empty is `none`.
 */
export function mirrorRemoved(policy: MirrorPolicy, entry: string): MirrorPolicy | undefined {
  if (policy === 'none') return undefined
  if (policy === 'ratified') return entry === 'ratified' ? 'none' : undefined
  if (!policy.includes(entry)) return undefined
  const left = policy.filter((p) => p !== entry)
  return left.length === 0 ? 'none' : left
}
