/**
 * Certificates (SPEC.md §12): a CAR file that proves, from the
 * federation id alone, that a name@version is ratified under a checkpoint
 * signed by the seal threshold of stewards.
 *
 * The fixture (test/support/federation.ts) ratifies llama@1.0.0 four governance
 * decisions after the genesis — two admissions, the replacement of steward
 * s3's key by s3b, a rule change — and checkpoints the result, signed by s1
 * and s3b (t = 2). Each test below damages the certificate in one way (by
 * rewriting its CAR) and checks that verification names the problem.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sha256 } from '@noble/hashes/sha2.js'
import { beforeAll, describe, expect, it } from 'vitest'
import { fastEd25519 } from '../../../node/ed25519-native.js'
import {
  type Block,
  buildCertificate,
  type CertificateVerdict,
  CID,
  cidOfBlock,
  compareCids,
  decodeStrict,
  encode,
  MAX_CERTIFICATE_BYTES,
  MAX_CLOCK_SKEW_MS,
  rawCidOfDigest,
  signRecord,
  type TrustMark,
  utf8,
  type VerifyCertificateOptions,
  verifyCertificate,
} from '../../../protocol/index.js'
import { fromSignedRecord } from '../../../protocol/record.js'
import {
  blockOf,
  buildFixture,
  decide,
  type Fixture,
  forgeCertificate,
  HOUR,
  hasBlock,
  MEMBERS,
  MODEL,
  readCar,
  rewriteCar,
  simulator,
  writeCar,
} from '../../support/federation.js'
import { DEFAULT_RULES } from '../../support/simulator.js'

const SEAL_DEADLINE = DEFAULT_RULES.sealDeadlineMs

/** The height and epoch of a kept mark (a TrustedHead also carries its head and state). */
function markOf(trusted: TrustMark | undefined): TrustMark | undefined {
  return trusted && { height: trusted.height, epoch: trusted.epoch }
}

function codes(v: CertificateVerdict): string[] {
  return v.problems.map((p) => p.code)
}

function expectRefused(v: CertificateVerdict, ...expected: string[]): void {
  expect(v.ok).toBe(false)
  for (const code of expected) expect(codes(v)).toContain(code)
}

function flipBit(bytes: Uint8Array, index: number): Uint8Array {
  const out = Uint8Array.from(bytes)
  out[index]! ^= 0x01
  return out
}

/** The header block (the CAR's root), decoded. */
function headerOf(car: Uint8Array): { cid: CID; value: Record<string, unknown> } {
  const { roots, blocks } = readCar(car)
  const root = roots[0]!
  const bytes = blocks.find((b) => b.cid.equals(root))!.bytes
  const d = decodeStrict(bytes)
  if (!d.ok) throw new Error('unreadable header')
  return { cid: root, value: d.value as Record<string, unknown> }
}

/** The same certificate with header fields replaced, the header block first as canonical files have it. */
function withHeader(car: Uint8Array, fields: Record<string, unknown>): Uint8Array {
  const h = headerOf(car)
  const bytes = encode({ ...h.value, ...fields })
  const header = { cid: cidOfBlock(bytes), bytes }
  const { blocks } = readCar(car)
  return writeCar([header.cid], [header, ...blocks.filter((b) => !b.cid.equals(h.cid))])
}

/** The same certificate with a header claiming `model`. */
function withHeaderModel(car: Uint8Array, model: string): Uint8Array {
  return withHeader(car, { model })
}

let fx: Fixture
const verify = (car: Uint8Array, extra: Partial<VerifyCertificateOptions> = {}, federation?: CID) =>
  verifyCertificate(federation ?? fx.sim.federation, car, { now: fx.now, ed25519: fastEd25519, ...extra })

beforeAll(() => {
  fx = buildFixture()
})

describe('a valid certificate', () => {
  it('verifies offline from the federation id alone', () => {
    const v = verifyCertificate(fx.sim.federation, fx.car, { now: fx.now })
    expect(v.problems).toEqual([])
    expect(v.ok).toBe(true)
    expect(v.status).toBe('ratified')
    expect(v.model).toBe(MODEL)
    expect(v.manifest?.equals(fx.llama.manifest.cid)).toBe(true)
    expect(v.proposal?.equals(fx.llama.proposal.cid)).toBe(true)
    expect(v.manifestRecord?.cid.equals(fx.llama.manifest.cid)).toBe(true)
    const cp = fx.sim.fold.state().checkpoint!
    expect(cp.height).toBe(4)
    expect(cp.signers).toEqual([fx.sim.did('s1'), fx.sim.did('s3b')].sort())
    expect(v.checkpoint?.cid.equals(cp.cid)).toBe(true)
    expect(v.checkpoint?.age).toBe(fx.now - (fx.sim.base + fx.epoch + SEAL_DEADLINE))
    // The mark moves with the checkpoint's head and head state (a TrustedHead).
    expect(markOf(v.trusted)).toEqual({ height: cp.height, epoch: fx.sim.base + fx.epoch })
    expect(v.trusted && 'head' in v.trusted && v.trusted.head.equals(cp.head)).toBe(true)
  })

  it('carries the whole governance chain, sealed by the replaced steward’s new key after the replacement', () => {
    for (const d of fx.chain) {
      expect(hasBlock(fx.car, d.proposal.cid)).toBe(true)
      for (const s of d.seals) expect(hasBlock(fx.car, s.cid)).toBe(true)
    }
    const [, , replace, rules] = fx.chain
    expect(replace!.seals.map((s) => s.record.author)).toContain(fx.sim.did('s3'))
    expect(rules!.seals.map((s) => s.record.author)).toContain(fx.sim.did('s3b'))
    expect(fx.sim.fold.state().members.map((m) => m.id)).not.toContain(fx.sim.did('s3'))
  })

  it('verifies the same bytes in a fresh process, given only the bytes and the id as text', () => {
    const dir = mkdtempSync(join(tmpdir(), 'allmende-cert-'))
    try {
      const file = join(dir, 'llama.car')
      writeFileSync(file, fx.car)
      const script = fileURLToPath(new URL('../../support/verify-offline.ts', import.meta.url))
      const out = execFileSync(
        process.execPath,
        ['--import', 'tsx', script, file, fx.sim.federation.toString(), String(fx.now)],
        { encoding: 'utf8', cwd: fileURLToPath(new URL('../../..', import.meta.url)) },
      )
      const v = JSON.parse(out) as Record<string, unknown>
      expect(v).toEqual({
        ok: true,
        status: 'ratified',
        model: MODEL,
        manifest: fx.llama.manifest.cid.toString(),
        proposal: fx.llama.proposal.cid.toString(),
        trusted: expect.objectContaining({ height: 4, epoch: fx.sim.base + fx.epoch }),
        problems: [],
      })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('verifies from copies of the bytes and a re-parsed id (nothing shared with the fold)', () => {
    const bytes = Uint8Array.from(Buffer.from(Buffer.from(fx.car).toString('base64'), 'base64'))
    const id = CID.parse(fx.sim.federation.toString())
    const v = verifyCertificate(id, bytes, { now: fx.now })
    expect(v.ok).toBe(true)
    expect(v.status).toBe('ratified')
  })

  it('holds its blocks in the canonical order only: reversed → cert-not-canonical', () => {
    // Until certificates were canonical (docs/adr/0020), any order verified.
    const { roots, blocks } = readCar(fx.car)
    expect(writeCar(roots, blocks)).toEqual(fx.car)
    const v = verify(writeCar(roots, [...blocks].reverse()))
    expectRefused(v, 'cert-not-canonical')
    expect(new Set(codes(v))).toEqual(new Set(['cert-not-canonical']))
    expect(v.status).toBe('ratified')
  })
})

describe('missing and swapped blocks', () => {
  it('a vote of the ratification removed → cert-block-missing', () => {
    const v = verify(rewriteCar(fx.car, { remove: [fx.llama.votes[0]!.cid] }))
    expectRefused(v, 'cert-block-missing')
  })

  it('a vote of a chain decision removed from a full certificate → cert-block-missing', () => {
    // A compact certificate (the default) holds no votes of chain decisions at all.
    const full = buildCertificate(fx.sim.fold, MODEL, { mode: 'full' })
    expect(hasBlock(fx.car, fx.chain[0]!.votes[0]!.cid)).toBe(false)
    const v = verify(rewriteCar(full, { remove: [fx.chain[0]!.votes[0]!.cid] }))
    expectRefused(v, 'cert-block-missing')
  })

  it('a seal’s vote list block removed → cert-block-missing', () => {
    const list = fx.llama.seals[0]!.record.body.votes.root
    expect(hasBlock(fx.car, list)).toBe(true)
    const v = verify(rewriteCar(fx.car, { remove: [list] }))
    expectRefused(v, 'cert-block-missing')
  })

  it('the checkpoint’s finalized list block removed → cert-block-missing', () => {
    const list = fx.checkpoints[0]!.record.body.finalized.root
    const v = verify(rewriteCar(fx.car, { remove: [list] }))
    expectRefused(v, 'cert-block-missing', 'cert-checkpoint-unsigned')
  })

  it('a chain proposal removed → cert-block-missing', () => {
    const v = verify(rewriteCar(fx.car, { remove: [fx.chain[1]!.proposal.cid] }))
    expectRefused(v, 'cert-block-missing')
  })

  it('the manifest removed → cert-block-missing', () => {
    const v = verify(rewriteCar(fx.car, { remove: [fx.llama.manifest.cid] }))
    expectRefused(v, 'cert-block-missing')
  })

  it('another vote’s bytes under a vote’s CID → cert-block-invalid', () => {
    const [a, b] = fx.llama.votes
    const v = verify(rewriteCar(fx.car, { replace: [[a!.cid, b!.bytes]] }))
    expectRefused(v, 'cert-block-invalid')
  })

  it('a vote replaced by a different vote under its own CID → cert-block-missing, cert-ratification-unproven', () => {
    const original = fx.llama.votes[0]!
    const other = fx.sim.vote(fx.sim.nameOf(original.record.author)!, original.record.at - fx.sim.base + 1, {
      proposal: fx.llama.proposal.cid,
      choice: 'yes',
    })
    expect(other.cid.equals(original.cid)).toBe(false)
    const v = verify(rewriteCar(fx.car, { remove: [original.cid], add: [blockOf(other)] }))
    expectRefused(v, 'cert-block-missing', 'cert-ratification-unproven')
  })
})

describe('forged seals', () => {
  it('a seal with a flipped signature bit → cert-record-invalid (and the ratification is unproven)', () => {
    const seal = fx.llama.seals[0]!
    const forged = fromSignedRecord({ ...seal.record, sig: flipBit(seal.record.sig, 5) })
    const v = verify(rewriteCar(fx.car, { remove: [seal.cid], add: [blockOf(forged)] }))
    expectRefused(v, 'cert-record-invalid', 'cert-ratification-unproven')
  })

  it('a seal re-signed by a non-steward → cert-ratification-unproven', () => {
    const seal = fx.llama.seals[0]!
    const { kind, federation, at, body } = seal.record
    const forged = signRecord({ kind, federation: federation!, at, body }, fx.sim.signer('v1'))
    const v = verify(rewriteCar(fx.car, { remove: [seal.cid], add: [blockOf(forged)] }))
    expectRefused(v, 'cert-ratification-unproven')
  })

  it('a seal re-signed by the replaced key of a steward → cert-ratification-unproven', () => {
    const seal = fx.llama.seals.find((s) => s.record.author === fx.sim.did('s3b'))!
    const { kind, federation, at, body } = seal.record
    const forged = signRecord({ kind, federation: federation!, at, body }, fx.sim.signer('s3'))
    const v = verify(rewriteCar(fx.car, { remove: [seal.cid], add: [blockOf(forged)] }))
    expectRefused(v, 'cert-ratification-unproven')
  })
})

describe('checkpoint signatures', () => {
  it('fewer than sealThreshold signers → cert-checkpoint-unsigned', () => {
    const v = verify(rewriteCar(fx.car, { remove: [fx.checkpoints[1]!.cid] }))
    expectRefused(v, 'cert-checkpoint-unsigned')
    expect(v.status).toBe('unknown')
  })

  it('co-signed by a replaced (old) key so only t − 1 valid signers remain → cert-checkpoint-signer', () => {
    const byNewKey = fx.checkpoints.find((c) => c.record.author === fx.sim.did('s3b'))!
    const byOldKey = fx.sim.checkpoint('s3', fx.signedAt + 5, fx.epoch)
    expect(encode(byOldKey.record.body)).toEqual(encode(byNewKey.record.body))
    const v = verify(rewriteCar(fx.car, { remove: [byNewKey.cid], add: [blockOf(byOldKey)] }))
    expectRefused(v, 'cert-checkpoint-signer', 'cert-checkpoint-unsigned')
  })

  it('an extra signature by a replaced key beside t valid ones → cert-checkpoint-signer', () => {
    // It was harmless until certificates became canonical (docs/adr/0020): a copy by a
    // non-steward is not a block the file lists. The checkpoint still counts.
    const byOldKey = fx.sim.checkpoint('s3', fx.signedAt + 5, fx.epoch)
    const v = verify(rewriteCar(fx.car, { add: [blockOf(byOldKey)] }))
    expect(codes(v).filter((c) => c !== 'cert-not-canonical')).toEqual(['cert-checkpoint-signer'])
    expect(v.status).toBe('ratified')
    expect(v.checkpoint?.cid.equals(fx.sim.fold.state().checkpoint!.cid)).toBe(true)
  })
})

describe('the genesis', () => {
  it('verified against another federation’s id → cert-header (the header names this one)', () => {
    // Before the header's federation was checked, this was found at the genesis.
    const another = simulator(MEMBERS, 'another federation')
    expect(another.federation.equals(fx.sim.federation)).toBe(false)
    expect(codes(verify(fx.car, {}, another.federation))).toEqual(['cert-header'])
  })

  it('a header naming the other federation, verified against it → cert-genesis-mismatch', () => {
    const another = simulator(MEMBERS, 'another federation')
    const car = withHeader(fx.car, { federation: another.federation })
    expect(codes(verify(car, {}, another.federation))).toEqual(['cert-genesis-mismatch'])
  })

  it('missing from the file → cert-header (the header names the genesis the file holds)', () => {
    // It was cert-genesis-mismatch until the header's genesis became a header check.
    expect(codes(verify(rewriteCar(fx.car, { remove: [fx.sim.genesis.cid] })))).toEqual(['cert-header'])
  })
})

describe('freshness', () => {
  const checkpointTime = () => fx.sim.base + fx.epoch + SEAL_DEADLINE

  it('far beyond epoch + sealDeadlineMs + maxAge → cert-stale; at the default limit still fresh', () => {
    const maxAge = 2 * DEFAULT_RULES.checkpointIntervalMs
    expect(verify(fx.car, { now: checkpointTime() + maxAge }).ok).toBe(true)
    expectRefused(verify(fx.car, { now: checkpointTime() + maxAge + 1 }), 'cert-stale')
    expectRefused(verify(fx.car, { now: checkpointTime() + 365 * 24 * HOUR }), 'cert-stale')
  })

  it('honours an explicit maxAgeMs', () => {
    const age = fx.now - checkpointTime()
    expect(verify(fx.car, { maxAgeMs: age }).ok).toBe(true)
    expectRefused(verify(fx.car, { maxAgeMs: age - 1 }), 'cert-stale')
  })
})

describe('a checkpoint dated in the future', () => {
  const checkpointTime = () => fx.sim.base + fx.epoch + SEAL_DEADLINE

  it('one second past the clock skew → cert-future, and the trust mark does not move', () => {
    const now = checkpointTime() - MAX_CLOCK_SKEW_MS - 1000
    const fresh = verify(fx.car, { now })
    expectRefused(fresh, 'cert-future')
    expect(fresh.trusted).toBeUndefined()
    const kept = { height: 3, epoch: fx.sim.base }
    const withMark = verify(fx.car, { now, trusted: kept })
    expectRefused(withMark, 'cert-future')
    expect(withMark.trusted).toEqual(kept)
  })

  it('exactly at the clock skew → accepted, the mark at most now + skew', () => {
    const now = checkpointTime() - MAX_CLOCK_SKEW_MS
    const v = verify(fx.car, { now })
    expect(v.problems).toEqual([])
    expect(v.ok).toBe(true)
    expect(markOf(v.trusted)).toEqual({ height: 4, epoch: fx.sim.base + fx.epoch })
    expect(v.trusted!.epoch).toBeLessThanOrEqual(now + MAX_CLOCK_SKEW_MS)
  })

  it('t stewards signing a checkpoint a century ahead: refused now and for ever after, the mark kept below it', () => {
    const f = buildFixture()
    const { sim } = f
    const century = 100 * 365 * 24 * HOUR
    const ahead = [
      sim.checkpoint('s1', f.signedAt + 10, century),
      sim.checkpoint('s3b', f.signedAt + 11, century),
    ]
    sim.add(...ahead)
    expect(sim.fold.state().checkpoint?.epoch).toBe(sim.base + century)
    const car = buildCertificate(sim.fold, MODEL)
    const honestMark = verifyCertificate(sim.federation, f.car, { now: f.now, ed25519: fastEd25519 }).trusted!
    // It would never have gone stale (its age stays negative), and would have moved the mark a century on.
    for (const now of [f.now, f.now + 10 * 365 * 24 * HOUR, sim.base + century - MAX_CLOCK_SKEW_MS - 1]) {
      const v = verifyCertificate(sim.federation, car, { now, trusted: honestMark, ed25519: fastEd25519 })
      expectRefused(v, 'cert-future')
      expect(codes(v)).not.toContain('cert-stale')
      expect(v.trusted).toEqual(honestMark)
    }
    // The honest certificate still verifies against the kept mark.
    expect(verifyCertificate(sim.federation, f.car, { now: f.now, trusted: honestMark }).ok).toBe(true)
  })
})

describe('rollback', () => {
  const mark = () => ({ height: 4, epoch: fx.sim.base + fx.epoch })

  it('a trusted mark above the certificate → cert-rollback (height first, then epoch)', () => {
    const higher = verify(fx.car, { trusted: { height: 5, epoch: 0 } })
    expectRefused(higher, 'cert-rollback')
    expect(higher.trusted).toEqual({ height: 5, epoch: 0 })
    expectRefused(verify(fx.car, { trusted: { ...mark(), epoch: mark().epoch + 1 } }), 'cert-rollback')
  })

  it('an equal trusted mark is fine; a lower one is raised to the certificate’s', () => {
    const equal = verify(fx.car, { trusted: mark() })
    expect(equal.ok).toBe(true)
    expect(markOf(equal.trusted)).toEqual(mark())
    const lower = verify(fx.car, { trusted: { height: 3, epoch: mark().epoch + 100 * HOUR } })
    expect(lower.ok).toBe(true)
    expect(markOf(lower.trusted)).toEqual(mark())
  })
})

describe('mix-and-match', () => {
  it('a later revocation: the new certificate says revoked; the old one is refused against the new mark', () => {
    const f = buildFixture()
    const { sim } = f
    const oldCar = f.car
    const revoke = decide(sim, {
      by: 's1',
      at: f.epoch + 10_000,
      action: { type: 'revoke-model', manifest: f.llama.manifest.cid, reason: 'license withdrawn' },
      voters: ['s1', 's2', 'v1'],
      sealers: ['s1', 's2'],
    })
    const epoch2 = 2 * HOUR
    const at2 = epoch2 + SEAL_DEADLINE + 100
    sim.add(sim.checkpoint('s1', at2, epoch2), sim.checkpoint('s2', at2 + 1, epoch2))
    expect(sim.fold.state().checkpoint?.epoch).toBe(sim.base + epoch2)
    const newCar = buildCertificate(sim.fold, MODEL)
    const now2 = sim.base + epoch2 + SEAL_DEADLINE + 60_000
    const opts = { now: now2, ed25519: fastEd25519 }

    const fresh = verifyCertificate(sim.federation, newCar, opts)
    expectRefused(fresh, 'cert-revoked')
    expect(fresh.status).toBe('revoked')
    expect(fresh.proposal?.equals(revoke.proposal.cid)).toBe(true)
    expect(markOf(fresh.trusted)).toEqual({ height: 4, epoch: sim.base + epoch2 })

    // Alone, the old certificate still verifies (it is younger than maxAge):
    // the high-water mark is what stops it.
    expect(verifyCertificate(sim.federation, oldCar, opts).ok).toBe(true)
    const old = verifyCertificate(sim.federation, oldCar, { ...opts, trusted: fresh.trusted! })
    expectRefused(old, 'cert-rollback')
    expect(old.trusted).toEqual(fresh.trusted)

    // Actually mixed: every block of both certificates. The status comes from the newest
    // counted checkpoint's root, so the old ratification cannot hide the revocation; under the
    // old header (which names the old checkpoint) the file is refused at once.
    const oldParts = readCar(oldCar)
    const newParts = readCar(newCar)
    const seen = new Set(newParts.blocks.map((b) => b.cid.toString()))
    const extra = oldParts.blocks.filter(
      (b) => !seen.has(b.cid.toString()) && !b.cid.equals(oldParts.roots[0]!),
    )
    const mixed = writeCar(newParts.roots, [...newParts.blocks, ...extra])
    const verdict = verifyCertificate(sim.federation, mixed, opts)
    expectRefused(verdict, 'cert-revoked', 'cert-not-canonical')
    expect(verdict.status).toBe('revoked')
    expect(verdict.checkpoint?.epoch).toBe(sim.base + epoch2)
    const underOldHeader = writeCar(oldParts.roots, [
      ...oldParts.blocks,
      ...newParts.blocks.filter((b) => !b.cid.equals(newParts.roots[0]!)),
    ])
    const old2 = verifyCertificate(sim.federation, underOldHeader, opts)
    expectRefused(old2, 'cert-header')
    expect(old2.status).toBe('unknown')
  })

  it('two manifests for one name@version, both ratified → cert-conflicted', () => {
    const car = buildCertificate(fx.sim.fold, 'twin@1.0.0')
    for (const t of fx.twins) expect(hasBlock(car, t.manifest.cid)).toBe(true)
    const v = verify(car)
    expectRefused(v, 'cert-conflicted')
    expect(v.status).toBe('conflicted')
    expect(v.manifest).toBeUndefined()
  })
})

describe('a proof for another name@version', () => {
  it('asking for B with a certificate for A → cert-wrong-model', () => {
    expectRefused(verify(fx.car, { model: 'other@1.0.0' }), 'cert-wrong-model')
    expect(verify(fx.car, { model: MODEL }).ok).toBe(true)
  })

  it('a header edited to claim a version without a decision → cert-not-ratified', () => {
    const v = verify(withHeaderModel(fx.car, 'ghost@1.0.0'))
    expectRefused(v, 'cert-not-ratified')
    expect(v.model).toBe('ghost@1.0.0')
  })

  it('a header edited to claim B whose entry shares A’s leaf → B’s own ratification is not in the file', () => {
    // With three versions the map is one leaf, so A's proof proves B's entry too;
    // what the file lacks is B's manifest and ratification.
    const v = verify(withHeaderModel(fx.car, 'other@1.0.0'))
    expectRefused(v, 'cert-ratification-unproven', 'cert-block-missing')
    expect(v.proposal?.equals(fx.other.proposal.cid)).toBe(true)
  })

  it('a header edited to claim B in another leaf of the map → cert-proof', () => {
    // 66 ratified versions: two leaves, so A's path does not reach B's leaf.
    const sim = simulator()
    const versions = Array.from({ length: 66 }, (_, i) => `big${String(i).padStart(3, '0')}`)
    const proposals = versions.map((name, i) => {
      const m = sim.manifest('v1', 10 + i, { id: name, name, version: '1.0.0' })
      const p = sim.proposal('s1', 100 + i, {
        closesAt: 100 + i + 1100,
        action: { type: 'ratify-model', manifest: m.cid },
      })
      sim.add(m, p)
      sim.add(...['s1', 's2'].map((v) => sim.vote(v, 110 + i, { proposal: p.cid, choice: 'yes' })))
      return p
    })
    const seals = proposals.flatMap((p, i) =>
      ['s1', 's2'].map((s) => sim.seal(s, 100 + i + 1100 + 200, { proposal: p.cid })),
    )
    sim.add(...seals)
    const at = HOUR + SEAL_DEADLINE + 100
    sim.add(sim.checkpoint('s1', at, HOUR), sim.checkpoint('s2', at, HOUR))
    const now = sim.base + HOUR + SEAL_DEADLINE + 1000
    const first = `${versions[0]}@1.0.0`
    const last = `${versions[65]}@1.0.0`
    const car = buildCertificate(sim.fold, first)
    expect(verifyCertificate(sim.federation, car, { now, ed25519: fastEd25519 }).ok).toBe(true)
    const v = verifyCertificate(sim.federation, withHeaderModel(car, last), { now, ed25519: fastEd25519 })
    expectRefused(v, 'cert-proof')
    expect(v.status).toBe('unknown')
    expect(v.problems.find((p) => p.code === 'cert-proof')?.message).toMatch(/proof-block-missing|missing/)
  })
})

describe('size and extra blocks', () => {
  it('a CAR over the size cap → cert-too-large', () => {
    expectRefused(verify(fx.car, { maxBytes: fx.car.length - 1 }), 'cert-too-large')
    expect(verify(fx.car, { maxBytes: fx.car.length }).ok).toBe(true)
    expectRefused(verify(new Uint8Array(MAX_CERTIFICATE_BYTES + 1)), 'cert-too-large')
  })

  it('extra blocks — junk that is not a record, unrelated records — are each a problem', () => {
    // They were ignored until certificates became canonical (docs/adr/0020).
    const junk: Block[] = []
    for (let i = 0; i < 8; i++) {
      const raw = utf8.encode(`junk ${i} `.repeat(i + 1))
      junk.push({ cid: rawCidOfDigest(sha256(raw)), bytes: raw })
      const cbor = encode({ junk: i, note: 'not a record', list: [i, i + 1] })
      junk.push({ cid: cidOfBlock(cbor), bytes: cbor })
    }
    // A node shaped like a list leaf and one like a record without its signature.
    const leaf = encode([0, []])
    junk.push({ cid: cidOfBlock(leaf), bytes: leaf })
    const { sig: _sig, ...unsigned } = fx.llama.votes[0]!.record
    const unsignedBytes = encode(unsigned)
    junk.push({ cid: cidOfBlock(unsignedBytes), bytes: unsignedBytes })
    // A raw block whose CID does not match its bytes: not dag-cbor, so not read.
    junk.push({ cid: rawCidOfDigest(sha256(utf8.encode('x'))), bytes: utf8.encode('y') })
    // Valid records of the federation that prove nothing here.
    junk.push(blockOf(fx.other.manifest), blockOf(fx.other.proposal), blockOf(fx.other.votes[0]!))
    const { roots, blocks } = readCar(fx.car)
    const sorted = [...blocks.slice(1), ...junk].sort((a, b) => compareCids(a.cid, b.cid))
    const v = verify(writeCar(roots, [blocks[0]!, ...sorted]))
    const count = (code: string) => codes(v).filter((c) => c === code).length
    // One problem per block: the unsigned vote is an invalid record, the raw block that does
    // not match its CID an invalid block, and the rest (8 raw blocks, 8 maps without a kind,
    // the list leaf, 3 valid records) outside the set.
    expect(count('cert-record-invalid')).toBe(1)
    expect(count('cert-block-invalid')).toBe(1)
    expect(count('cert-not-canonical')).toBe(20)
    expect(v.problems.length).toBe(junk.length)
    expect(v.status).toBe('ratified')
    expect(v.ok).toBe(false)
  })
})

describe('unreadable files', () => {
  it('garbage bytes → cert-car', () => {
    const garbage = new Uint8Array(256).map((_, i) => (i * 37 + 11) & 0xff)
    expectRefused(verify(garbage), 'cert-car')
    expectRefused(verify(new Uint8Array(0)), 'cert-car')
    expectRefused(verify(fx.car.subarray(0, fx.car.length - 7)), 'cert-car')
  })

  it('a CAR without a header root → cert-header', () => {
    const { roots, blocks } = readCar(fx.car)
    expectRefused(verify(writeCar([], blocks)), 'cert-header')
    // A root that is not in the file, or that is not a header.
    expectRefused(
      verify(
        writeCar(
          roots,
          blocks.filter((b) => !b.cid.equals(roots[0]!)),
        ),
      ),
      'cert-header',
    )
    expectRefused(verify(writeCar([fx.sim.genesis.cid], blocks)), 'cert-header')
    expectRefused(verify(writeCar([roots[0]!, fx.sim.genesis.cid], blocks)), 'cert-header')
  })
})

describe('a chain that no steward sealed', () => {
  // A forged chain: one voter key proposes "replace s1 → a1", "replace s2 → a2" (never voted
  // on, never sealed), lists them final-passed in a checkpoint and signs it with a1 and a2. The
  // head chain of a checkpoint must be made of decisions sealed by t stewards of the state before
  // each step (SPEC.md §11.2), so this checkpoint never counts.
  it('a checkpoint whose signers are stewards only by its own unsealed chain proves nothing', () => {
    const f = forgeCertificate()
    const v = verifyCertificate(f.sim.federation, f.car, { now: f.now, ed25519: fastEd25519 })
    expect(v.ok).toBe(false)
    expect(v.status).not.toBe('ratified')
    expect(v.trusted).toBeUndefined()
  })
})
