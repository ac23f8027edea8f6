/**
 * Content identifiers (SPEC.md §3.2). Records and list blocks are addressed
 * by CIDv1 with the dag-cbor codec and a sha2-256 multihash. "CID order"
 * everywhere is the lexicographic order of a CID's binary form — one helper,
 * `compareCids`, so no two places can disagree.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { compareBytes } from './bytes.js'
import { DAG_CBOR_CODE } from './cbor.js'

export const SHA2_256_CODE = 0x12
export const IDENTITY_CODE = 0x00
export const RAW_CODE = 0x55
/** dag-pb: UnixFS directories and file nodes. */
export const DAG_PB_CODE = 0x70

export { CID }

/** The CID of a DAG-CBOR block. */
/** CIDv1 (0x01), dag-cbor (0x71), sha2-256 (0x12), 32 bytes (0x20). */
const RECORD_CID_PREFIX = Uint8Array.of(0x01, DAG_CBOR_CODE, SHA2_256_CODE, 0x20)

/** A sha2-256 implementation: @noble/hashes by default; a node may pass a native one. */
export type Sha256 = (bytes: Uint8Array) => Uint8Array

/**
 * The map key (see `cidKey`) of a DAG-CBOR block's CID, without making the CID: a node holds
 * one per record, and a CID object with its multihash and byte views costs far more.
 */
export function blockKey(bytes: Uint8Array, hash: Sha256 = sha256): string {
  keyScratch.set(hash(bytes), 4)
  // One flat string (a `+=` loop would leave a chain of 32 cons strings behind each key).
  return String.fromCharCode.apply(null, keyScratch as unknown as number[])
}
const keyScratch = Uint8Array.from([...RECORD_CID_PREFIX, ...new Uint8Array(32)])

/** The CID a `cidKey` was made from. */
export function cidFromKey(key: string): CID {
  const bytes = new Uint8Array(key.length)
  for (let i = 0; i < key.length; i++) bytes[i] = key.charCodeAt(i)
  const cid = CID.decode(bytes)
  keys.set(cid, key)
  return cid
}

export function cidOfBlock(bytes: Uint8Array, hash: Sha256 = sha256): CID {
  // One 36-byte buffer that the CID, its multihash and its digest all view: a node holds one
  // of these per record, and three separate buffers would triple their memory.
  const out = new Uint8Array(36)
  out.set(RECORD_CID_PREFIX)
  out.set(hash(bytes), 4)
  return CID.decode(out)
}

/** A raw-codec CID over a sha2-256 digest (a UnixFS raw leaf). */
export function rawCidOfDigest(digest: Uint8Array): CID {
  return CID.createV1(RAW_CODE, Digest.create(SHA2_256_CODE, digest))
}

export function compareCids(a: CID, b: CID): number {
  return compareBytes(a.bytes, b.bytes)
}

/** True for a CIDv1 with the dag-cbor codec and a sha2-256 multihash: a record or list block id. */
export function isRecordCid(cid: CID): boolean {
  return (
    cid.version === 1 &&
    cid.code === DAG_CBOR_CODE &&
    cid.multihash.code === SHA2_256_CODE &&
    cid.multihash.size === 32
  )
}

/**
 * A map key for a CID: its bytes as a binary string (one char per byte).
 * Much cheaper than the base32 text form on hot paths; not for display.
 */
export function cidKey(cid: CID): string {
  let key = keys.get(cid)
  if (key === undefined) {
    key = String.fromCharCode.apply(null, cid.bytes as unknown as number[])
    keys.set(cid, key)
  }
  return key
}

// CIDs are immutable and live as long as the records holding them: remember their keys.
const keys = new WeakMap<CID, string>()
