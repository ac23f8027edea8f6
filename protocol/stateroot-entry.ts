/**
 * The value a state root holds under `name@version` (SPEC.md §11.1):
 * `{status, decision, manifests: [{cid, ratified, revoked, suspension, taint}, …]}`.
 * `suspension` and `taint` are always null in this version; their shapes are
 * fixed now so that a later version fills them without a new layout.
 */
import { CID } from 'multiformats/cid'
import { compareCids, isRecordCid } from './cid.js'

export type EntryStatus = 'ratified' | 'conflicted' | 'revoked' | 'proposed'
export const ENTRY_STATUSES: readonly EntryStatus[] = ['ratified', 'conflicted', 'revoked', 'proposed']

/** A suspension of a manifest, in ms since the epoch: `since ≤ until`. */
export interface Suspension {
  readonly since: number
  readonly until: number
}

export type TaintReason = 'base-revoked' | 'base-suspended'
export const TAINT_REASONS: readonly TaintReason[] = ['base-revoked', 'base-suspended']

/** The nearest revoked or suspended ancestor of a manifest. */
export interface Taint {
  readonly ancestor: CID
  readonly reason: TaintReason
}

export interface ManifestEntry {
  readonly cid: CID
  /** A final-passed ratification of this manifest exists. */
  readonly ratified: boolean
  /** A final-passed revocation of this manifest exists. */
  readonly revoked: boolean
  readonly suspension: Suspension | null
  readonly taint: Taint | null
}

export interface MapValue {
  readonly status: EntryStatus
  /** The ratifying proposal (ratified) or a revoking one (revoked); null otherwise. */
  readonly decision: CID | null
  /** Every manifest of the version with a decision, sorted by CID, no CID twice. */
  readonly manifests: readonly ManifestEntry[]
}

/** A manifest entry with suspension and taint null: every entry this version builds. */
export function plainManifestEntry(cid: CID, ratified: boolean, revoked: boolean): ManifestEntry {
  return { cid, ratified, revoked, suspension: null, taint: null }
}

/** Manifests ratified and not revoked: the ones a status of ratified or conflicted counts. */
export function liveManifests(value: MapValue): ManifestEntry[] {
  return value.manifests.filter((m) => m.ratified && !m.revoked)
}

/** The manifest `name@version` resolves to: the one live manifest when the status is ratified. */
export function resolvedManifest(value: MapValue): ManifestEntry | undefined {
  if (value.status !== 'ratified') return undefined
  const live = liveManifests(value)
  return live.length === 1 ? live[0] : undefined
}

/**
 * The one manifest the status speaks of, if there is exactly one: the resolved manifest when
 * ratified, the revoked one when revoked, the only one when proposed; never for conflicted.
 */
export function soleManifest(value: MapValue): CID | undefined {
  const spoken =
    value.status === 'ratified' || value.status === 'conflicted'
      ? liveManifests(value)
      : value.status === 'revoked'
        ? value.manifests.filter((m) => m.revoked)
        : value.manifests
  return spoken.length === 1 ? spoken[0]!.cid : undefined
}

/** The DAG-CBOR form of a value; manifests sorted by CID (a CID twice is a caller's error). */
export function encodeValue(value: MapValue): unknown {
  const manifests = [...value.manifests].sort((a, b) => compareCids(a.cid, b.cid))
  for (let i = 1; i < manifests.length; i++) {
    if (manifests[i - 1]!.cid.equals(manifests[i]!.cid))
      throw new TypeError(`manifest ${manifests[i]!.cid} twice in a state-root entry`)
  }
  return {
    status: value.status,
    decision: value.decision,
    manifests: manifests.map((m) => ({
      cid: m.cid,
      ratified: m.ratified,
      revoked: m.revoked,
      suspension: m.suspension && { since: m.suspension.since, until: m.suspension.until },
      taint: m.taint && { ancestor: m.taint.ancestor, reason: m.taint.reason },
    })),
  }
}

// --- Reading a value: each function one rule of SPEC §11.1's entry table ---

/** Why a decoded value is not an entry value, or undefined when it is one. */
export type ValueProblem = string | undefined

function isMapWithKeys(v: unknown, keys: readonly string[]): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || CID.asCID(v) !== null) return false
  const own = Object.keys(v)
  return own.length === keys.length && keys.every((k) => Object.hasOwn(v, k))
}

/** A CID naming a record: CIDv1, dag-cbor, sha2-256. */
function recordCid(v: unknown): CID | undefined {
  const cid = CID.asCID(v)
  return cid !== null && isRecordCid(cid) ? cid : undefined
}

function parseSuspension(v: unknown): Suspension | null | undefined {
  if (v === null) return null
  if (!isMapWithKeys(v, ['since', 'until'])) return undefined
  const { since, until } = v
  if (!Number.isSafeInteger(since) || !Number.isSafeInteger(until)) return undefined
  if ((since as number) < 0 || (since as number) > (until as number)) return undefined
  return { since: since as number, until: until as number }
}

function parseTaint(v: unknown): Taint | null | undefined {
  if (v === null) return null
  if (!isMapWithKeys(v, ['ancestor', 'reason'])) return undefined
  const ancestor = recordCid(v.ancestor)
  if (!ancestor || !TAINT_REASONS.includes(v.reason as TaintReason)) return undefined
  return { ancestor, reason: v.reason as TaintReason }
}

function parseManifestEntry(v: unknown): ManifestEntry | undefined {
  if (!isMapWithKeys(v, ['cid', 'ratified', 'revoked', 'suspension', 'taint'])) return undefined
  const cid = recordCid(v.cid)
  const suspension = parseSuspension(v.suspension)
  const taint = parseTaint(v.taint)
  if (!cid || typeof v.ratified !== 'boolean' || typeof v.revoked !== 'boolean') return undefined
  if (suspension === undefined || taint === undefined) return undefined
  return { cid, ratified: v.ratified, revoked: v.revoked, suspension, taint }
}

function manifestsSortedAndDistinct(manifests: readonly ManifestEntry[]): ValueProblem {
  for (let i = 1; i < manifests.length; i++) {
    if (compareCids(manifests[i - 1]!.cid, manifests[i]!.cid) >= 0)
      return 'its manifests are not sorted by CID without repeats'
  }
  return undefined
}

/** ratified: one live manifest; conflicted: two or more; revoked: none live, one revoked; proposed: none live. */
function statusAgreesWithManifests(value: MapValue): ValueProblem {
  const live = liveManifests(value).length
  const agrees =
    value.status === 'ratified'
      ? live === 1
      : value.status === 'conflicted'
        ? live >= 2
        : value.status === 'revoked'
          ? live === 0 && value.manifests.some((m) => m.revoked)
          : live === 0
  return agrees ? undefined : `its status ${value.status} disagrees with its manifests`
}

/** A decision names the deciding proposal of a ratified or revoked version, and nothing else. */
function decisionAgreesWithStatus(value: MapValue): ValueProblem {
  const decides = value.status === 'ratified' || value.status === 'revoked'
  return decides === (value.decision !== null) ? undefined : `a ${value.status} entry with a wrong decision`
}

/** The entry value in `v`, or why it is not one (any deviation from the exact layout). */
export function parseValue(v: unknown): { value: MapValue } | { problem: string } {
  if (!isMapWithKeys(v, ['status', 'decision', 'manifests']))
    return { problem: 'it is not {status, decision, manifests}' }
  if (!ENTRY_STATUSES.includes(v.status as EntryStatus)) return { problem: 'its status is unknown' }
  const decision = v.decision === null ? null : recordCid(v.decision)
  if (decision === undefined) return { problem: 'its decision is neither null nor a record CID' }
  if (!Array.isArray(v.manifests)) return { problem: 'its manifests are not a list' }
  const manifests: ManifestEntry[] = []
  for (const item of v.manifests) {
    const entry = parseManifestEntry(item)
    if (!entry)
      return { problem: 'a manifest is not {cid, ratified, revoked, suspension, taint} of the stated types' }
    manifests.push(entry)
  }
  const value: MapValue = { status: v.status as EntryStatus, decision, manifests }
  const problem =
    manifestsSortedAndDistinct(manifests) ??
    statusAgreesWithManifests(value) ??
    decisionAgreesWithStatus(value)
  return problem === undefined ? { value } : { problem }
}
