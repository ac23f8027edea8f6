/**
 * A binding statement (docs/adr/0029-holding-announcements.md): a member names the peer ids of
 * its nodes, signed with its member key, so the replication report can say "held by member M".
 *
 *     {federation, member, peers, at, sig}
 *     sig = Ed25519(member key, "allmende/binding/v1\n" ‖ dagcbor(map without sig))
 *
 * `peers` is sorted and distinct (one encoding per set), at most 16; an empty list unbinds every
 * node. The latest `at` per member wins. Whether the member is one is the caller's check: it
 * needs the federation's current state.
 */
import type { CID } from 'multiformats/cid'
import { type Did, encode, parseDid, type Signer, utf8 } from '../../protocol/index.js'
import {
  type Decoded,
  decodeMap,
  isCid,
  isSignature,
  isTime,
  MAX_BOUND_PEERS,
  type Precheck,
  peerPublicKey,
  refused,
  signedBytes,
  verifies,
} from './wire.js'

export const BINDING_DOMAIN = utf8.encode('allmende/binding/v1\n')

export const BINDING_KEYS = ['federation', 'member', 'peers', 'at', 'sig'] as const

export interface Binding {
  readonly federation: CID
  /** The member's DID (did:key, Ed25519). */
  readonly member: Did
  /** Peer ids of the member's nodes, sorted, distinct. */
  readonly peers: readonly string[]
  /** When the member signed it (ms since the epoch). */
  readonly at: number
}

export interface SignedBinding extends Binding {
  readonly sig: Uint8Array
}

function unsignedMap(b: Binding): Record<string, unknown> {
  return { federation: b.federation, member: b.member, peers: [...b.peers], at: b.at }
}

/** The peers sorted and without repeats, as a binding lists them. */
export function canonicalPeers(peers: readonly string[]): string[] {
  return [...new Set(peers)].sort()
}

/** The signed binding's bytes; throws when `signer` is not the member or a bound is broken. */
export function signBinding(b: Binding, signer: Signer): Uint8Array {
  if (signer.did !== b.member) throw new TypeError('a binding is signed by the member it names')
  const bytes = encode({ ...unsignedMap(b), sig: signer.sign(signedBytes(BINDING_DOMAIN, unsignedMap(b))) })
  const check = shapeOf(bytes)
  if (!check.ok) throw new RangeError(`binding: ${check.message}`)
  return bytes
}

/**
 * The binding in `bytes`, checked as a verifier must: size, canonical encoding, exact keys, the
 * fields and bounds, the federation, the caller's `precheck` (cheap: membership, before any
 * signature is checked), then the member's signature. Time is the store's to judge.
 */
export function decodeBinding(
  bytes: Uint8Array,
  federation: CID,
  precheck: Precheck<SignedBinding> = () => undefined,
): Decoded<SignedBinding> {
  const shape = shapeOf(bytes)
  if (!shape.ok) return shape
  const b = shape.value
  if (!b.federation.equals(federation))
    return refused('federation', `a binding of federation ${b.federation}, not ours`)
  const early = precheck(b)
  if (early) return early
  const key = parseDid(b.member)
  if (!key.ok || !verifies(b.sig, signedBytes(BINDING_DOMAIN, unsignedMap(b)), key.value))
    return refused('signature', `the signature is not that of member ${b.member}`)
  return shape
}

function shapeOf(bytes: Uint8Array): Decoded<SignedBinding> {
  const map = decodeMap(bytes, BINDING_KEYS)
  if (!map.ok) return map
  const v = map.value
  if (!isCid(v.federation)) return refused('malformed', 'federation is a CID')
  if (!parseDid(v.member).ok) return refused('malformed', 'member is an Ed25519 did:key')
  if (!isTime(v.at)) return refused('malformed', 'at is whole milliseconds since the epoch')
  const why = peersProblem(v.peers)
  if (why) return refused('malformed', why)
  if (!isSignature(v.sig)) return refused('malformed', 'sig is 64 bytes')
  return { ok: true, value: v as unknown as SignedBinding }
}

function peersProblem(peers: unknown): string | undefined {
  if (!Array.isArray(peers)) return 'peers is a list'
  if (peers.length > MAX_BOUND_PEERS) return `a binding names at most ${MAX_BOUND_PEERS} peers`
  if (!peers.every((p) => peerPublicKey(p) !== undefined)) return 'each peer is an Ed25519 peer id'
  const sorted = canonicalPeers(peers as string[])
  if (sorted.length !== peers.length || sorted.some((p, i) => p !== peers[i]))
    return 'peers are sorted and distinct'
  return undefined
}
