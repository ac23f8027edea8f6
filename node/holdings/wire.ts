/**
 * What holding announcements and bindings share on the wire (docs/adr/0029-holding-announcements.md):
 * strict DAG-CBOR within their own small limits (protocol/cbor.ts), signed bytes as a domain
 * string followed by the unsigned map, exact key sets, and the checks on peer ids and gateway
 * URLs. These are not records: they never enter records.log or the fold.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import {
  concatBytes,
  decodeStrict,
  encode,
  RECORD_SCAN_LIMITS,
  type ScanLimits,
} from '../../protocol/index.js'
import { fastEd25519 } from '../ed25519-native.js'

/** Bytes of one encoded announcement or binding, signature included. */
export const MAX_HOLDINGS_MESSAGE_BYTES = 2 * 1024
/** Gateways one announcement may name, and the longest gateway URL. */
export const MAX_GATEWAYS = 8
export const MAX_GATEWAY_URL_CHARS = 200
/** Peers one binding may name. */
export const MAX_BOUND_PEERS = 16
/** The longest peer id text (an Ed25519 peer id is 52 characters). */
const MAX_PEER_ID_CHARS = 128

export const HOLDINGS_SCAN_LIMITS: ScanLimits = {
  ...RECORD_SCAN_LIMITS,
  maxBytes: MAX_HOLDINGS_MESSAGE_BYTES,
  maxDepth: 2,
  maxStringBytes: MAX_GATEWAY_URL_CHARS * 4,
  maxBytesLength: 64,
  maxCollectionItems: MAX_BOUND_PEERS,
}

/**
 * Why a message is refused. The first four are faults no honest peer commits (gossip rejects,
 * lowering the sender's score); the rest are ignored (an honest peer may relay them: its clock,
 * its state or its store differs from ours).
 */
export type HoldingsRefusal =
  | 'oversize'
  | 'malformed'
  | 'federation'
  | 'signature'
  | 'not-member'
  | 'unknown-weights'
  | 'expired'
  | 'future'
  | 'stale'
  | 'duplicate'
  | 'peer-full'
  | 'store-full'

export const FAULTS: ReadonlySet<HoldingsRefusal> = new Set([
  'oversize',
  'malformed',
  'federation',
  'signature',
])

export type Decoded<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reason: HoldingsRefusal; readonly message: string }

/** A check the caller runs on a decoded message before its signature is verified: a refusal, or undefined. */
export type Precheck<T> = (value: T) => Decoded<T> | undefined

export function refused<T>(reason: HoldingsRefusal, message: string): Decoded<T> {
  return { ok: false, reason, message }
}

/** The bytes a signature covers: the domain string, then the DAG-CBOR of the map without `sig`. */
export function signedBytes(domain: Uint8Array, unsigned: Record<string, unknown>): Uint8Array {
  return concatBytes(domain, encode(unsigned))
}

/** The map in `bytes`, when they are canonical DAG-CBOR within the size limit and its keys are exactly `keys`. */
export function decodeMap(bytes: Uint8Array, keys: readonly string[]): Decoded<Record<string, unknown>> {
  if (bytes.length > MAX_HOLDINGS_MESSAGE_BYTES)
    return refused('oversize', `a holdings message is at most ${MAX_HOLDINGS_MESSAGE_BYTES} bytes`)
  const decoded = decodeStrict(bytes, HOLDINGS_SCAN_LIMITS)
  if (!decoded.ok) return refused('malformed', `not canonical DAG-CBOR: ${decoded.message}`)
  const value = decoded.value
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array)
    return refused('malformed', 'a holdings message is a map')
  const present = Object.keys(value).sort()
  const wanted = [...keys].sort()
  if (present.length !== wanted.length || present.some((k, i) => k !== wanted[i]))
    return refused('malformed', `the map's keys must be exactly ${wanted.join(', ')}`)
  return { ok: true, value: value as Record<string, unknown> }
}

export function isCid(v: unknown): v is CID {
  return CID.asCID(v) !== null
}

export function isTime(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0
}

export function isSignature(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array && v.length === 64
}

/** The raw Ed25519 public key a peer id embeds, when `text` is an Ed25519 peer id in its canonical form. */
export function peerPublicKey(text: unknown): Uint8Array | undefined {
  if (typeof text !== 'string' || text.length === 0 || text.length > MAX_PEER_ID_CHARS) return undefined
  try {
    const id = peerIdFromString(text)
    if (id.type !== 'Ed25519' || id.toString() !== text) return undefined
    return id.publicKey.raw
  } catch {
    return undefined
  }
}

/**
 * A gateway URL as SPEC §15.2 spells it, by its characters rather than by a URL parser (parsers
 * differ on `http://@host`, `http://host/?` and `https:///x`, and a verifier that disagrees would
 * lower an honest peer's gossip score): `http://` or `https://`, a host name or bracketed IPv6
 * literal, an optional port, an optional path; printable ASCII only (so characters are bytes).
 */
const GATEWAY_URL = /^https?:\/\/(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?(?:\/[!-~]*)?$/
/** What would start user information, a query or a fragment, or read as a separator. */
const NOT_IN_GATEWAY_URL = /[@?#\\]/

/**
 * Whether `url` may be announced as a gateway: at most 200 characters, no credentials, query or
 * fragment (a base URL that `/ipfs/<cid>` is appended to).
 */
export function isGatewayUrl(url: unknown): url is string {
  return (
    typeof url === 'string' &&
    url.length <= MAX_GATEWAY_URL_CHARS &&
    GATEWAY_URL.test(url) &&
    !NOT_IN_GATEWAY_URL.test(url)
  )
}

/** Whether `sig` is `publicKey`'s Ed25519 signature of `message` (ZIP-215, protocol/ed25519.ts). */
export function verifies(sig: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  return fastEd25519.verify(sig, message, publicKey)
}
