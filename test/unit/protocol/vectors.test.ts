/**
 * The record vectors in fixtures/vectors/records.json: regenerated and diffed,
 * then checked against protocol/ and, for signatures, against node:crypto
 * (OpenSSL) as a second Ed25519 implementation.
 */
import { createPublicKey, type KeyObject, verify as nodeVerify } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js'
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import {
  type DagJson,
  generateVectors,
  type InvalidVector,
  VECTORS_PATH,
  type Vectors,
} from '../../../fixtures/generate/index.js'
import { decodeStrict, encode } from '../../../protocol/cbor.js'
import { cidOfBlock } from '../../../protocol/cid.js'
import { readList } from '../../../protocol/cidlist.js'
import { CODES_INVALID } from '../../../protocol/codes.js'
import { parseDid } from '../../../protocol/did.js'
import { type Ed25519Backend, withZip215Fallback, zip215 } from '../../../protocol/ed25519.js'
import { decodeRecord, signRecord } from '../../../protocol/record.js'
import {
  createSigner,
  federationIdOf,
  peerIdBytes,
  RECORD_DOMAIN,
  signingBytes,
  uploadStatementBytes,
} from '../../../protocol/signing.js'
import { ACTION_TYPES, type Cosig, KINDS, type SignedRecord } from '../../../protocol/types.js'

const vectors = JSON.parse(readFileSync(VECTORS_PATH, 'utf8')) as Vectors
const federation = CID.parse(vectors.federation)

// ---------------------------------------------------------------- node:crypto, written out here on purpose

/** DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow. */
const SPKI_ED25519 = hexToBytes('302a300506032b6570032100')
const nodeKeys = new Map<string, KeyObject>()

function nodeKey(publicKey: Uint8Array): KeyObject {
  const k = bytesToHex(publicKey)
  let key = nodeKeys.get(k)
  if (!key) {
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519, publicKey]), format: 'der', type: 'spki' })
    nodeKeys.set(k, key)
  }
  return key
}

const nodeCrypto: Ed25519Backend = {
  name: 'node:crypto',
  verify(signature, message, publicKey) {
    if (signature.length !== 64 || publicKey.length !== 32) return false
    try {
      return nodeVerify(null, message, nodeKey(publicKey), signature)
    } catch {
      return false
    }
  },
}

// ---------------------------------------------------------------- helpers

function keyOf(did: string): Uint8Array {
  const k = parseDid(did)
  if (!k.ok) throw new Error(`${did}: ${k.code}`)
  return k.value
}

function blockSource(blocks: readonly { cid: string; bytes: string }[]) {
  const m = new Map(blocks.map((b) => [b.cid, hexToBytes(b.bytes)]))
  return (cid: CID) => m.get(cid.toString())
}

/** DAG-JSON back to the data model, written independently of the generator's renderer. */
function fromDagJson(v: DagJson): unknown {
  if (Array.isArray(v)) return v.map(fromDagJson)
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v)
    const link = v['/']
    if (keys.length === 1 && typeof link === 'string') return CID.parse(link)
    if (keys.length === 1 && link !== null && typeof link === 'object' && !Array.isArray(link)) {
      const b = (link as { bytes?: unknown }).bytes
      if (typeof b === 'string') return new Uint8Array(Buffer.from(b, 'base64'))
    }
    return Object.fromEntries(keys.map((k) => [k, fromDagJson(v[k]!)]))
  }
  return v
}

function federationFor(v: { federation?: string }): CID {
  return v.federation ? CID.parse(v.federation) : federation
}

// ---------------------------------------------------------------- tests

describe('record vectors', () => {
  it('are exactly what fixtures/generate.ts produces', () => {
    const fresh = JSON.parse(JSON.stringify(generateVectors())) as Vectors
    expect(fresh).toEqual(vectors)
  })

  it('have enough cases, every kind and every action', () => {
    expect(vectors.valid.length).toBeGreaterThanOrEqual(20)
    expect(vectors.invalid.length).toBeGreaterThanOrEqual(60)
    expect(new Set(vectors.valid.map((v) => v.kind))).toEqual(new Set(KINDS))
    const actions = vectors.valid
      .filter((v) => v.kind === 'proposal')
      .map((v) => (v.record as { body: { action: { type: string } } }).body.action.type)
    expect(new Set(actions)).toEqual(new Set(ACTION_TYPES))
    const names = [...vectors.valid, ...vectors.invalid].map((v) => v.name)
    expect(new Set(names).size).toBe(names.length)
  })

  it('cover every invalid code that decoding a record can produce', () => {
    // list-count is bounded by the schema first (schema-range).
    const unreachable = new Set(['list-count'])
    const seen = new Set(vectors.invalid.map((v) => v.expectedCode))
    for (const code of CODES_INVALID) if (!unreachable.has(code)) expect(seen, code).toContain(code)
    for (const code of seen) expect(CODES_INVALID).toContain(code)
  })

  it('derive keys from their names', () => {
    expect(vectors.signingDomain).toBe('allmende/record/v1\n')
    for (const k of vectors.keys) {
      expect(k.secretKey).toBe(bytesToHex(sha256(new TextEncoder().encode(`allmende-vector:${k.name}`))))
      expect(bytesToHex(keyOf(k.did))).toBe(k.publicKey)
    }
  })

  it('derive the federation id from the unsigned genesis', () => {
    const d = vectors.federationDerivation
    expect(cidOfBlock(hexToBytes(d.unsignedBytes)).toString()).toBe(vectors.federation)
    expect(d.cid).toBe(vectors.federation)
    const genesis = vectors.valid.find((v) => v.name === d.genesis)!
    const decoded = decodeStrict(hexToBytes(genesis.bytes))
    if (!decoded.ok) throw new Error(decoded.code)
    expect(federationIdOf(decoded.value as SignedRecord<'genesis'>).equals(federation)).toBe(true)
    expect(genesis.signingBytes).toBe(bytesToHex(RECORD_DOMAIN) + d.unsignedBytes)
  })

  it('sign upload statements (version 2: federation, node, root, at, size, nonce)', () => {
    for (const u of vectors.uploadStatements) {
      const node = peerIdBytes(u.node)
      expect(node && bytesToHex(node), u.name).toBe(u.nodeBytes)
      const bytes = uploadStatementBytes({
        federation: CID.parse(u.federation),
        node: node!,
        root: CID.parse(u.root),
        at: u.at,
        size: u.size,
        nonce: hexToBytes(u.nonce),
      })
      expect(bytesToHex(bytes), u.name).toBe(u.bytes)
      // The layout of SPEC.md §7, spelled out: domain, federation, node, root, at, size, nonce.
      const at = new Uint8Array(8)
      new DataView(at.buffer).setBigUint64(0, BigInt(u.at))
      const size = new Uint8Array(8)
      new DataView(size.buffer).setBigUint64(0, BigInt(u.size))
      expect(u.bytes, u.name).toBe(
        bytesToHex(new TextEncoder().encode('allmende/upload/v2\n')) +
          bytesToHex(CID.parse(u.federation).bytes) +
          u.nodeBytes +
          bytesToHex(CID.parse(u.root).bytes) +
          bytesToHex(at) +
          bytesToHex(size) +
          u.nonce,
      )
      expect(u.nonce, u.name).toHaveLength(32)
      const key = keyOf(u.signer)
      expect(zip215.verify(hexToBytes(u.sig), bytes, key), u.name).toBe(true)
      expect(nodeCrypto.verify(hexToBytes(u.sig), bytes, key), u.name).toBe(true)
    }
  })

  it('build canonical CID lists', () => {
    for (const l of vectors.lists) {
      for (const b of l.blocks) expect(cidOfBlock(hexToBytes(b.bytes)).toString(), l.name).toBe(b.cid)
      const read = readList({ root: CID.parse(l.root), count: l.count }, blockSource(l.blocks), l.labelled)
      if (!read.ok) throw new Error(`${l.name}: ${read.code}`)
      const entries = read.value.map((e) => (Array.isArray(e) ? [String(e[0]), e[1]] : String(e)))
      expect(entries, l.name).toEqual(l.entries)
    }
  })
})

describe.each(vectors.valid.map((v) => [v.name, v] as const))('valid %s', (_name, v) => {
  const bytes = hexToBytes(v.bytes)
  const lists = v.lists ? Object.values(v.lists).flatMap((l) => l.blocks) : []
  const options = {
    federation: federationFor(v),
    ...(v.kind === 'seal' ? { blocks: blockSource(lists) } : {}),
  }

  // A ZIP-215 edge that RFC 8032 refuses decodes through the fast path's re-decision, as nodes run it.
  const backends = v.rfc8032 === 'refuses' ? [zip215, withZip215Fallback(nodeCrypto)] : [zip215, nodeCrypto]

  it('decodes with the listed CID, with either Ed25519 backend', () => {
    for (const ed25519 of backends) {
      const r = decodeRecord(bytes, { ...options, ed25519 })
      if (!r.ok) throw new Error(`${ed25519.name}: ${r.code}: ${r.message} ${r.path ?? ''}`)
      expect(r.value.cid.toString()).toBe(v.cid)
      expect(r.value.record.kind).toBe(v.kind)
      expect(r.value.record.author).toBe(v.author)
      expect(bytesToHex(signingBytes(r.value.record as SignedRecord))).toBe(v.signingBytes)
      expect(bytesToHex(r.value.record.sig)).toBe(v.sig)
      if (v.kind === 'seal') {
        expect(r.value.lists?.votes.length).toBe(v.lists?.votes?.count)
        expect(r.value.lists?.attestations.length).toBe(v.lists?.attestations?.count)
      }
    }
  })

  it('has a CID string that parses back to the CID of its bytes', () => {
    const cid = CID.parse(v.cid)
    expect(cid.equals(cidOfBlock(bytes))).toBe(true)
    expect(cid.toString()).toBe(v.cid)
  })

  it('carries signatures that noble (ZIP-215) and node:crypto both accept', () => {
    const message = hexToBytes(v.signingBytes)
    expect(bytesToHex(message.subarray(0, RECORD_DOMAIN.length))).toBe(bytesToHex(RECORD_DOMAIN))
    const sigs: [Uint8Array, Uint8Array][] = [[hexToBytes(v.sig), keyOf(v.author)]]
    const record = fromDagJson(v.record) as SignedRecord
    for (const c of (record.cosigs ?? []) as Cosig[]) sigs.push([c.sig, keyOf(c.id)])
    if (v.kind === 'genesis') expect(sigs.length).toBe((record.cosigs ?? []).length + 1)
    for (const [sig, key] of sigs) {
      expect(zip215.verify(sig, message, key)).toBe(true)
      expect(nodeCrypto.verify(sig, message, key)).toBe(v.rfc8032 !== 'refuses')
    }
  })

  // signRecord makes RFC 8032's deterministic signatures; an edge vector's signature is made by hand.
  it.skipIf(v.rfc8032 === 'refuses')("is what signRecord makes from its fields and the author's seed", () => {
    const key = vectors.keys.find((k) => k.did === v.author)!
    const { v: _v, author: _a, sig: _s, cosigs, ...fields } = fromDagJson(v.record) as SignedRecord
    const made = signRecord(fields, createSigner(hexToBytes(key.secretKey)), cosigs ? { cosigs } : {})
    expect(bytesToHex(made.bytes)).toBe(v.bytes)
    expect(made.cid.toString()).toBe(v.cid)
  })

  it('renders as DAG-JSON that encodes back to the same bytes', () => {
    expect(bytesToHex(encode(fromDagJson(v.record)))).toBe(v.bytes)
  })

  it('names list blocks that hash to their CIDs and read back', () => {
    for (const [key, l] of Object.entries(v.lists ?? {})) {
      for (const b of l.blocks) expect(cidOfBlock(hexToBytes(b.bytes)).toString()).toBe(b.cid)
      const read = readList(
        { root: CID.parse(l.root), count: l.count },
        blockSource(l.blocks),
        key === 'finalized',
      )
      expect(read.ok, key).toBe(true)
    }
  })
})

describe('invalid vectors', () => {
  const cases = vectors.invalid.map((v) => [v.name, v] as const)

  it.each(cases)('%s is rejected with its code', (_name, v: InvalidVector) => {
    const r = decodeRecord(hexToBytes(v.bytes), {
      federation: federationFor(v),
      ...(v.blocks ? { blocks: blockSource(v.blocks) } : {}),
    })
    expect(r.ok).toBe(false)
    if (r.ok) return
    expect(r.code).toBe(v.expectedCode)
    expect(r.path).toBe(v.path)
  })

  it('sig-invalid vectors are rejected by node:crypto too', () => {
    const sigInvalid = vectors.invalid.filter((v) => v.expectedCode === 'sig-invalid')
    expect(sigInvalid.length).toBeGreaterThan(0)
    for (const v of sigInvalid) {
      const decoded = decodeStrict(hexToBytes(v.bytes))
      if (!decoded.ok) throw new Error(`${v.name}: ${decoded.code}`)
      const record = decoded.value as SignedRecord
      expect(nodeCrypto.verify(record.sig, signingBytes(record), keyOf(record.author)), v.name).toBe(false)
      expect(zip215.verify(record.sig, signingBytes(record), keyOf(record.author)), v.name).toBe(false)
    }
  })
})
