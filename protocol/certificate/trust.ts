/**
 * The trusted head a verifier keeps (SPEC.md §12.3; docs/adr/0021): its trust mark, the
 * governance head of the checkpoint it last accepted and that head's state, as TUF keeps its
 * trusted root. Encoded as DAG-CBOR `{v: 1, height, epoch, head, members, rules, retired}`
 * (members sorted by id, retired keys sorted), so a CLI or another implementation can store it.
 */
import { CID } from 'multiformats/cid'
import { compareBytes, utf8 } from '../bytes.js'
import { decodeStrict, encode, GENESIS_SCAN_LIMITS, type ScanLimits } from '../cbor.js'
import { parseDid } from '../did.js'
import { type GovState, wellFormedProblem } from '../govstate.js'
import { LIMITS } from '../limits.js'
import { ok, type Result, reject } from '../result.js'
import { fields, int, memberSchema, rulesSchema } from '../schema.js'
import type { Member, Rules } from '../types.js'
import type { TrustedHead, TrustMark } from './format.js'

/**
 * A state holds up to LIMITS.maxMembers members, and retired keys pile up along the chain, so a
 * kept head may list many more keys than a genesis; it is the verifier's own file, read locally.
 */
const TRUSTED_HEAD_SCAN: ScanLimits = {
  ...GENESIS_SCAN_LIMITS,
  maxBytes: 16 * 1024 * 1024,
  maxCollectionItems: 20 * LIMITS.maxMembers,
}

const byId = (a: string, b: string) => compareBytes(utf8.encode(a), utf8.encode(b))

export function encodeTrustedHead(trusted: TrustedHead): Uint8Array {
  const members = [...trusted.state.members.values()]
    .sort((a, b) => byId(a.id, b.id))
    .map((m) => ({ id: m.id, roles: [...m.roles], weight: m.weight }))
  return encode({
    v: 1,
    height: trusted.height,
    epoch: trusted.epoch,
    head: trusted.head,
    members,
    rules: trusted.state.rules,
    retired: [...trusted.state.retired].sort(byId),
  })
}

/** Reads what `encodeTrustedHead` wrote; anything else (or a state that is not well-formed) is refused. */
export function decodeTrustedHead(bytes: Uint8Array): Result<TrustedHead> {
  const decoded = decodeStrict(bytes, TRUSTED_HEAD_SCAN)
  if (!decoded.ok) return decoded
  const bad = fields(decoded.value, '', ['v', 'height', 'epoch', 'head', 'members', 'rules', 'retired'])
  if (bad) return bad
  const value = decoded.value as Record<string, unknown>
  if (value.v !== 1) return reject('schema-version', 'a trusted head this version reads has v 1', 'v')
  const head = CID.asCID(value.head)
  if (!head) return reject('schema-type', 'expected a CID', 'head')
  const problem =
    int(value.height, 'height', 0) ??
    int(value.epoch, 'epoch', 0) ??
    membersProblem(value.members) ??
    rulesSchema(value.rules, 'rules') ??
    retiredProblem(value.retired)
  if (problem) return problem
  const members = value.members as Member[]
  const rules = value.rules as Rules
  const retired = new Set(value.retired as string[])
  const ill = wellFormedProblem(members, rules, retired)
  if (ill) return reject('schema-range', `the trusted head's state is not well-formed: ${ill}`, 'members')
  const state: GovState = Object.freeze({
    members: new Map(members.map((m) => [m.id, m])),
    rules,
    retired: retired as GovState['retired'],
    height: value.height as number,
  })
  const mark: TrustMark = { height: value.height as number, epoch: value.epoch as number }
  return ok({ ...mark, head, state })
}

function membersProblem(members: unknown) {
  if (!Array.isArray(members)) return reject('schema-type', 'expected a list of members', 'members')
  for (let i = 0; i < members.length; i++) {
    const bad = memberSchema(members[i], `members[${i}]`, false)
    if (bad) return bad
    if (i > 0 && byId((members[i - 1] as Member).id, (members[i] as Member).id) >= 0)
      return reject('schema-order', 'members are sorted by id, each once', `members[${i}]`)
  }
  return undefined
}

function retiredProblem(retired: unknown) {
  if (!Array.isArray(retired)) return reject('schema-type', 'expected a list of keys', 'retired')
  for (let i = 0; i < retired.length; i++) {
    const did = parseDid(retired[i], `retired[${i}]`)
    if (!did.ok) return did
    if (i > 0 && byId(retired[i - 1] as string, retired[i] as string) >= 0)
      return reject('schema-order', 'retired keys are sorted, each once', `retired[${i}]`)
  }
  return undefined
}
