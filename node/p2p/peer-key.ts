/**
 * The node's peer key: an Ed25519 key in libp2p's protobuf form, which the
 * caller keeps in a 0600 file. It gives the node its peer id.
 */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'

/** A fresh Ed25519 peer key. */
export async function generatePeerKey(): Promise<PrivateKey> {
  return generateKeyPair('Ed25519')
}

/** The protobuf-marshalled private key (libp2p's format), for a 0600 file. */
export function peerKeyToBytes(key: PrivateKey): Uint8Array {
  return privateKeyToProtobuf(key)
}

/** Inverse of `peerKeyToBytes`; only Ed25519 keys are accepted. */
export function peerKeyFromBytes(bytes: Uint8Array): PrivateKey {
  const key = privateKeyFromProtobuf(bytes)
  if (key.type !== 'Ed25519') {
    throw new TypeError(`peer key: expected an Ed25519 key, got ${key.type}`)
  }
  return key
}
