/**
 * Records of a later version (SPEC.md §5.1, Versions; docs/adr/0023): decoded as future records
 * after a strict envelope check and the signature, refused for every envelope fault; the future
 * section of fixtures/vectors/records.json checked from the JSON alone; the rules' `minVersion`.
 */
import { createPublicKey, verify as nodeVerify } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js'
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { VECTORS_PATH, type Vectors } from '../../../fixtures/generate/index.js'
import { fastEd25519 } from '../../../node/ed25519-native.js'
import { encode } from '../../../protocol/cbor.js'
import { cidOfBlock } from '../../../protocol/cid.js'
import { parseDid } from '../../../protocol/did.js'
import { wellFormedProblem } from '../../../protocol/govstate.js'
import { decodeOwnRecord, decodeRecord, isFutureRecord } from '../../../protocol/record.js'
import { rulesSchema } from '../../../protocol/schema.js'
import { RECORD_DOMAIN } from '../../../protocol/signing.js'
import { futureRecordFields, signFutureRecord } from '../../support/future-records.js'
import { DEFAULT_RULES, rulesWith, Simulator } from '../../support/simulator.js'

const sim = new Simulator({
  members: [
    { name: 'alice', roles: ['steward', 'voter'], weight: 1 },
    { name: 'bob', roles: ['steward', 'voter'], weight: 1 },
    { name: 'carol', roles: ['steward', 'voter'], weight: 1 },
  ],
  name: 'future records',
})
const other = new Simulator({
  members: [{ name: 'alice', roles: ['steward', 'voter'], weight: 1 }],
  name: 'other',
})
const federation = sim.federation
const DELEGATION = { kind: 'delegation', body: { delegate: sim.did('bob'), scope: 'all-decisions' } }

/** A signed delegation with `changes` (undefined removes a field), signed again by alice unless `resign` is false. */
function futureBytes(changes: Record<string, unknown>, resign = true): Uint8Array {
  const edited: Record<string, unknown> = { ...futureRecordFields(sim, 'alice', 10, DELEGATION) }
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) delete edited[k]
    else edited[k] = v
  }
  if (!resign) return encode(edited)
  const { sig: _sig, ...unsigned } = edited
  return encode(sim.forge(unsigned, 'alice'))
}

function codeOf(bytes: Uint8Array, fed: CID = federation): string {
  const r = decodeRecord(bytes, { federation: fed })
  return r.ok ? 'ok' : r.code
}

describe('a future record', () => {
  it('decodes as a future record: envelope kept, kind set aside, body unread', () => {
    const bytes = encode(futureRecordFields(sim, 'alice', 10, DELEGATION))
    for (const ed25519 of [undefined, fastEd25519]) {
      const r = decodeRecord(bytes, { federation, ...(ed25519 ? { ed25519 } : {}) })
      if (!r.ok) throw new Error(`${r.code}: ${r.message}`)
      const v = r.value
      expect(isFutureRecord(v)).toBe(true)
      if (!isFutureRecord(v)) return
      expect(v.record.kind).toBe('future')
      expect(v.futureKind).toBe('delegation')
      expect(v.record.v).toBe(2)
      expect(v.record.author).toBe(sim.did('alice'))
      expect(v.record.federation.equals(federation)).toBe(true)
      expect(v.cid.equals(cidOfBlock(bytes))).toBe(true)
      expect(v.bytes).toEqual(bytes)
      expect(Object.isFrozen(v)).toBe(true)
    }
  })

  it('of a kind this version knows is still a future record, never read as that kind', () => {
    const vote = futureRecordFields(sim, 'alice', 10, { kind: 'vote', body: { proposal: 'not a CID' } })
    const r = decodeRecord(encode(vote), { federation })
    expect(r.ok && isFutureRecord(r.value) && r.value.futureKind).toBe('vote')
  })

  it('is read back from the node log as the same future record', () => {
    const made = signFutureRecord(sim, 'alice', 10, DELEGATION)
    const replayed = decodeOwnRecord(made.bytes)
    expect(replayed && isFutureRecord(replayed)).toBe(true)
    expect(replayed?.key).toBe(made.key)
    expect(replayed?.record).toEqual(made.record)
  })

  it('with a tampered body, version or signature is sig-invalid', () => {
    expect(codeOf(futureBytes({ body: { delegate: sim.did('carol') } }, false))).toBe('sig-invalid')
    expect(codeOf(futureBytes({ v: 3 }, false))).toBe('sig-invalid')
    const sig = Uint8Array.from(futureRecordFields(sim, 'alice', 10, DELEGATION).sig as Uint8Array)
    sig[5]! ^= 1
    expect(codeOf(futureBytes({ sig }, false))).toBe('sig-invalid')
    expect(codeOf(futureBytes({ author: sim.did('bob') }, false))).toBe('sig-invalid')
  })

  it('is refused for every fault of its envelope', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ kind: undefined }, 'schema-missing-field'],
      [{ kind: 7 }, 'schema-type'],
      [{ kind: 'Delegation' }, 'schema-format'],
      [{ kind: 'model.upload' }, 'schema-format'],
      [{ kind: `k${'x'.repeat(64)}` }, 'schema-format'],
      [{ federation: undefined }, 'federation-missing'],
      [{ federation: other.federation }, 'federation-mismatch'],
      [{ cosigs: [] }, 'schema-unknown-field'],
      [{ extra: 1 }, 'schema-unknown-field'],
      [{ body: undefined }, 'schema-missing-field'],
      [{ body: ['delegate'] }, 'schema-type'],
      [{ body: federation }, 'schema-type'],
      [{ at: -1 }, 'schema-range'],
      [{ author: 'did:web:example.org' }, 'did-prefix'],
      [{ sig: new Uint8Array(63) }, 'sig-length'],
    ]
    for (const [changes, code] of cases) {
      const resign = !('sig' in changes)
      expect(codeOf(futureBytes(changes, resign)), JSON.stringify(Object.keys(changes))).toBe(code)
    }
  })

  it('is held to the size of a non-genesis record, whatever kind it names', () => {
    const body = Object.fromEntries([1, 2, 3, 4, 5].map((i) => [`part${i}`, 'x'.repeat(16_000)]))
    expect(codeOf(futureBytes({ body }))).toBe('record-too-large')
    expect(codeOf(futureBytes({ body, kind: 'genesis' }))).toBe('record-too-large')
    // Just under the limit: accepted.
    const fits = { part1: 'x'.repeat(16_000), part2: 'x'.repeat(16_000), part3: 'x'.repeat(16_000) }
    expect(codeOf(futureBytes({ body: fits }))).toBe('ok')
  })

  it('is refused when its version is text, zero, negative, or not there', () => {
    expect(codeOf(futureBytes({ v: '2' }))).toBe('schema-version')
    expect(codeOf(futureBytes({ v: 0 }))).toBe('schema-version')
    expect(codeOf(futureBytes({ v: -2 }))).toBe('schema-version')
    expect(codeOf(futureBytes({ v: undefined }))).toBe('schema-missing-field')
    // Version 1 knows its kinds: a new kind comes with a new version.
    expect(codeOf(futureBytes({ v: 1 }))).toBe('schema-unknown-kind')
  })
})

describe('the future vectors in records.json', () => {
  const vectors = JSON.parse(readFileSync(VECTORS_PATH, 'utf8')) as Vectors
  const vectorFederation = CID.parse(vectors.federation)
  const spki = (did: string) => {
    const key = parseDid(did)
    if (!key.ok) throw new Error(key.code)
    return createPublicKey({
      key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), key.value]),
      format: 'der',
      type: 'spki',
    })
  }

  it('has future records, among them the bytes that were schema-version-2', () => {
    expect(vectors.future.length).toBeGreaterThanOrEqual(5)
    expect(vectors.future.map((x) => x.name)).toContain('future-vote-version-2')
    expect(vectors.invalid.map((x) => x.name)).not.toContain('schema-version-2')
  })

  it.each(vectors.future.map((x) => [x.name, x] as const))('%s decodes as a future record', (_name, x) => {
    const bytes = hexToBytes(x.bytes)
    const r = decodeRecord(bytes, { federation: vectorFederation })
    if (!r.ok) throw new Error(`${r.code}: ${r.message}`)
    expect(isFutureRecord(r.value)).toBe(true)
    expect(r.value.cid.toString()).toBe(x.cid)
    expect(x.v).toBeGreaterThanOrEqual(2)
    // The signing bytes: the version 1 domain, then the record without its signature.
    const decoded = r.value.record
    expect(x.signingBytes.startsWith(bytesToHex(RECORD_DOMAIN))).toBe(true)
    expect(nodeVerify(null, hexToBytes(x.signingBytes), spki(x.author), hexToBytes(x.sig))).toBe(true)
    expect(bytesToHex(decoded.sig)).toBe(x.sig)
  })
})

describe('rules with minVersion', () => {
  const check = (rules: unknown) => rulesSchema(rules, 'rules')?.code ?? 'ok'

  it('take an integer from 1 to 2^32, or none', () => {
    expect(check(DEFAULT_RULES)).toBe('ok')
    expect(check({ ...DEFAULT_RULES, minVersion: 1 })).toBe('ok')
    expect(check({ ...DEFAULT_RULES, minVersion: 2 ** 32 })).toBe('ok')
    expect(check({ ...DEFAULT_RULES, minVersion: 0 })).toBe('schema-range')
    expect(check({ ...DEFAULT_RULES, minVersion: 2 ** 32 + 1 })).toBe('schema-range')
    expect(check({ ...DEFAULT_RULES, minVersion: '2' })).toBe('schema-type')
    expect(rulesSchema({ ...DEFAULT_RULES, minVersion: 0 }, 'rules')?.path).toBe('rules.minVersion')
  })

  it('are well-formed only with minVersion ≥ 1', () => {
    const members = sim.genesis.record.body.members
    expect(wellFormedProblem(members, rulesWith({ minVersion: 2 }))).toBeUndefined()
    expect(wellFormedProblem(members, rulesWith({ minVersion: 0 }))).toMatch(/minVersion/)
  })

  it('can be proposed in a change-rules proposal of version 1', () => {
    const p = sim.proposal('alice', 10, {
      closesAt: 2000,
      action: { type: 'change-rules', rules: rulesWith({ minVersion: 2 }) },
    })
    const r = decodeRecord(p.bytes, { federation })
    expect(r.ok).toBe(true)
  })
})
