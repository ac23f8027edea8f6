/**
 * The certificate vectors in fixtures/vectors/certificates/ (protocol/SPEC.md §11–§12; the folder's
 * README): regenerated and compared byte for byte, then each verified as a second implementation
 * would, from the JSON alone, and held to its expected verdict (ok, status, mode, the set of codes);
 * every quotation in a vector's `rule` must be protocol/SPEC.md's current text.
 * The format and why expectations are written from the rules: docs/adr/0025.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CarBufferReader } from '@ipld/car/buffer-reader'
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import {
  CERTIFICATE_VECTORS_DIR,
  type CertificateVector,
  generateCertificateVectors,
  serializeCertificateVector,
} from '../../../fixtures/generate/certificates/index.js'
import { NO_SENTENCE } from '../../../fixtures/generate/certificates/rules.js'
import { fastEd25519, nativeEd25519 } from '../../../node/ed25519-native.js'
import {
  buildCertificate,
  type CertificateVerdict,
  decodeStrict,
  decodeTrustedHead,
  parseDid,
  signingBytes,
  type TrustedHead,
  type TrustMark,
  verifyCertificate,
} from '../../../protocol/index.js'

const names = readdirSync(CERTIFICATE_VECTORS_DIR)
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.slice(0, -'.json'.length))
  .sort()
const vectors = new Map(
  names.map((name) => [
    name,
    JSON.parse(readFileSync(join(CERTIFICATE_VECTORS_DIR, `${name}.json`), 'utf8')) as CertificateVector,
  ]),
)

function fromBase64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'base64'))
}

function trustedOf(v: CertificateVector): TrustMark | TrustedHead | undefined {
  if (v.trusted === null) return undefined
  if (typeof v.trusted !== 'string') return v.trusted
  const head = decodeTrustedHead(fromBase64(v.trusted))
  if (!head.ok) throw new Error(`the vector's trusted head does not decode: ${head.code}`)
  return head.value
}

function verify(v: CertificateVector, ed25519 = fastEd25519): CertificateVerdict {
  return verifyCertificate(CID.parse(v.federation), fromBase64(v.certificate), {
    now: v.now,
    ed25519,
    ...(v.trusted === null ? {} : { trusted: trustedOf(v)! }),
    ...(v.model === null ? {} : { model: v.model }),
    ...(v.maxBytes === undefined ? {} : { maxBytes: v.maxBytes }),
  })
}

/** Runs of whitespace as one space, so a quotation may wrap where SPEC's lines wrap. */
function collapsed(text: string): string {
  return text.replace(/\s+/g, ' ').trim()
}

const SPEC_TEXT = collapsed(
  readFileSync(fileURLToPath(new URL('../../../protocol/SPEC.md', import.meta.url)), 'utf8'),
)

/**
 * The pieces of SPEC a rule quotes: the text between “ and ”, cut at each `…` (words left out).
 * The convention is the README's and fixtures/generate/certificates/rules.ts's.
 */
function quotedPieces(rule: string): string[] {
  return [...rule.matchAll(/“([^“”]*)”/g)]
    .flatMap((quotation) => quotation[1]!.split('…'))
    .map(collapsed)
    .filter((piece) => piece.length > 0)
}

/** The verdict in the vector's terms: the mode only where the vector states one. */
function outcome(v: CertificateVector, verdict: CertificateVerdict): CertificateVector['expect'] {
  return {
    ok: verdict.ok,
    status: verdict.status,
    ...(v.expect.mode === undefined ? {} : { mode: verdict.mode }),
    codes: [...new Set(verdict.problems.map((p) => p.code))].sort() as CertificateVector['expect']['codes'],
  }
}

describe('certificate vectors', () => {
  it('are exactly what `npm run vectors` writes, file for file', () => {
    const fresh = generateCertificateVectors()
    expect([...fresh.keys()].sort()).toEqual([...vectors.keys()])
    for (const [name, v] of fresh) {
      expect(serializeCertificateVector(v), name).toBe(
        readFileSync(join(CERTIFICATE_VECTORS_DIR, `${name}.json`), 'utf8'),
      )
    }
  })

  it('are each described in the README', () => {
    const readme = readFileSync(join(CERTIFICATE_VECTORS_DIR, 'README.md'), 'utf8')
    for (const name of vectors.keys()) expect(readme, name).toContain(`\`${name}\``)
  })

  it('are exactly the files the README lists', () => {
    const readme = readFileSync(join(CERTIFICATE_VECTORS_DIR, 'README.md'), 'utf8')
    const files = readme.slice(readme.indexOf('## The files'))
    // The first cell of each table row names files; the header row and its rule name none.
    const listed = files
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .flatMap((line) => [...line.split('|')[1]!.matchAll(/`([a-z0-9-]+)`/g)].map((m) => m[1]!))
    expect(listed.filter((name) => !vectors.has(name))).toEqual([])
    expect(new Set(listed).size).toBe(vectors.size)
  })

  it('quote protocol/SPEC.md word for word in their rules, or say SPEC has no sentence', () => {
    const unquoted: string[] = []
    const notInSpec: string[] = []
    for (const [name, v] of vectors) {
      const opened = v.rule.split('“').length - 1
      const closed = v.rule.split('”').length - 1
      const pieces = quotedPieces(v.rule)
      if (opened !== closed || (pieces.length === 0 && !v.rule.includes(NO_SENTENCE))) unquoted.push(name)
      for (const piece of pieces) if (!SPEC_TEXT.includes(piece)) notInSpec.push(`${name}: ${piece}`)
    }
    expect(unquoted).toEqual([])
    expect(notInSpec).toEqual([])
  })

  it.each([...vectors.keys()])('%s', (name) => {
    const v = vectors.get(name)!
    expect(outcome(v, verify(v))).toEqual(v.expect)
  })

  it('the ZIP-215 edge: one signature RFC 8032 (OpenSSL) refuses, and the reference backend verifies the file', () => {
    const v = vectors.get('honest-negative-zero-r')!
    const refusedByRfc8032 = recordsOf(v).filter((r) => {
      const message = signingBytes(r as never)
      const key = parseDid(r.author as string)
      return key.ok && !nativeEd25519.verify(r.sig as Uint8Array, message, key.value)
    })
    expect(refusedByRfc8032.map((r) => r.kind)).toEqual(['vote'])
    const reference = verifyCertificate(CID.parse(v.federation), fromBase64(v.certificate), { now: v.now })
    expect(outcome(v, reference)).toEqual(v.expect)
  })
})

/** Every block of the file that decodes to a signed record. */
function recordsOf(v: CertificateVector): Record<string, unknown>[] {
  const reader = CarBufferReader.fromBytes(fromBase64(v.certificate))
  return [...reader.blocks()]
    .map((b) => decodeStrict(b.bytes))
    .flatMap((d) => (d.ok && isSigned(d.value) ? [d.value] : []))
}

function isSigned(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && 'sig' in value && 'author' in value
}

describe('the honest files', () => {
  it('are what buildCertificate exports from the same records, byte for byte', async () => {
    const { tellStory } = await import('../../../fixtures/generate/certificates/story.js')
    const story = tellStory()
    const exported = (mode: 'full' | 'compact', since?: CID) =>
      Buffer.from(
        buildCertificate(story.sim.fold, 'llama@1.0.0', { mode, ...(since ? { since } : {}) }),
      ).toString('base64')
    expect(exported('compact')).toBe(vectors.get('honest-compact')!.certificate)
    expect(exported('full')).toBe(vectors.get('honest-full')!.certificate)
    expect(exported('compact', story.chain[0]!.proposal.cid)).toBe(
      vectors.get('honest-since-compact')!.certificate,
    )
  })
})
