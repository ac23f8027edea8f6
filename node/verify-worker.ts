/**
 * A worker thread that checks record bytes the way `decodeRecord` does — canonical encoding,
 * schema, federation, signature — and answers each request with a verdict per record (null for
 * valid, else the rejection's code and message), in the order of the requests. See
 * verify-pool.ts for why.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { CID } from 'multiformats/cid'
import { decodeRecord } from '../protocol/record.js'
import { fastEd25519 } from './ed25519-native.js'
import { nativeSha256 as sha256 } from './sha256.js'

export interface VerifyRequest {
  readonly records: readonly Uint8Array[]
}

export type VerifyVerdict = null | { readonly code: string; readonly message: string; readonly path?: string }

/** A verdict per record of the request, in order. */
export type VerifyAnswer = readonly VerifyVerdict[]

const federation = CID.parse((workerData as { federation: string }).federation)

parentPort!.on('message', (request: VerifyRequest) => {
  const verdicts = request.records.map((bytes): VerifyVerdict => {
    try {
      const d = decodeRecord(bytes, { federation, ed25519: fastEd25519, sha256 })
      return d.ok ? null : { code: d.code, message: d.message, ...(d.path ? { path: d.path } : {}) }
    } catch (e) {
      return { code: 'internal', message: `validation failed unexpectedly: ${(e as Error).message}` }
    }
  })
  parentPort!.postMessage(verdicts satisfies VerifyAnswer)
})
