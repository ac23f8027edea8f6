/**
 * The messages of the sync stream, one per frame: a tag byte, then the
 * payload (protocol/SPEC.md §14.2 gives the tags and shapes).
 *
 * `decodeMessage` takes untrusted bytes and throws only `SyncError`
 * (`sync-malformed`), for anything it does not recognise exactly. Blocks are
 * not verified here: the receiver checks each against the CID it asked for.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import type { Uint8ArrayList } from 'uint8arraylist'
import { isRecordCid } from '../../protocol/cid.js'
import { LIMITS } from '../../protocol/limits.js'
import { malformed } from './errors.js'

/** CIDs one get may ask for. */
export const MAX_GET_CIDS = 1024
/** Blocks one blocks message may carry (their bytes are bounded by the frame size). */
export const MAX_BLOCKS = 1024
/** Largest block: a list block, the largest thing a get can ask for. */
export const MAX_BLOCK_BYTES = LIMITS.maxListBlockBytes
const MAX_CODE_LENGTH = 64
const CODE = /^[a-z][a-z0-9-]*$/

const TAG_RECONCILE = 0x01
const TAG_GET = 0x02
const TAG_BLOCKS = 0x03
const TAG_DONE = 0x04
const TAG_ERROR = 0x05

export type SyncMessage =
  | { type: 'reconcile'; payload: Uint8Array }
  | { type: 'get'; cids: CID[] }
  | { type: 'blocks'; blocks: Uint8Array[] }
  | { type: 'done' }
  | { type: 'error'; code: string }

function tagged(tag: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + payload.length)
  out[0] = tag
  out.set(payload, 1)
  return out
}

/** The bytes of a message (one frame's payload). Throws RangeError for a message this module would reject. */
export function encodeMessage(message: SyncMessage): Uint8Array {
  switch (message.type) {
    case 'reconcile':
      return tagged(TAG_RECONCILE, message.payload)
    case 'get': {
      const { cids } = message
      if (cids.length < 1 || cids.length > MAX_GET_CIDS)
        throw new RangeError(`get names 1..${MAX_GET_CIDS} CIDs`)
      if (!cids.every(isRecordCid)) throw new RangeError('get names record or list CIDs only')
      return tagged(TAG_GET, dagCbor.encode(cids.map((c) => c.bytes)))
    }
    case 'blocks': {
      const { blocks } = message
      if (blocks.length > MAX_BLOCKS) throw new RangeError(`blocks carries at most ${MAX_BLOCKS} blocks`)
      if (!blocks.every((b) => b.length >= 1 && b.length <= MAX_BLOCK_BYTES)) {
        throw new RangeError(`each block has 1..${MAX_BLOCK_BYTES} bytes`)
      }
      return tagged(TAG_BLOCKS, dagCbor.encode(blocks))
    }
    case 'done':
      return Uint8Array.of(TAG_DONE)
    case 'error':
      if (!validCode(message.code)) throw new RangeError('error code must be a short kebab-case word')
      return tagged(TAG_ERROR, dagCbor.encode({ code: message.code }))
  }
}

/** The message in one frame's payload. Throws `SyncError('sync-malformed')` on anything else. */
export function decodeMessage(frame: Uint8Array | Uint8ArrayList): SyncMessage {
  const bytes = frame instanceof Uint8Array ? frame : frame.subarray()
  if (bytes.length === 0) throw malformed('empty sync message')
  const payload = bytes.subarray(1)
  switch (bytes[0]) {
    case TAG_RECONCILE:
      if (payload.length === 0) throw malformed('empty reconcile message')
      return { type: 'reconcile', payload }
    case TAG_GET: {
      const list = byteStrings(cbor(payload), 'get', MAX_GET_CIDS)
      if (list.length === 0) throw malformed('get names no CID')
      return { type: 'get', cids: list.map(recordCid) }
    }
    case TAG_BLOCKS: {
      const blocks = byteStrings(cbor(payload), 'blocks', MAX_BLOCKS)
      for (const b of blocks) {
        if (b.length === 0 || b.length > MAX_BLOCK_BYTES) throw malformed(`block of ${b.length} bytes`)
      }
      return { type: 'blocks', blocks }
    }
    case TAG_DONE:
      if (payload.length !== 0) throw malformed('bytes after done')
      return { type: 'done' }
    case TAG_ERROR: {
      const value = cbor(payload)
      if (
        typeof value !== 'object' ||
        value === null ||
        Array.isArray(value) ||
        value instanceof Uint8Array
      ) {
        throw malformed('error payload is not a map')
      }
      const keys = Object.keys(value)
      const code = (value as { code?: unknown }).code
      if (keys.length !== 1 || keys[0] !== 'code' || !validCode(code))
        throw malformed('error payload is not {code}')
      return { type: 'error', code }
    }
    default:
      throw malformed(`unknown sync message tag ${bytes[0]}`)
  }
}

function validCode(code: unknown): code is string {
  return typeof code === 'string' && code.length <= MAX_CODE_LENGTH && CODE.test(code)
}

function cbor(bytes: Uint8Array): unknown {
  try {
    return dagCbor.decode(bytes)
  } catch (e) {
    // Every failure of the decoder is a fault in the peer's bytes.
    throw malformed(`bad DAG-CBOR: ${(e as Error)?.message ?? String(e)}`)
  }
}

function byteStrings(value: unknown, what: string, max: number): Uint8Array[] {
  if (!Array.isArray(value)) throw malformed(`${what} payload is not an array`)
  if (value.length > max) throw malformed(`${what} lists ${value.length} entries, more than ${max}`)
  for (const v of value) if (!(v instanceof Uint8Array)) throw malformed(`${what} entry is not a byte string`)
  return value as Uint8Array[]
}

function recordCid(bytes: Uint8Array): CID {
  let cid: CID
  try {
    cid = CID.decode(bytes)
  } catch {
    throw malformed('get entry is not a CID')
  }
  if (!isRecordCid(cid)) throw malformed('get entry is not a record or list CID')
  return cid
}
