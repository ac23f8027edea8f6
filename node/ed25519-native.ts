/**
 * Ed25519 through node:crypto (OpenSSL), for the node and the CLI.
 *
 * Why: OpenSSL verifies about 15× and signs about 17× faster than
 * @noble/curves on the machines we measured (SPEC §4.2),
 * and a node verifies every record it receives.
 *
 * Why it is safe: the protocol's rule is ZIP-215 (protocol/ed25519.ts), and
 * OpenSSL's rule is not ZIP-215 — it rejects some signatures ZIP-215
 * accepts, and which ones depends on the OpenSSL build (speccheck cases 4,
 * 5, 9, 10 with Node 20 and 22; all but case 3 with Node 24). OpenSSL's
 * *accept* set is a subset of ZIP-215's (test/unit/protocol/ed25519.test.ts checks
 * this on the 12 edge cases), so `fastEd25519` takes OpenSSL's "valid" as
 * final and hands every "invalid" to the ZIP-215 reference. Honest
 * signatures take the fast path; only invalid or crafted ones pay for noble.
 * `nativeEd25519` alone is NOT the protocol's rule: use it only wrapped.
 *
 * Invariants: `verify` never throws and returns false for malformed input;
 * signatures are identical to noble's (Ed25519 signing is deterministic).
 * Public and private KeyObjects are cached in bounded maps (cleared when
 * full), because building a KeyObject costs about as much as a verification.
 */
import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto'
import { type Ed25519Backend, type Ed25519Signer, withZip215Fallback } from '../protocol/ed25519.js'

/** DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow. */
export const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
/** DER prefix of an Ed25519 PKCS#8 PrivateKeyInfo (RFC 8410); the 32-byte seed follows. */
export const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

const PUBLIC_CACHE_MAX = 10_000
const PRIVATE_CACHE_MAX = 1_000

const publicKeys = new Map<string, KeyObject>()
const privateKeys = new Map<string, KeyObject>()

/** The SPKI DER encoding of a raw 32-byte Ed25519 public key. */
export function spkiDer(publicKey: Uint8Array): Buffer {
  return Buffer.concat([SPKI_PREFIX, publicKey])
}

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  const id = Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.byteLength).toString('hex')
  let key = publicKeys.get(id)
  if (key === undefined) {
    key = createPublicKey({ key: spkiDer(publicKey), format: 'der', type: 'spki' })
    if (publicKeys.size >= PUBLIC_CACHE_MAX) publicKeys.clear()
    publicKeys.set(id, key)
  }
  return key
}

function privateKeyObject(secretKey: Uint8Array): KeyObject {
  const id = Buffer.from(secretKey.buffer, secretKey.byteOffset, secretKey.byteLength).toString('hex')
  let key = privateKeys.get(id)
  if (key === undefined) {
    key = createPrivateKey({
      key: Buffer.concat([PKCS8_PREFIX, secretKey]),
      format: 'der',
      type: 'pkcs8',
    })
    if (privateKeys.size >= PRIVATE_CACHE_MAX) privateKeys.clear()
    privateKeys.set(id, key)
  }
  return key
}

/** OpenSSL's verification rule, raw. Not the protocol's rule on its own: see `fastEd25519`. */
export const nativeEd25519: Ed25519Backend = {
  name: 'node-crypto',
  verify(signature, message, publicKey) {
    if (!(signature instanceof Uint8Array) || !(message instanceof Uint8Array)) return false
    if (!(publicKey instanceof Uint8Array) || signature.length !== 64 || publicKey.length !== 32) return false
    try {
      return verify(null, message, publicKeyObject(publicKey), signature)
    } catch {
      return false
    }
  },
}

/** Signs with OpenSSL; the signature is byte-identical to noble's for the same key and message. */
export const nativeSigner: Ed25519Signer = {
  name: 'node-crypto',
  sign(message, secretKey) {
    if (secretKey.length !== 32) throw new TypeError('an Ed25519 secret key is 32 bytes')
    // Copy out of Node's buffer pool into a plain Uint8Array of exactly 64 bytes.
    return new Uint8Array(sign(null, message, privateKeyObject(secretKey)))
  },
}

/** The protocol's rule (ZIP-215) at OpenSSL's speed: OpenSSL accepts are final, rejects go to noble. */
export const fastEd25519: Ed25519Backend = withZip215Fallback(nativeEd25519)
