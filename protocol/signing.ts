/**
 * Signed bytes and identities of records (SPEC.md §4.2). One function,
 * `signingBytes`, feeds signing, verification and genesis co-signatures:
 *
 *     "allmende/record/v1\n" ‖ dagcbor(record without sig and cosigs)
 *
 * The federation id is the CID of the same unsigned genesis, so it is known
 * before anyone signs and co-signing does not change it.
 */
import type { CID } from 'multiformats/cid'
import { concatBytes, u64be, utf8 } from './bytes.js'
import { encode } from './cbor.js'
import { cidOfBlock } from './cid.js'
import { type Did, didFromPublicKey } from './did.js'
import { type Ed25519Signer, nobleSigner, publicKeyOf } from './ed25519.js'
import type { Kind, SignedRecord, UnsignedRecord } from './types.js'

export const RECORD_DOMAIN = utf8.encode('allmende/record/v1\n')
export const UPLOAD_DOMAIN = utf8.encode('allmende/upload/v1\n')

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

/**
 * The bytes a publisher signs to upload weights to a node (SPEC.md §7):
 * `"allmende/upload/v1\n" ‖ root CID bytes ‖ u64be(at) ‖ u64be(size)`.
 */
export function uploadStatementBytes(root: CID, at: number, size: number): Uint8Array {
  return concatBytes(UPLOAD_DOMAIN, root.bytes, u64be(at), u64be(size))
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
