/** The gateway's two kinds of failure (gateway.ts says how each is answered). */
import type { CID } from 'multiformats/cid'

export class GatewayError extends Error {
  override name = 'GatewayError'
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

/** Thrown inside the CAR walk; the response is cut (headers are already sent). */
export class WalkError extends Error {
  override name = 'WalkError'
  constructor(
    readonly code: 'block-not-found' | 'block-not-pinned' | 'block-invalid' | 'block-too-large',
    readonly cid: CID,
    message: string,
  ) {
    super(message)
  }
}
