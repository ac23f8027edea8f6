/**
 * Holding announcements and bindings for the holdings unit tests: signed properly, or signed over
 * fields that break a bound (the format's own signer refuses those).
 */
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { HOLDING_DOMAIN } from '../../node/holdings/announcement.js'
import { BINDING_DOMAIN } from '../../node/holdings/binding.js'
import { signedBytes } from '../../node/holdings/wire.js'
import { generatePeerKey } from '../../node/p2p.js'
import { type CID, cidOfBlock, encode, type Signer } from '../../protocol/index.js'

export const FEDERATION: CID = cidOfBlock(encode({ federation: 'holdings-unit' }))
export const OTHER_FEDERATION: CID = cidOfBlock(encode({ federation: 'someone-else' }))

export function weightsCid(n: number): CID {
  return cidOfBlock(encode({ weights: n }))
}

export interface TestPeer {
  readonly key: PrivateKey
  readonly id: string
}

export async function testPeer(): Promise<TestPeer> {
  const key = await generatePeerKey()
  return { key, id: peerIdFromPrivateKey(key).toString() }
}

/** The fields of an announcement by `peer`, overridable one by one. */
export function announcementFields(
  peer: TestPeer,
  over: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    federation: FEDERATION,
    peer: peer.id,
    weights: weightsCid(1),
    gateways: ['http://127.0.0.1:7070'],
    verifiedAt: 1_000,
    at: 2_000,
    withdrawn: false,
    ...over,
  }
}

/** `fields` signed by `key` over the holding domain, whatever they hold, encoded with `sig`. */
export async function rawAnnouncement(fields: Record<string, unknown>, key: PrivateKey): Promise<Uint8Array> {
  const sig = await key.sign(signedBytes(HOLDING_DOMAIN, fields))
  return encode({ ...fields, sig })
}

/** `fields` signed by `signer` over the binding domain, whatever they hold, encoded with `sig`. */
export function rawBinding(fields: Record<string, unknown>, signer: Signer): Uint8Array {
  return encode({ ...fields, sig: signer.sign(signedBytes(BINDING_DOMAIN, fields)) })
}
