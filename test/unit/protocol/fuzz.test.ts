/**
 * Property: `decodeRecord` never throws on mutated bytes of valid records,
 * and what it accepts is exactly canonical and correctly signed. Every
 * rejection carries a stable code from protocol/codes.ts.
 *
 * Valid records of every kind are built from fixed seeds; fast-check then
 * applies 10,000 mutations in total (bit flips, byte overwrites, truncations,
 * deletions, splices of two records, insertions). Verification uses
 * `fastEd25519` (node:crypto with the ZIP-215 fallback) so the run stays fast;
 * a mutated signature makes the fallback run noble, so both paths are hit.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import fc from 'fast-check'
import type { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fastEd25519, nativeSigner } from '../../../node/ed25519-native.js'
import { equalBytes, utf8 } from '../../../protocol/bytes.js'
import { encode } from '../../../protocol/cbor.js'
import { cidOfBlock, rawCidOfDigest } from '../../../protocol/cid.js'
import { type BlockSource, buildList } from '../../../protocol/cidlist.js'
import { CODES, type RejectionCode } from '../../../protocol/codes.js'
import { parseDid } from '../../../protocol/did.js'
import { zip215 } from '../../../protocol/ed25519.js'
import { type AnyVerified, cosignGenesis, decodeRecord, signRecord } from '../../../protocol/record.js'
import { createSigner, federationIdOf, type Signer, signingBytes } from '../../../protocol/signing.js'
import type { Member, Role, Rules, SignedRecord, UnsignedRecord } from '../../../protocol/types.js'
import { rulesWith } from '../../support/simulator.js'

// ---------------------------------------------------------------- a small federation

const BASE = 1_767_225_600_000 // 2026-01-01T00:00:00Z

const signer = (name: string): Signer =>
  createSigner(sha256(utf8.encode(`allmende-fuzz:${name}`)), nativeSigner)

const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map(signer) as [Signer, Signer, Signer, Signer, Signer]

const rules: Rules = rulesWith({
  actions: {
    'ratify-model': {
      quorum: [1, 2],
      threshold: [2, 3],
      requiredAttestations: [{ kind: 'eval', min: 1 }],
    },
    '*': { quorum: [1, 2], threshold: [1, 2], requiredAttestations: [] },
  },
})

const member = (s: Signer, roles: Role[], weight = 1): Member => ({ id: s.did, roles, weight })
const members: Member[] = [
  member(a, ['publisher', 'steward', 'voter']),
  member(b, ['auditor', 'steward', 'voter'], 2),
  member(c, ['steward', 'voter']),
  member(d, ['voter'], 3),
].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0))

const unsignedGenesis: UnsignedRecord<'genesis'> = {
  v: 1,
  kind: 'genesis',
  author: a.did,
  at: BASE,
  body: { name: 'fuzz federation', members, rules, nonce: utf8.encode('fuzz-nonce-0001') },
}
const cosigs = [b, c]
  .map((s) => cosignGenesis(unsignedGenesis, s))
  .sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0))
const genesis = signRecord<'genesis'>(
  { kind: 'genesis', at: unsignedGenesis.at, body: unsignedGenesis.body },
  a,
  { cosigs },
)
const federation = federationIdOf(genesis.record)

const weightsDigest = sha256(utf8.encode('weights'))
const manifest = signRecord<'manifest'>(
  {
    kind: 'manifest',
    federation,
    at: BASE + 10,
    body: {
      name: 'example/tiny-model',
      version: '1.0.0-rc.1+build.5',
      weights: rawCidOfDigest(weightsDigest),
      cidProfile: 'unixfs-v1-2025',
      files: [
        { path: 'config.json', size: 12, sha256: sha256(utf8.encode('config')) },
        { path: 'model.safetensors', size: 1000, sha256: weightsDigest },
      ],
      size: 1012,
      format: 'safetensors',
      parameters: 1_000_000,
      license: 'Apache-2.0 OR MIT',
      languages: ['de', 'en-GB'],
      description: 'A model for fuzzing — with non-ASCII text: Grüße.',
    },
  },
  a,
)

const attestation = signRecord<'attestation'>(
  {
    kind: 'attestation',
    federation,
    at: BASE + 20,
    body: {
      subject: manifest.cid,
      kind: 'eval',
      result: 'pass',
      report: cidOfBlock(encode('report')),
      metrics: { accuracy: 93, 'f1.macro': 88, regressions: -2 },
    },
  },
  b,
)

const ratify = signRecord<'proposal'>(
  {
    kind: 'proposal',
    federation,
    at: BASE + 30,
    body: {
      action: { type: 'ratify-model', manifest: manifest.cid },
      basis: genesis.cid,
      closesAt: BASE + 2000,
      title: 'Ratify tiny-model 1.0.0',
      description: 'Evaluated by b.',
    },
  },
  c,
)

const changeRules = signRecord<'proposal'>(
  {
    kind: 'proposal',
    federation,
    at: BASE + 40,
    body: {
      action: { type: 'change-rules', rules: { ...rules, votingPeriodMs: 2000 } },
      basis: genesis.cid,
      closesAt: BASE + 5000,
      title: 'Longer votes',
    },
  },
  d,
)

const admit = signRecord<'proposal'>(
  {
    kind: 'proposal',
    federation,
    at: BASE + 50,
    body: {
      action: { type: 'admit-member', member: member(e, ['auditor', 'voter'], 5) },
      basis: genesis.cid,
      closesAt: BASE + 5000,
      title: 'Admit e',
    },
  },
  a,
)

const replaceKey = signRecord<'proposal'>(
  {
    kind: 'proposal',
    federation,
    at: BASE + 60,
    body: {
      action: { type: 'replace-key', id: d.did, newId: e.did },
      basis: genesis.cid,
      closesAt: BASE + 5000,
      title: 'Rotate d',
    },
  },
  d,
)

const votes = [
  signRecord<'vote'>(
    { kind: 'vote', federation, at: BASE + 100, body: { proposal: ratify.cid, choice: 'yes' } },
    d,
  ),
  signRecord<'vote'>(
    {
      kind: 'vote',
      federation,
      at: BASE + 110,
      body: { proposal: ratify.cid, choice: 'abstain', reason: 'conflict of interest' },
    },
    b,
  ),
]

const voteList = buildList(votes.map((v) => v.cid))
const attestationList = buildList([attestation.cid])
const seal = signRecord<'seal'>(
  {
    kind: 'seal',
    federation,
    at: BASE + 2100,
    body: {
      proposal: ratify.cid,
      votes: { root: voteList.root, count: voteList.count },
      attestations: { root: attestationList.root, count: attestationList.count },
      tally: { yes: 3, no: 0, abstain: 2 },
      outcome: 'passed',
      weightsVerified: true,
    },
  },
  a,
)

const finalized = buildList([[ratify.cid, 'passed']])
const checkpoint = signRecord<'checkpoint'>(
  {
    kind: 'checkpoint',
    federation,
    at: BASE + 3_600_000,
    body: {
      head: genesis.cid,
      height: 0,
      epoch: BASE + 3_000_000,
      stateRoot: cidOfBlock(encode({ state: 'root' })),
      finalized: { root: finalized.root, count: finalized.count },
    },
  },
  b,
)

const RECORDS = [
  genesis,
  manifest,
  attestation,
  ratify,
  changeRules,
  admit,
  replaceKey,
  ...votes,
  seal,
  checkpoint,
]
const BYTES = RECORDS.map((r) => r.bytes)

const blockMap = new Map(
  [...voteList.blocks, ...attestationList.blocks, ...finalized.blocks].map((x) => [
    x.cid.toString(),
    x.bytes,
  ]),
)
const blocks: BlockSource = (cid: CID) => blockMap.get(cid.toString())

// ---------------------------------------------------------------- the property

const codes: ReadonlySet<string> = new Set(CODES)
const seen = new Map<string, number>()
let accepted = 0

function signatureVerifies(v: AnyVerified): boolean {
  const record = v.record as SignedRecord
  const message = signingBytes(record)
  const key = parseDid(record.author)
  if (!key.ok || !zip215.verify(record.sig, message, key.value)) return false
  for (const cs of record.cosigs ?? []) {
    const k = parseDid(cs.id)
    if (!k.ok || !zip215.verify(cs.sig, message, k.value)) return false
  }
  return true
}

/** The property itself: never throws; ok ⇒ canonical and signed; otherwise a known code. */
function check(bytes: Uint8Array): void {
  const r = decodeRecord(bytes, { federation, ed25519: fastEd25519, blocks })
  if (r.ok) {
    accepted++
    expect(equalBytes(encode(r.value.record), bytes)).toBe(true)
    expect(equalBytes(r.value.bytes, bytes)).toBe(true)
    expect(r.value.cid.equals(cidOfBlock(bytes))).toBe(true)
    expect(signatureVerifies(r.value)).toBe(true)
  } else {
    expect(codes.has(r.code), `unknown code ${r.code}`).toBe(true)
    seen.set(r.code, (seen.get(r.code) ?? 0) + 1)
  }
}

const record = fc.nat(BYTES.length - 1).map((i) => BYTES[i]!)
/** Bytes that mean something to a CBOR head, mixed with arbitrary ones. */
const byte = fc.oneof(
  fc.integer({ min: 0, max: 255 }),
  fc.constantFrom(0x00, 0x17, 0x18, 0x19, 0x1b, 0x20, 0x40, 0x58, 0x60, 0x78, 0x80, 0x9f, 0xa0, 0xbf),
  fc.constantFrom(0xc1, 0xd8, 0x2a, 0xf4, 0xf5, 0xf6, 0xf7, 0xf9, 0xfb, 0xff),
)
const someBytes = fc.array(byte, { minLength: 1, maxLength: 16 }).map((xs) => Uint8Array.from(xs))

const mutations = {
  'bit flips': {
    runs: 2500,
    arb: fc.tuple(record, fc.array(fc.tuple(fc.nat(), fc.nat(7)), { minLength: 1, maxLength: 4 })),
    apply: ([src, flips]: [Uint8Array, [number, number][]]) => {
      const out = Uint8Array.from(src)
      for (const [pos, bit] of flips) out[pos % out.length]! ^= 1 << bit
      return out
    },
  },
  'byte overwrites': {
    runs: 2000,
    arb: fc.tuple(record, fc.nat(), someBytes),
    apply: ([src, pos, patch]: [Uint8Array, number, Uint8Array]) => {
      const out = Uint8Array.from(src)
      const at = pos % out.length
      out.set(patch.subarray(0, out.length - at), at)
      return out
    },
  },
  truncations: {
    runs: 1000,
    arb: fc.tuple(record, fc.nat()),
    apply: ([src, n]: [Uint8Array, number]) => src.slice(0, n % src.length),
  },
  deletions: {
    runs: 1000,
    arb: fc.tuple(record, fc.nat(), fc.integer({ min: 1, max: 64 })),
    apply: ([src, pos, n]: [Uint8Array, number, number]) => {
      const at = pos % src.length
      return Uint8Array.from([...src.subarray(0, at), ...src.subarray(at + n)])
    },
  },
  'splices of two records': {
    runs: 2000,
    arb: fc.tuple(record, record, fc.nat(), fc.nat()),
    apply: ([x, y, p, q]: [Uint8Array, Uint8Array, number, number]) =>
      Uint8Array.from([...x.subarray(0, p % (x.length + 1)), ...y.subarray(q % (y.length + 1))]),
  },
  insertions: {
    runs: 1500,
    arb: fc.tuple(record, fc.nat(), someBytes),
    apply: ([src, pos, extra]: [Uint8Array, number, Uint8Array]) => {
      const at = pos % (src.length + 1)
      return Uint8Array.from([...src.subarray(0, at), ...extra, ...src.subarray(at)])
    },
  },
} as const

const TOTAL_RUNS = Object.values(mutations).reduce((n, m) => n + m.runs, 0)

describe('decodeRecord under mutation', () => {
  beforeAll(() => {
    seen.clear()
    accepted = 0
  })

  it('every original record decodes and verifies, with either backend', () => {
    expect(new Set(RECORDS.map((r) => r.record.kind))).toEqual(
      new Set(['genesis', 'manifest', 'attestation', 'proposal', 'vote', 'seal', 'checkpoint']),
    )
    for (const bytes of BYTES) {
      for (const ed25519 of [zip215, fastEd25519]) {
        const r = decodeRecord(bytes, { federation, ed25519, blocks })
        expect(r.ok, r.ok ? '' : `${r.code}: ${r.message} at ${r.path}`).toBe(true)
      }
    }
    const s = decodeRecord(seal.bytes, { federation, blocks })
    expect(s.ok && s.value.lists?.votes.length).toBe(2)
  })

  it('has at least 10,000 mutations in total', () => {
    expect(TOTAL_RUNS).toBeGreaterThanOrEqual(10_000)
  })

  for (const [name, m] of Object.entries(mutations)) {
    it(`${name}: never throws, accepts only canonical signed bytes, names known codes`, () => {
      const apply = m.apply as (x: unknown) => Uint8Array
      fc.assert(
        fc.property(m.arb as fc.Arbitrary<unknown>, (input) => check(apply(input))),
        { numRuns: m.runs },
      )
    })
  }

  afterAll(() => {
    // Not a test of its own (vitest runs hooks after the last test); a summary for whoever reads the log.
    const top = [...seen.entries()].sort((x, y) => y[1] - x[1])
    console.info(
      `fuzz: ${TOTAL_RUNS} mutations, ${accepted} accepted, rejections by code:`,
      Object.fromEntries(top),
    )
  })

  it('the mutations reached every layer: bytes, schema and signatures', () => {
    const hit = (prefix: string) => [...seen.keys()].some((k) => k.startsWith(prefix))
    expect(hit('cbor-')).toBe(true)
    expect(hit('schema-')).toBe(true)
    expect(seen.get('sig-invalid' satisfies RejectionCode) ?? 0).toBeGreaterThan(0)
  })
})
