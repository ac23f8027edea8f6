/**
 * The admin bearer token, checked in constant time, and the admin's own routes (`POST
 * /admin/dial`). Writes that do not authenticate themselves by signature need the token.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { MIN_TOKEN_CHARS } from '../config.js'
import { NodeError } from '../errors.js'

/** Throws `NodeError('unauthorized')` unless the request carries the admin token. */
export type RequireAdmin = (req: FastifyRequest) => void

/**
 * The check of `adminToken`: the token, or a function giving it as it is now (undefined while
 * there is no valid token: every admin request is refused then).
 */
export function adminCheck(adminToken: string | (() => string | undefined)): RequireAdmin {
  const currentToken = typeof adminToken === 'function' ? adminToken : () => adminToken
  const digest = (token: string) => createHash('sha256').update(token).digest()
  return (req) => {
    const header = req.headers.authorization ?? ''
    const given = header.startsWith('Bearer ') ? header.slice(7).trim() : ''
    const want = currentToken()
    // Digests make both sides 32 bytes: the comparison takes as long whatever was sent. An empty
    // or short token never passes, on either side (two empty tokens once compared equal).
    const valid =
      want !== undefined &&
      want.length >= MIN_TOKEN_CHARS &&
      given.length > 0 &&
      timingSafeEqual(digest(given), digest(want))
    if (!valid) {
      throw new NodeError(
        'unauthorized',
        'this endpoint needs the admin token (Authorization: Bearer <HOME/api.token>)',
        { status: 401 },
      )
    }
  }
}

export interface AdminRoutesOptions {
  readonly requireAdmin: RequireAdmin
  dial(multiaddr: string): Promise<void>
}

/** `POST /admin/dial {multiaddr}`: the node dials a peer. */
export function registerAdminRoutes(app: FastifyInstance, options: AdminRoutesOptions): void {
  app.post('/admin/dial', async (req) => {
    options.requireAdmin(req)
    const body = req.body as { multiaddr?: unknown } | undefined
    if (!body || typeof body.multiaddr !== 'string')
      throw new NodeError('bad-request', 'send {"multiaddr": "/ip4/…/tcp/…/p2p/…"}', { status: 400 })
    await options.dial(body.multiaddr)
    return { ok: true }
  })
}
