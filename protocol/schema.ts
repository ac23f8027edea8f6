/**
 * Record schemas (SPEC.md §5): precise hand-written validators over decoded
 * DAG-CBOR values. Hand-written rather than a schema library because the
 * values are CBOR-native (CIDs, byte strings, safe integers) and every fault
 * must map to a stable code and a field path; a schema library would need a
 * custom type and an error-mapping layer for nearly every field.
 *
 * Each validator returns `undefined` when the value is good, or a Rejection
 * naming the field (the checks of single fields are in schema-checks.ts).
 * Unknown fields are rejected everywhere. A record of a
 * later version has only its envelope checked (`futureEnvelopeSchema`,
 * docs/adr/0023).
 */
import { parseDid, parseRegistrableDid } from './did.js'
import { isBcp47, isIdentifier, isModelName, isRelativePath, isSemver, isSpdxExpression } from './formats.js'
import { LIMITS } from './limits.js'
import { reject } from './result.js'
import {
  array,
  bytes,
  byUtf8,
  type Check,
  cid,
  fields,
  first,
  formatted,
  increasing,
  int,
  isPlainMap,
  join,
  type Obj,
  oneOf,
  optional,
  recordCid,
  text,
} from './schema-checks.js'
import { ACTION_TYPES, CHOICES, KINDS, MAX_MIN_VERSION, OUTCOMES, RECORD_VERSION, ROLES } from './types.js'

export { fields, int, isPlainMap, text } from './schema-checks.js'

// ---------------------------------------------------------------- members, rules

export function memberSchema(v: unknown, path: string, registering: boolean): Check {
  const f = fields(v, path, ['id', 'roles', 'weight'])
  if (f) return f
  const m = v as Obj
  const id = (registering ? parseRegistrableDid : parseDid)(m.id, join(path, 'id'))
  if (!id.ok) return id
  return first(
    () => array(m.roles, join(path, 'roles'), 1, ROLES.length, (r, p) => oneOf(r, p, ROLES)),
    () => increasing(m.roles as string[], join(path, 'roles'), byUtf8, 'a role'),
    () => int(m.weight, join(path, 'weight'), 0, LIMITS.maxWeight),
  )
}

function fraction(v: unknown, path: string): Check {
  return array(v, path, 2, 2, (x, p) => int(x, p, 0, LIMITS.maxFractionPart))
}

function actionRule(v: unknown, path: string): Check {
  const f = fields(v, path, ['quorum', 'threshold', 'requiredAttestations'])
  if (f) return f
  const r = v as Obj
  return first(
    () => fraction(r.quorum, join(path, 'quorum')),
    () => fraction(r.threshold, join(path, 'threshold')),
    () =>
      array(
        r.requiredAttestations,
        join(path, 'requiredAttestations'),
        0,
        LIMITS.maxRequiredAttestations,
        (x, p) => {
          const g = fields(x, p, ['kind', 'min'])
          if (g) return g
          const y = x as Obj
          return first(
            () => formatted(y.kind, join(p, 'kind'), (s) => isIdentifier(s), 'an attestation kind'),
            () => int(y.min, join(p, 'min'), 1, LIMITS.maxMembers),
          )
        },
      ),
    () =>
      increasing(
        (r.requiredAttestations as Obj[]).map((x) => x.kind as string),
        join(path, 'requiredAttestations'),
        byUtf8,
        'an attestation kind',
      ),
  )
}

const RULE_INTS = [
  'votingPeriodMs',
  'sealThreshold',
  'sealGraceMs',
  'weightsDeadlineMs',
  'sealDeadlineMs',
  'checkpointIntervalMs',
  'maxModelBytes',
  'maxOpenProposalsPerAuthor',
] as const

export function rulesSchema(v: unknown, path: string): Check {
  const f = fields(v, path, [...RULE_INTS, 'actions'], ['minVersion'])
  if (f) return f
  const r = v as Obj
  for (const k of RULE_INTS) {
    const bad = int(r[k], join(path, k), 0)
    if (bad) return bad
  }
  const minVersion = optional(r, 'minVersion', path, (x, p) => int(x, p, 1, MAX_MIN_VERSION))
  if (minVersion) return minVersion
  const actions = r.actions
  if (!isPlainMap(actions))
    return reject('schema-type', 'expected a map of action rules', join(path, 'actions'))
  if (!('*' in actions))
    return reject('schema-missing-field', 'the default action rule "*" is required', join(path, 'actions'))
  for (const [k, rule] of Object.entries(actions)) {
    if (k !== '*' && !(ACTION_TYPES as readonly string[]).includes(k)) {
      return reject('schema-unknown-field', `unknown action "${k}"`, join(join(path, 'actions'), k))
    }
    const bad = actionRule(rule, join(join(path, 'actions'), k))
    if (bad) return bad
  }
  return undefined
}

// ---------------------------------------------------------------- bodies

function genesisBody(v: unknown, path: string): Check {
  const f = fields(v, path, ['name', 'members', 'rules', 'nonce'])
  if (f) return f
  const b = v as Obj
  return first(
    () => text(b.name, join(path, 'name'), 1, LIMITS.maxNameBytes),
    () =>
      array(b.members, join(path, 'members'), 1, LIMITS.maxGenesisMembers, (m, p) =>
        memberSchema(m, p, true),
      ),
    () =>
      increasing(
        (b.members as Obj[]).map((m) => m.id as string),
        join(path, 'members'),
        byUtf8,
        'a member',
      ),
    () => rulesSchema(b.rules, join(path, 'rules')),
    () => bytes(b.nonce, join(path, 'nonce'), LIMITS.minNonceBytes, LIMITS.maxNonceBytes),
  )
}

function manifestFile(v: unknown, path: string): Check {
  const f = fields(v, path, ['path', 'size', 'sha256'])
  if (f) return f
  const x = v as Obj
  return first(
    () => formatted(x.path, join(path, 'path'), isRelativePath, 'a relative path'),
    () => int(x.size, join(path, 'size'), 0),
    () => bytes(x.sha256, join(path, 'sha256'), 32, 32),
  )
}

function manifestBody(v: unknown, path: string): Check {
  const f = fields(
    v,
    path,
    ['name', 'version', 'weights', 'cidProfile', 'files', 'size', 'format', 'license', 'languages'],
    ['parameters', 'base', 'card', 'description'],
  )
  if (f) return f
  const b = v as Obj
  return first(
    () => formatted(b.name, join(path, 'name'), isModelName, 'a model name'),
    () => formatted(b.version, join(path, 'version'), isSemver, 'a semantic version'),
    () => cid(b.weights, join(path, 'weights')),
    () => oneOf(b.cidProfile, join(path, 'cidProfile'), ['unixfs-v1-2025']),
    () => array(b.files, join(path, 'files'), 1, LIMITS.maxManifestFiles, manifestFile),
    () =>
      increasing(
        (b.files as Obj[]).map((x) => x.path as string),
        join(path, 'files'),
        byUtf8,
        'a file path',
      ),
    () => int(b.size, join(path, 'size'), 0),
    () => {
      const sum = (b.files as Obj[]).reduce((s, x) => s + (x.size as number), 0)
      return sum === b.size
        ? undefined
        : reject(
            'schema-range',
            `size ${b.size} is not the sum of the file sizes (${sum})`,
            join(path, 'size'),
          )
    },
    () => formatted(b.format, join(path, 'format'), (s) => isIdentifier(s, 32), 'a format name'),
    () => optional(b, 'parameters', path, (x, p) => int(x, p, 0)),
    () => formatted(b.license, join(path, 'license'), isSpdxExpression, 'an SPDX license expression'),
    () =>
      array(b.languages, join(path, 'languages'), 1, LIMITS.maxLanguages, (x, p) =>
        formatted(x, p, isBcp47, 'a BCP 47 language tag'),
      ),
    () => increasing(b.languages as string[], join(path, 'languages'), byUtf8, 'a language'),
    () => optional(b, 'base', path, recordCid),
    () => optional(b, 'card', path, cid),
    () => optional(b, 'description', path, (x, p) => text(x, p, 0, LIMITS.maxStringBytes)),
  )
}

function attestationBody(v: unknown, path: string): Check {
  const f = fields(v, path, ['subject', 'kind', 'result'], ['report', 'metrics'])
  if (f) return f
  const b = v as Obj
  return first(
    () => recordCid(b.subject, join(path, 'subject')),
    () => formatted(b.kind, join(path, 'kind'), (s) => isIdentifier(s), 'an attestation kind'),
    () => oneOf(b.result, join(path, 'result'), ['pass', 'fail']),
    () => optional(b, 'report', path, cid),
    () =>
      optional(b, 'metrics', path, (m, p) => {
        if (!isPlainMap(m)) return reject('schema-type', 'expected a map of integer metrics', p)
        const keys = Object.keys(m)
        if (keys.length > LIMITS.maxMetrics)
          return reject('schema-length', `at most ${LIMITS.maxMetrics} metrics`, p)
        for (const k of keys) {
          if (!isIdentifier(k))
            return reject('schema-format', `metric name "${k.slice(0, 40)}" is not an identifier`, join(p, k))
          const bad = int(m[k], join(p, k), Number.MIN_SAFE_INTEGER)
          if (bad) return bad
        }
        return undefined
      }),
  )
}

function action(v: unknown, path: string): Check {
  if (!isPlainMap(v)) return reject('schema-type', 'expected an action map', path)
  if (!('type' in v)) return reject('schema-missing-field', 'missing field "type"', join(path, 'type'))
  const t = oneOf(v.type, join(path, 'type'), ACTION_TYPES)
  if (t) return t
  switch (v.type) {
    case 'ratify-model':
      return fields(v, path, ['type', 'manifest']) ?? recordCid(v.manifest, join(path, 'manifest'))
    case 'revoke-model':
      return (
        fields(v, path, ['type', 'manifest', 'reason']) ??
        recordCid(v.manifest, join(path, 'manifest')) ??
        text(v.reason, join(path, 'reason'), 1, LIMITS.maxStringBytes)
      )
    case 'admit-member':
      return fields(v, path, ['type', 'member']) ?? memberSchema(v.member, join(path, 'member'), true)
    case 'remove-member': {
      const f = fields(v, path, ['type', 'id'])
      if (f) return f
      const d = parseDid(v.id, join(path, 'id'))
      return d.ok ? undefined : d
    }
    case 'replace-key': {
      const f = fields(v, path, ['type', 'id', 'newId'])
      if (f) return f
      const d = parseDid(v.id, join(path, 'id'))
      if (!d.ok) return d
      const n = parseRegistrableDid(v.newId, join(path, 'newId'))
      if (!n.ok) return n
      return v.id === v.newId
        ? reject('schema-duplicate', 'the new key must differ from the old one', join(path, 'newId'))
        : undefined
    }
    default:
      return fields(v, path, ['type', 'rules']) ?? rulesSchema(v.rules, join(path, 'rules'))
  }
}

function proposalBody(v: unknown, path: string): Check {
  const f = fields(v, path, ['action', 'basis', 'closesAt', 'title'], ['description'])
  if (f) return f
  const b = v as Obj
  return first(
    () => action(b.action, join(path, 'action')),
    () => recordCid(b.basis, join(path, 'basis')),
    () => int(b.closesAt, join(path, 'closesAt'), 0),
    () => text(b.title, join(path, 'title'), 1, LIMITS.maxTitleBytes),
    () => optional(b, 'description', path, (x, p) => text(x, p, 0, LIMITS.maxStringBytes)),
  )
}

function voteBody(v: unknown, path: string): Check {
  const f = fields(v, path, ['proposal', 'choice'], ['reason'])
  if (f) return f
  const b = v as Obj
  return first(
    () => recordCid(b.proposal, join(path, 'proposal')),
    () => oneOf(b.choice, join(path, 'choice'), CHOICES),
    () => optional(b, 'reason', path, (x, p) => text(x, p, 0, 4096)),
  )
}

function cidList(v: unknown, path: string): Check {
  const f = fields(v, path, ['root', 'count'])
  if (f) return f
  const l = v as Obj
  return recordCid(l.root, join(path, 'root')) ?? int(l.count, join(path, 'count'), 0, LIMITS.maxListEntries)
}

function sealBody(v: unknown, path: string): Check {
  const f = fields(v, path, ['proposal', 'votes', 'attestations', 'tally', 'outcome'], ['weightsVerified'])
  if (f) return f
  const b = v as Obj
  return first(
    () => recordCid(b.proposal, join(path, 'proposal')),
    () => cidList(b.votes, join(path, 'votes')),
    () => cidList(b.attestations, join(path, 'attestations')),
    () => {
      const p = join(path, 'tally')
      const g = fields(b.tally, p, ['yes', 'no', 'abstain'])
      if (g) return g
      const t = b.tally as Obj
      return (
        int(t.yes, join(p, 'yes'), 0) ?? int(t.no, join(p, 'no'), 0) ?? int(t.abstain, join(p, 'abstain'), 0)
      )
    },
    () => oneOf(b.outcome, join(path, 'outcome'), OUTCOMES),
    () =>
      optional(b, 'weightsVerified', path, (x, p) =>
        typeof x === 'boolean' ? undefined : reject('schema-type', 'expected true or false', p),
      ),
  )
}

function checkpointBody(v: unknown, path: string): Check {
  const f = fields(v, path, ['head', 'height', 'epoch', 'stateRoot', 'finalized'])
  if (f) return f
  const b = v as Obj
  return first(
    () => recordCid(b.head, join(path, 'head')),
    () => int(b.height, join(path, 'height'), 0),
    () => int(b.epoch, join(path, 'epoch'), 0),
    () => recordCid(b.stateRoot, join(path, 'stateRoot')),
    () => cidList(b.finalized, join(path, 'finalized')),
  )
}

const BODY: Record<string, (v: unknown, path: string) => Check> = {
  genesis: genesisBody,
  manifest: manifestBody,
  attestation: attestationBody,
  proposal: proposalBody,
  vote: voteBody,
  seal: sealBody,
  checkpoint: checkpointBody,
}

function cosigs(v: unknown, path: string): Check {
  return first(
    () =>
      array(v, path, 0, LIMITS.maxGenesisMembers, (x, p) => {
        const g = fields(x, p, ['id', 'sig'])
        if (g) return g
        const c = x as Obj
        const d = parseDid(c.id, join(p, 'id'))
        if (!d.ok) return d
        return c.sig instanceof Uint8Array && c.sig.length === 64
          ? undefined
          : reject(
              c.sig instanceof Uint8Array ? 'sig-length' : 'schema-type',
              'a signature is 64 bytes',
              join(p, 'sig'),
            )
      }),
    () =>
      increasing(
        (v as Obj[]).map((c) => c.id as string),
        path,
        byUtf8,
        'a co-signer',
      ),
  )
}

/** A record of a later version than this one speaks (SPEC.md §5.1, Versions): `v` an integer ≥ 2. */
export function isFutureVersion(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > RECORD_VERSION
}

/** What a later version may call a kind: an identifier of at most 64 bytes, without dots or underscores. */
const FUTURE_KIND = /^[a-z][a-z0-9-]{0,63}$/

/**
 * The exact top-level fields, with the federation faults named as such: a genesis names no
 * federation, every other record names one.
 */
function envelopeFields(v: Obj, required: readonly string[]): Check {
  const f = fields(v, '', required)
  if (f?.code === 'schema-unknown-field' && f.path === 'federation') {
    return reject(
      'federation-present',
      'a genesis names no federation: its CID is the federation id',
      'federation',
    )
  }
  if (f?.code === 'schema-missing-field' && f.path === 'federation') {
    return reject('federation-missing', 'every record but the genesis names its federation', 'federation')
  }
  return f
}

function signature(v: unknown): Check {
  if (!(v instanceof Uint8Array)) return reject('schema-type', 'expected a byte string', 'sig')
  return v.length === 64 ? undefined : reject('sig-length', 'a signature is 64 bytes', 'sig')
}

/**
 * The envelope of a record of a later version: exactly v, kind, federation, author, at, body and
 * sig, whatever its kind; the body must be a map and is not read, since its schema is the later
 * version's. Its signature is checked like any other (record.ts).
 */
export function futureEnvelopeSchema(v: Obj): Check {
  if (!('kind' in v)) return reject('schema-missing-field', 'missing field "kind"', 'kind')
  if (typeof v.kind !== 'string') return reject('schema-type', 'expected a text string', 'kind')
  if (!FUTURE_KIND.test(v.kind)) {
    return reject('schema-format', `not a record kind: ${JSON.stringify(v.kind.slice(0, 40))}`, 'kind')
  }
  const f = envelopeFields(v, ['v', 'kind', 'federation', 'author', 'at', 'body', 'sig'])
  if (f) return f
  const author = parseDid(v.author, 'author')
  if (!author.ok) return author
  return first(
    () => recordCid(v.federation, 'federation'),
    () => int(v.at, 'at', 0),
    () => signature(v.sig),
    () => (isPlainMap(v.body) ? undefined : reject('schema-type', 'expected a map', 'body')),
  )
}

/** Validates the envelope and body of a decoded record (signature not checked here). */
export function recordSchema(v: unknown): Check {
  if (!isPlainMap(v)) return reject('schema-type', 'a record is a map', '')
  if (!('v' in v)) return reject('schema-missing-field', 'missing field "v"', 'v')
  if (isFutureVersion(v.v)) return futureEnvelopeSchema(v)
  if (v.v !== RECORD_VERSION) return reject('schema-version', 'a record version is an integer ≥ 1', 'v')
  if (!('kind' in v)) return reject('schema-missing-field', 'missing field "kind"', 'kind')
  if (typeof v.kind !== 'string' || !(KINDS as readonly string[]).includes(v.kind)) {
    return reject(
      'schema-unknown-kind',
      `unknown record kind ${JSON.stringify(v.kind)?.slice(0, 40)}`,
      'kind',
    )
  }
  const isGenesis = v.kind === 'genesis'
  const f = isGenesis
    ? envelopeFields(v, ['v', 'kind', 'author', 'at', 'body', 'sig', 'cosigs'])
    : envelopeFields(v, ['v', 'kind', 'federation', 'author', 'at', 'body', 'sig'])
  if (f) return f
  const author = parseDid(v.author, 'author')
  if (!author.ok) return author
  return first(
    () => (isGenesis ? undefined : recordCid(v.federation, 'federation')),
    () => int(v.at, 'at', 0),
    () => signature(v.sig),
    () => (isGenesis ? cosigs(v.cosigs, 'cosigs') : undefined),
    () => BODY[v.kind as string]!(v.body, 'body'),
  )
}
