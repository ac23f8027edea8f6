/**
 * Cross-origin reads of the gateway's `/ipfs/` routes (gateway.ts): any origin may read public,
 * content-addressed blocks, as browser and service-worker IPFS clients need; no other route of the
 * node says anything to other origins (docs/adr/0027-gateway-ranges-cors-defaults.md).
 */
import type { FastifyInstance, FastifyReply } from 'fastify'

/**
 * The response headers a cross-origin script may read beyond the safelisted ones: those the
 * gateway sends, and those the path-gateway conformance suite expects to see listed.
 */
const EXPOSED = [
  'Content-Disposition',
  'Content-Length',
  'Content-Location',
  'Content-Range',
  'Content-Type',
  'Etag',
  'Ipfs-Uri',
  'X-Chunked-Output',
  'X-Content-Type-Options',
  'X-Ipfs-Path',
  'X-Ipfs-Roots',
  'X-Stream-Output',
].join(', ')

const METHODS = 'GET, HEAD, OPTIONS'

/** The request headers a cross-origin client may send: content negotiation, caching, ranges. */
const REQUEST_HEADERS = [
  'Accept',
  'Cache-Control',
  'Content-Type',
  'If-None-Match',
  'Range',
  'User-Agent',
  'X-Requested-With',
].join(', ')

/**
 * On every answer of a gateway route, errors included: a browser client must be able to read a
 * 404 as a 404. No credentials are involved, so `*` is exact and no `Vary: Origin` is needed.
 */
export function allowAnyOrigin(reply: FastifyReply): void {
  reply.header('Access-Control-Allow-Origin', '*')
  reply.header('Access-Control-Allow-Methods', METHODS)
  reply.header('Access-Control-Allow-Headers', REQUEST_HEADERS)
  reply.header('Access-Control-Expose-Headers', EXPOSED)
}

/**
 * `OPTIONS` on the gateway's `urls`: the preflight a browser sends before a request with headers
 * beyond the safelisted ones (a `Range`, an `If-None-Match`). It says only what may be asked; the
 * content is not looked at.
 */
export function registerPreflight(app: FastifyInstance, urls: readonly string[]): void {
  for (const url of urls) {
    app.options(url, async (_req, reply) => {
      allowAnyOrigin(reply)
      // A day: the answer depends on nothing but this code.
      reply.header('Access-Control-Max-Age', '86400')
      reply.header('Allow', METHODS)
      return reply.code(204).send()
    })
  }
}
