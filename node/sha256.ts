/** sha2-256 through node:crypto (OpenSSL): the node's one implementation, for record CIDs and sync ids. */
import { createHash } from 'node:crypto'

export const nativeSha256 = (bytes: Uint8Array): Uint8Array => createHash('sha256').update(bytes).digest()
