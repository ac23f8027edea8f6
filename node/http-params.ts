/** Parameters of HTTP requests read the same way by every route. */
import { CID } from 'multiformats/cid'
import { NodeError } from './errors.js'

/** A CID from a path or query parameter; 400 `bad-cid` (with the first 80 characters) otherwise. */
export function parseCid(text: string): CID {
  try {
    return CID.parse(text)
  } catch {
    throw new NodeError('bad-cid', `not a CID: ${text.slice(0, 80)}`, { status: 400 })
  }
}
