/**
 * The Ed25519 verification rule (protocol/SPEC.md §4.2, protocol/ed25519.ts): ZIP-215,
 * checked on the 12 edge cases of "Taming the many EdDSAs"
 * (fixtures/ed25519-speccheck-cases.json) for every backend the project uses,
 * plus did:key parsing and registration, and interoperability with OpenSSL.
 */
import { spawnSync } from 'node:child_process'
import { createPublicKey, verify as cryptoVerify } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { base58btc } from 'multiformats/bases/base58'
import { afterAll, describe, expect, it } from 'vitest'
import { fastEd25519, nativeEd25519, nativeSigner, spkiDer } from '../../../node/ed25519-native.js'
import { utf8 } from '../../../protocol/bytes.js'
import { didFromPublicKey, parseDid, parseRegistrableDid } from '../../../protocol/did.js'
import {
  type Ed25519Backend,
  keyProblem,
  nobleSigner,
  publicKeyOf,
  withZip215Fallback,
  zip215,
} from '../../../protocol/ed25519.js'
import type { Result } from '../../../protocol/result.js'
import { memberSchema } from '../../../protocol/schema.js'
import { createSigner } from '../../../protocol/signing.js'

interface SpeccheckCase {
  message: string
  pub_key: string
  signature: string
}

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'))

const CASES = (
  JSON.parse(
    readFileSync(new URL('../../../fixtures/ed25519-speccheck-cases.json', import.meta.url), 'utf8'),
  ) as SpeccheckCase[]
).map((c) => ({ message: hex(c.message), publicKey: hex(c.pub_key), signature: hex(c.signature) }))

/** The protocol's rule: ZIP-215 (Zebra's verdicts in the paper), cases 0–11. */
const ZIP215_VERDICTS = 'VVVVVVXXXVVV'

function verdicts(backend: Ed25519Backend): string {
  return CASES.map((c) => (backend.verify(c.signature, c.message, c.publicKey) ? 'V' : 'X')).join('')
}

function code<T>(r: Result<T>): string {
  return r.ok ? 'ok' : r.code
}

const seed = (n: number): Uint8Array => new Uint8Array(32).fill(n)

describe('Ed25519 rule on the speccheck edge cases', () => {
  it('has the 12 cases of novifinancial/ed25519-speccheck', () => {
    expect(CASES).toHaveLength(12)
    for (const c of CASES) {
      expect(c.publicKey).toHaveLength(32)
      expect(c.signature).toHaveLength(64)
    }
  })

  it('the reference (noble, zip215) gives exactly the ZIP-215 verdicts', () => {
    expect(zip215.name).toBe('noble-zip215')
    expect(verdicts(zip215)).toBe(ZIP215_VERDICTS)
  })

  it('fastEd25519 (node:crypto + ZIP-215 fallback) gives exactly the ZIP-215 verdicts', () => {
    expect(verdicts(fastEd25519)).toBe(ZIP215_VERDICTS)
    // A fresh wrapper around the same backend gives the same (no dependence on cache state).
    expect(verdicts(withZip215Fallback(nativeEd25519))).toBe(ZIP215_VERDICTS)
  })

  // Raw node:crypto's verdicts change with the Node and OpenSSL build (Node 20 and 22:
  // VVVVXXXXXXXV; Node 24, which also refuses small-order keys: XXXVXXXXXXXX), so they are
  // printed, not pinned. The fast path relies on two things only, asserted on this build.
  it('raw node:crypto (OpenSSL) accepts only what ZIP-215 accepts, and the fast path is ZIP-215', () => {
    const native = verdicts(nativeEd25519)
    console.info(
      `node:crypto verdicts on the speccheck cases: ${native} (OpenSSL ${process.versions.openssl}, ZIP-215 ${ZIP215_VERDICTS})`,
    )
    expect(native).toMatch(/^[VX]{12}$/)
    // Its accepts may be final: native accept ⊆ ZIP-215 accept, on every case.
    for (const [i, c] of CASES.entries()) {
      if (nativeEd25519.verify(c.signature, c.message, c.publicKey)) {
        expect(zip215.verify(c.signature, c.message, c.publicKey), `case ${i}`).toBe(true)
      }
    }
    // Its rejects are re-decided by ZIP-215: the fast path agrees with ZIP-215 on all 12.
    for (const [i, c] of CASES.entries()) {
      expect(fastEd25519.verify(c.signature, c.message, c.publicKey), `case ${i}`).toBe(
        zip215.verify(c.signature, c.message, c.publicKey),
      )
    }
  })

  it("OpenSSL's accept set is a subset of ZIP-215's, so its accepts may be final", () => {
    // Straight from the backends, case by case; the reference's verdicts are the protocol's.
    for (const [i, c] of CASES.entries()) {
      const native = nativeEd25519.verify(c.signature, c.message, c.publicKey)
      const reference = zip215.verify(c.signature, c.message, c.publicKey)
      expect(reference || !native, `case ${i}: node:crypto accepts what ZIP-215 rejects`).toBe(true)
      expect(reference, `case ${i}`).toBe(ZIP215_VERDICTS[i] === 'V')
    }
  })

  it('raw node:crypto agrees with crypto.verify on a KeyObject built from the SPKI DER', () => {
    for (const c of CASES) {
      const key = createPublicKey({ key: spkiDer(c.publicKey), format: 'der', type: 'spki' })
      expect(nativeEd25519.verify(c.signature, c.message, c.publicKey)).toBe(
        cryptoVerify(null, c.message, key, c.signature),
      )
    }
  })
})

describe('malformed input', () => {
  const signer = createSigner(seed(1))
  const msg = utf8.encode('hello')
  const sig = signer.sign(msg)
  const backends = [zip215, nativeEd25519, fastEd25519]

  it.each(backends.map((b) => [b.name, b] as const))('%s accepts a good signature', (_name, b) => {
    expect(b.verify(sig, msg, signer.publicKey)).toBe(true)
  })

  it.each(backends.map((b) => [b.name, b] as const))(
    '%s returns false, never throws, for malformed input',
    (_name, b) => {
      const bad: [Uint8Array, Uint8Array, Uint8Array][] = [
        [sig.subarray(0, 63), msg, signer.publicKey],
        [new Uint8Array(65), msg, signer.publicKey],
        [new Uint8Array(0), msg, signer.publicKey],
        [sig, msg, signer.publicKey.subarray(0, 31)],
        [sig, msg, new Uint8Array(33)],
        [sig, msg, new Uint8Array(0)],
        [sig, utf8.encode('hellO'), signer.publicKey],
        [Uint8Array.from(sig, (x, i) => (i === 0 ? x ^ 1 : x)), msg, signer.publicKey],
        [new Uint8Array(64).fill(0xff), msg, signer.publicKey],
        [sig, msg, new Uint8Array(32).fill(0xff)],
        [sig, msg, hex('0200000000000000000000000000000000000000000000000000000000000000')], // not on the curve
      ]
      for (const [s, m, p] of bad) expect(b.verify(s, m, p)).toBe(false)
    },
  )

  it('node:crypto returns false, never throws, for values that are not bytes at all', () => {
    const junk = [null, undefined, 'x'.repeat(64), 42, {}] as unknown as Uint8Array[]
    for (const j of junk) {
      expect(nativeEd25519.verify(j, msg, signer.publicKey)).toBe(false)
      expect(nativeEd25519.verify(sig, msg, j)).toBe(false)
      expect(nativeEd25519.verify(sig, j, signer.publicKey)).toBe(false)
    }
  })
})

describe('signers', () => {
  const messages = [new Uint8Array(0), utf8.encode('allmende'), new Uint8Array(10_000).fill(7)]

  it('noble and node:crypto produce identical signatures for the same key and message', () => {
    for (let n = 0; n < 8; n++) {
      const sk = seed(n * 31 + 1)
      for (const m of messages) {
        const a = nobleSigner.sign(m, sk)
        const b = nativeSigner.sign(m, sk)
        expect(b).toBeInstanceOf(Uint8Array)
        expect(b).toHaveLength(64)
        expect(Buffer.from(b).toString('hex')).toBe(Buffer.from(a).toString('hex'))
        // And each verifies the other's.
        const pub = publicKeyOf(sk)
        expect(nativeEd25519.verify(a, m, pub)).toBe(true)
        expect(zip215.verify(b, m, pub)).toBe(true)
      }
    }
  })

  it('createSigner gives the same DID and signatures with either backend', () => {
    const a = createSigner(seed(9))
    const b = createSigner(seed(9), nativeSigner)
    expect(b.did).toBe(a.did)
    expect(b.sign(messages[1]!)).toEqual(a.sign(messages[1]!))
  })

  it('nativeSigner refuses a secret key that is not 32 bytes', () => {
    expect(() => nativeSigner.sign(messages[1]!, new Uint8Array(31))).toThrow(TypeError)
  })
})

describe('did:key', () => {
  const pub = createSigner(seed(3)).publicKey

  it('round-trips a public key', () => {
    const did = didFromPublicKey(pub)
    expect(did.startsWith('did:key:z6Mk')).toBe(true)
    const parsed = parseDid(did)
    expect(parsed.ok && Buffer.from(parsed.value).equals(Buffer.from(pub))).toBe(true)
    expect(code(parseRegistrableDid(did))).toBe('ok')
    // A known vector: the W3C did:key example for Ed25519.
    const w3c = 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK'
    const k = parseDid(w3c)
    expect(k.ok).toBe(true)
    if (k.ok) expect(didFromPublicKey(k.value)).toBe(w3c)
  })

  it('refuses a wrong prefix with did-prefix', () => {
    expect(code(parseDid('did:web:example.org'))).toBe('did-prefix')
    expect(code(parseDid('key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK'))).toBe('did-prefix')
    // multibase other than base58btc ("z")
    expect(code(parseDid(`did:key:u${Buffer.from([0xed, 0x01, ...pub]).toString('base64url')}`))).toBe(
      'did-prefix',
    )
  })

  it('refuses bad base58 with did-base58', () => {
    expect(code(parseDid('did:key:z0OIl'))).toBe('did-base58')
    expect(code(parseDid(`${didFromPublicKey(pub).slice(0, -1)}!`))).toBe('did-base58')
  })

  it('refuses another multicodec with did-multicodec', () => {
    const secp = base58btc.encode(Uint8Array.from([0xe7, 0x01, ...new Uint8Array(33).fill(2)]))
    expect(code(parseDid(`did:key:${secp}`))).toBe('did-multicodec')
    expect(code(parseDid(`did:key:${base58btc.encode(Uint8Array.from([0xed]))}`))).toBe('did-multicodec')
  })

  it('refuses a wrong key length with did-length', () => {
    const short = base58btc.encode(Uint8Array.from([0xed, 0x01, ...pub.subarray(0, 31)]))
    const long = base58btc.encode(Uint8Array.from([0xed, 0x01, ...pub, 0]))
    expect(code(parseDid(`did:key:${short}`))).toBe('did-length')
    expect(code(parseDid(`did:key:${long}`))).toBe('did-length')
    expect(code(parseDid(`did:key:z${'1'.repeat(100)}`))).toBe('did-length')
  })

  it('refuses what is not text with schema-type', () => {
    expect(code(parseDid(42))).toBe('schema-type')
    expect(code(parseDid(pub))).toBe('schema-type')
  })
})

describe('registrable keys among the speccheck vectors', () => {
  // By the README's table: case 0/1's key is small order; case 10/11's key is
  // small order *and* non-canonical (x = 0 with the sign bit set), so its
  // canonical-encoding check fails first; the keys of mixed order (a small-order
  // component) are refused too; only the key of cases 6–7 is in the prime-order subgroup.
  const expected: Record<string, string> = {
    c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa: 'did-small-order',
    f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43: 'did-mixed-order',
    cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d: 'did-mixed-order',
    '442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623': 'ok',
    ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff: 'did-non-canonical',
  }

  it('parseDid accepts every one of them (text form only)', () => {
    for (const c of CASES) expect(code(parseDid(didFromPublicKey(c.publicKey)))).toBe('ok')
  })

  it('parseRegistrableDid refuses small-order, mixed-order and non-canonical keys', () => {
    const seen = new Set<string>()
    for (const [i, c] of CASES.entries()) {
      const h = Buffer.from(c.publicKey).toString('hex')
      seen.add(h)
      expect(code(parseRegistrableDid(didFromPublicKey(c.publicKey))), `case ${i}`).toBe(expected[h])
    }
    expect([...seen].sort()).toEqual(Object.keys(expected).sort())
    expect(CASES.map((c) => keyProblem(c.publicKey) ?? 'ok')).toEqual([
      'did-small-order',
      'did-small-order',
      'did-mixed-order',
      'did-mixed-order',
      'did-mixed-order',
      'did-mixed-order',
      'ok',
      'ok',
      'did-mixed-order',
      'did-mixed-order',
      'did-non-canonical',
      'did-non-canonical',
    ])
  })

  it('refuses other non-canonical or off-curve encodings with did-non-canonical', () => {
    // y = p + 1 (the identity, encoded with y ≥ p), and y = 2 (no x exists).
    const yAboveP = hex('eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f')
    const offCurve = hex('0200000000000000000000000000000000000000000000000000000000000000')
    expect(code(parseRegistrableDid(didFromPublicKey(yAboveP)))).toBe('did-non-canonical')
    expect(code(parseRegistrableDid(didFromPublicKey(offCurve)))).toBe('did-non-canonical')
    // The canonical identity is small order.
    const identity = hex('0100000000000000000000000000000000000000000000000000000000000000')
    expect(code(parseRegistrableDid(didFromPublicKey(identity)))).toBe('did-small-order')
  })

  it('a genesis member or admitted member with a small-order key is refused by the schema', () => {
    const member = { id: didFromPublicKey(CASES[0]!.publicKey), roles: ['voter'], weight: 1 }
    expect(memberSchema(member, 'm', true)?.code).toBe('did-small-order')
    // Not registering (e.g. a listed author): only the text form is checked.
    expect(memberSchema(member, 'm', false)).toBeUndefined()
  })
})

const hasOpenssl = spawnSync('openssl', ['version'], { encoding: 'utf8' }).status === 0

describe('interoperability with the openssl command', () => {
  const dirs: string[] = []
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  it.runIf(hasOpenssl)('openssl pkeyutl verifies a signature made by createSigner', () => {
    const dir = mkdtempSync(join(tmpdir(), 'allmende-ed25519-'))
    dirs.push(dir)
    const signer = createSigner(seed(42))
    const msg = utf8.encode('allmende/record/v1\nsigned by noble, checked by OpenSSL')
    const sig = signer.sign(msg)
    const pem = `-----BEGIN PUBLIC KEY-----\n${spkiDer(signer.publicKey).toString('base64')}\n-----END PUBLIC KEY-----\n`
    writeFileSync(join(dir, 'pub.pem'), pem)
    writeFileSync(join(dir, 'msg.bin'), msg)
    writeFileSync(join(dir, 'sig.bin'), sig)
    writeFileSync(
      join(dir, 'bad.bin'),
      Uint8Array.from(sig, (x, i) => (i === 10 ? x ^ 0x80 : x)),
    )
    const run = (sigfile: string) =>
      spawnSync(
        'openssl',
        [
          'pkeyutl',
          '-verify',
          '-rawin',
          '-pubin',
          '-inkey',
          'pub.pem',
          '-sigfile',
          sigfile,
          '-in',
          'msg.bin',
        ],
        { cwd: dir, encoding: 'utf8' },
      )
    const good = run('sig.bin')
    expect(good.status, good.stderr).toBe(0)
    expect(good.stdout).toMatch(/Signature Verified Successfully/)
    const bad = run('bad.bin')
    expect(bad.status).not.toBe(0)
  })
})
