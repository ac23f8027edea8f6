/**
 * Signed bytes and identities of records (SPEC.md §4.2). One function,
 * `signingBytes`, feeds signing, verification and genesis co-signatures:
 *
 *     "allmende/record/v1\n" ‖ dagcbor(record without sig and cosigs)
 *
 * The federation id is the CID of the same unsigned genesis, so it is known
 * before anyone signs and co-signing does not change it.
 */
import { base58btc } from 'multiformats/bases/base58'
import type { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { concatBytes, u64be, utf8 } from './bytes.js'
import { encode } from './cbor.js'
import { cidOfBlock } from './cid.js'
import { type Did, didFromPublicKey } from './did.js'
import { type Ed25519Signer, nobleSigner, publicKeyOf } from './ed25519.js'
import type { Kind, SignedRecord, UnsignedRecord } from './types.js'

export const RECORD_DOMAIN = utf8.encode('allmende/record/v1\n')
/**
 * Upload statements are not records: their version is the one in this domain string (SPEC.md §7).
 * Version 1 (`"allmende/upload/v1\n" ‖ root ‖ u64be(at) ‖ u64be(size)`) bound no federation,
 * node or nonce; nodes refuse it.
 */
export const UPLOAD_STATEMENT_VERSION = 2
export const UPLOAD_DOMAIN = utf8.encode(`allmende/upload/v${UPLOAD_STATEMENT_VERSION}\n`)
/** The length of an upload statement's nonce: 128 random bits, never reused. */
export const UPLOAD_NONCE_BYTES = 16

/** Drops `sig` and `cosigs`, whatever else the value holds. */
export function unsignedPart<K extends Kind>(record: UnsignedRecord<K> | SignedRecord<K>): UnsignedRecord<K> {
  const { sig: _sig, cosigs: _cosigs, ...rest } = record as SignedRecord<K>
  return rest as UnsignedRecord<K>
}

export function signingBytes(record: UnsignedRecord | SignedRecord): Uint8Array {
  return concatBytes(RECORD_DOMAIN, encode(unsignedPart(record)))
}

/** The federation id: CID of the genesis without `sig` and `cosigs`. */
export function federationIdOf(genesis: UnsignedRecord<'genesis'> | SignedRecord<'genesis'>): CID {
  return cidOfBlock(encode(unsignedPart(genesis)))
}

/** What a publisher signs to have one node store one upload of weights (SPEC.md §7). */
export interface UploadStatement {
  /** The federation id (§4.3). */
  readonly federation: CID
  /** The receiving node's libp2p peer id as multihash bytes (`peerIdBytes`). */
  readonly node: Uint8Array
  /** The UnixFS root of the upload. */
  readonly root: CID
  /** Signing time, ms since the epoch. */
  readonly at: number
  /** The logical size: every file's bytes read through the DAG, a block linked N times counted N times. */
  readonly size: number
  /** `UPLOAD_NONCE_BYTES` random bytes, fresh for every statement. */
  readonly nonce: Uint8Array
}

/**
 * The bytes a publisher signs (SPEC.md §7):
 * `"allmende/upload/v2\n" ‖ federation CID ‖ node peer id multihash ‖ root CID ‖ u64be(at) ‖
 * u64be(size) ‖ nonce`. CIDs and multihashes carry their own lengths, so the bytes parse one way.
 */
export function uploadStatementBytes(s: UploadStatement): Uint8Array {
  if (s.nonce.length !== UPLOAD_NONCE_BYTES)
    throw new TypeError(`an upload statement's nonce is ${UPLOAD_NONCE_BYTES} bytes`)
  for (const [name, n] of [
    ['at', s.at],
    ['size', s.size],
  ] as const)
    if (!Number.isSafeInteger(n) || n < 0)
      throw new TypeError(`an upload statement's ${name} is a whole number`)
  // Throws unless the bytes are exactly one multihash: the node field must be self-delimiting.
  Digest.decode(s.node)
  return concatBytes(
    UPLOAD_DOMAIN,
    s.federation.bytes,
    s.node,
    s.root.bytes,
    u64be(s.at),
    u64be(s.size),
    s.nonce,
  )
}

/**
 * The multihash bytes of a libp2p peer id in its usual text form (base58btc, `12D3KooW…` or
 * `Qm…`), or undefined when the text is not one.
 */
export function peerIdBytes(text: string): Uint8Array | undefined {
  if (text.length === 0 || text.length > 128) return undefined
  try {
    const bytes = base58btc.baseDecode(text)
    Digest.decode(bytes)
    return bytes
  } catch {
    return undefined
  }
}

/** A member's key pair, ready to sign. Created once per key (deriving the public key is slow). */
export interface Signer {
  readonly did: Did
  readonly publicKey: Uint8Array
  sign(message: Uint8Array): Uint8Array
}

export function createSigner(secretKey: Uint8Array, backend: Ed25519Signer = nobleSigner): Signer {
  if (secretKey.length !== 32) throw new TypeError('an Ed25519 secret key is 32 bytes')
  const sk = Uint8Array.from(secretKey)
  const publicKey = publicKeyOf(sk)
  return Object.freeze({
    did: didFromPublicKey(publicKey),
    publicKey,
    sign: (message: Uint8Array) => backend.sign(message, sk),
  })
}
