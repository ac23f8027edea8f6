/**
 * The weights wing's HTTP contract, shared by the node's routes and the clients that call them
 * (SPEC.md §7 for uploads; specs.ipfs.tech http-gateways/trustless-gateway for the media types).
 */

/** A single raw block (trustless gateway). */
export const RAW_TYPE = 'application/vnd.ipld.raw'
/** A CARv1 stream: the gateway's answers, a fetch's request, an upload's body. */
export const CAR_TYPE = 'application/vnd.ipld.car'
/** Content-addressed answers never change: cached for a year, never revalidated. */
export const IMMUTABLE = 'public, max-age=29030400, immutable'

/** The headers of an upload statement (SPEC.md §7). */
export const UPLOAD_HEADERS = {
  version: 'allmende-upload-version',
  author: 'allmende-upload-author',
  federation: 'allmende-upload-federation',
  node: 'allmende-upload-node',
  root: 'allmende-upload-root',
  at: 'allmende-upload-at',
  size: 'allmende-upload-size',
  nonce: 'allmende-upload-nonce',
  signature: 'allmende-upload-signature',
} as const
