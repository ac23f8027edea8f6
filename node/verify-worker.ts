/**
 * A worker thread that checks record bytes the way `decodeRecord` does —
 * canonical encoding, schema, federation, signature — and answers with a
 * verdict per record (null for valid, else the rejection's code and
 * message). See verify-pool.ts for why.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { CID } from 'multiformats/cid'
import { decodeRecord } from '../protocol/record.js'
import { fastEd25519 } from './ed25519-native.js'
import { nativeSha256 as sha256 } from './sha256.js'

export interface VerifyRequest {
  readonly id: number
  readonly records: readonly Uint8Array[]
}

export type VerifyVerdict = null | { readonly code: string; readonly message: string; readonly path?: string }

export interface VerifyAnswer {
  readonly id: number
  readonly verdicts: readonly VerifyVerdict[]
}

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
  parentPort!.postMessage({ id: request.id, verdicts } satisfies VerifyAnswer)
})
