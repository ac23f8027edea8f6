/**
 * A holding announcement (docs/adr/0029-holding-announcements.md): a node says, signed with its
 * libp2p peer key, that it holds the weights under a root whole and verified, and where its
 * gateways are; or, `withdrawn`, that it no longer does.
 *
 *     {federation, peer, weights, gateways, verifiedAt, at, withdrawn, sig}
 *     sig = Ed25519(peer key, "allmende/holding/v1\n" ‖ dagcbor(map without sig))
 *
 * `verifiedAt` is when the weights were last checked against a manifest; `at` is when this
 * announcement was signed (renewals move `at`, not `verifiedAt`): the latest `at` wins and the
 * TTL runs from it.
 */
import type { PrivateKey } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { encode, utf8 } from '../../protocol/index.js'
import {
  type Decoded,
  decodeMap,
  isCid,
  isGatewayUrl,
  isSignature,
  isTime,
  MAX_GATEWAYS,
  MAX_HOLDINGS_MESSAGE_BYTES,
  type Precheck,
  peerPublicKey,
  refused,
  signedBytes,
  verifies,
} from './wire.js'

export const HOLDING_DOMAIN = utf8.encode('allmende/holding/v1\n')

export const ANNOUNCEMENT_KEYS = [
  'federation',
  'peer',
  'weights',
  'gateways',
  'verifiedAt',
  'at',
  'withdrawn',
  'sig',
] as const

export interface HoldingAnnouncement {
  /** The federation id. */
  readonly federation: CID
  /** The announcing node's libp2p peer id (Ed25519), whose key signs. */
  readonly peer: string
  /** The UnixFS root of the weights held. */
  readonly weights: CID
  /** Base URLs of the node's trustless gateways; empty when withdrawn. */
  readonly gateways: readonly string[]
  /** When the weights were last verified against a manifest here (ms since the epoch). */
  readonly verifiedAt: number
  /** When this announcement was signed (ms since the epoch). */
  readonly at: number
  /** The node no longer holds the weights whole (a failed scrub, an unpin). */
  readonly withdrawn: boolean
}

export interface SignedAnnouncement extends HoldingAnnouncement {
  readonly sig: Uint8Array
}

function unsignedMap(a: HoldingAnnouncement): Record<string, unknown> {
  return {
    federation: a.federation,
    peer: a.peer,
    weights: a.weights,
    gateways: [...a.gateways],
    verifiedAt: a.verifiedAt,
    at: a.at,
    withdrawn: a.withdrawn,
  }
}

/** The signed announcement's bytes; throws when `key` is not the peer's or the result breaks a bound. */
export async function signAnnouncement(a: HoldingAnnouncement, key: PrivateKey): Promise<Uint8Array> {
  const publicKey = peerPublicKey(a.peer)
  if (!publicKey || key.type !== 'Ed25519' || !equalKeys(key.publicKey.raw, publicKey))
    throw new TypeError('a holding announcement is signed by the key of the peer it names')
  const sig = await key.sign(signedBytes(HOLDING_DOMAIN, unsignedMap(a)))
  const bytes = encode({ ...unsignedMap(a), sig })
  const check = shapeOf(bytes)
  if (!check.ok) throw new RangeError(`holding announcement: ${check.message}`)
  return bytes
}

function equalKeys(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/**
 * The announcement in `bytes`, checked as a verifier must: size, canonical encoding, exact keys,
 * every field's type and bound, the federation, the caller's `precheck` (cheap: are the weights
 * known, before any signature is checked), then the peer's signature. No clock: the store judges time.
 */
export function decodeAnnouncement(
  bytes: Uint8Array,
  federation: CID,
  precheck: Precheck<SignedAnnouncement> = () => undefined,
): Decoded<SignedAnnouncement> {
  const shape = shapeOf(bytes)
  if (!shape.ok) return shape
  const a = shape.value
  if (!a.federation.equals(federation))
    return refused('federation', `an announcement of federation ${a.federation}, not ours`)
  const early = precheck(a)
  if (early) return early
  const publicKey = peerPublicKey(a.peer) as Uint8Array
  if (!verifies(a.sig, signedBytes(HOLDING_DOMAIN, unsignedMap(a)), publicKey))
    return refused('signature', `the signature is not that of peer ${a.peer}`)
  return shape
}

/** Everything but the federation and the signature. */
function shapeOf(bytes: Uint8Array): Decoded<SignedAnnouncement> {
  const map = decodeMap(bytes, ANNOUNCEMENT_KEYS)
  if (!map.ok) return map
  const v = map.value
  if (!isCid(v.federation) || !isCid(v.weights))
    return refused('malformed', 'federation and weights are CIDs')
  if (!peerPublicKey(v.peer))
    return refused('malformed', 'peer must be an Ed25519 peer id in its usual text form')
  if (!isTime(v.verifiedAt) || !isTime(v.at) || v.verifiedAt > v.at)
    return refused('malformed', 'verifiedAt and at are whole milliseconds, verifiedAt no later than at')
  if (typeof v.withdrawn !== 'boolean') return refused('malformed', 'withdrawn is true or false')
  const why = gatewaysProblem(v.gateways, v.withdrawn)
  if (why) return refused('malformed', why)
  if (!isSignature(v.sig)) return refused('malformed', 'sig is 64 bytes')
  return { ok: true, value: v as unknown as SignedAnnouncement }
}

function gatewaysProblem(gateways: unknown, withdrawn: boolean): string | undefined {
  if (!Array.isArray(gateways)) return 'gateways is a list'
  if (withdrawn && gateways.length > 0) return 'a withdrawal names no gateways'
  if (gateways.length > MAX_GATEWAYS) return `at most ${MAX_GATEWAYS} gateways`
  if (!gateways.every(isGatewayUrl)) return 'each gateway is an http(s) base URL of at most 200 characters'
  if (new Set(gateways).size !== gateways.length) return 'a gateway is named once'
  return undefined
}

export { MAX_HOLDINGS_MESSAGE_BYTES }
