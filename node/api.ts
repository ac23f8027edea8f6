/**
 * The HTTP API of a node (its records are SPEC.md §5, uploads §7, certificates §12), on Fastify: a well-kept framework with body limits,
 * content-type parsers and error hooks built in. Binds 127.0.0.1 by default. Every error is JSON
 * `{error: {code, message}}` with a 4xx/5xx status; a bad request never produces a stack trace.
 *
 * The routes, by resource: records (api/records.ts), views of the state (api/views.ts), weights
 * and the gateway (api/weights.ts), the admin's (api/admin.ts); here, the assembly, the node's own
 * status, and the guards every route shares. `POST /records` is open to anyone who can reach the
 * API (records authenticate themselves by signature); writes that are not self-authenticating
 * need the admin bearer token.
 */
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import { adminCheck, registerAdminRoutes } from './api/admin.js'
import { type ConfigRoutesOptions, registerConfigRoutes } from './api/config.js'
import { type GcRoutesOptions, registerGcRoutes } from './api/gc.js'
import { registerRecordRoutes } from './api/records.js'
import { fail } from './api/reply.js'
import { registerViewRoutes } from './api/views.js'
import { type ApiWeights, registerWeightsApi } from './api/weights.js'
import {
  clientKeyOf,
  fastifyLimits,
  frameworkError,
  installLimits,
  RECORDS_BODY_BYTES,
} from './api-limits.js'
import { type AuthThrottle, createAuthThrottle } from './auth-throttle.js'
import { API_LIMIT_DEFAULTS, type ApiLimits } from './config.js'
import { isNodeError, NodeError } from './errors.js'
import type { Logger } from './log.js'
import type { Metrics } from './metrics.js'
import type { RecordStore } from './store.js'
import type { ImportPolicy } from './weights/import-roots.js'

export type { ApiWeights }

export interface NodeStatus {
  peerId: string
  addresses: string[]
  federation: string
  steward: string | null
  records: number
  head: string
  /** The record version this node speaks, and the version the head state demands when higher (SPEC.md §5.1). */
  recordVersion: { speaks: number; required: number | null }
}

export interface ApiContext {
  readonly store: RecordStore
  readonly clock: () => number
  readonly log: Logger
  readonly metrics: Metrics
  /**
   * The admin token, or a function giving it as it is now (read again when its file changes;
   * undefined while the file holds no valid token: every admin request is refused then).
   */
  readonly adminToken: string | (() => string | undefined)
  /** Timeouts, caps and the body budget; API_LIMIT_DEFAULTS when absent. */
  readonly limits?: ApiLimits
  /** Where `/weights/import` may read; absent: nowhere (import-disabled). */
  readonly imports?: ImportPolicy
  /** The budget of failed signature checks per address (auth-throttle.ts); a default one if absent. */
  readonly authThrottle?: AuthThrottle
  status(): NodeStatus
  peers(): { id: string; addresses: string[] }[]
  /** Best-effort gossip of bytes already made durable. */
  publish(bytes: Uint8Array): Promise<void>
  dial(multiaddr: string): Promise<void>
  /**
   * Weights, when the node runs Helia: its own blockstore (an FsBlockstore, never Helia's
   * networked one) served by the trustless gateway at /ipfs/, and the upload service behind
   * POST /weights. Without them neither is served.
   */
  readonly weights?: ApiWeights
  /** The live config and `node pin` (api/config.ts); without it the config routes are absent. */
  readonly configRoutes?: Omit<ConfigRoutesOptions, 'requireAdmin'>
  /** The weights clean-up behind `POST /admin/gc` (api/gc.ts); without it the route is absent. */
  readonly gcRoutes?: Omit<GcRoutesOptions, 'requireAdmin'>
}

/** `POST /records` bodies: one record, or a seal as a CAR with its list blocks (api-limits.ts). */
export const MAX_BODY_BYTES = RECORDS_BODY_BYTES

export async function createApi(ctx: ApiContext): Promise<FastifyInstance> {
  const limits = ctx.limits ?? API_LIMIT_DEFAULTS
  const app = Fastify({
    logger: false,
    // Timeouts (idle, not total), keep-alive bounds, small bodies by default, and Fastify's and
    // Node's own errors in our shape (api-limits.ts).
    ...fastifyLimits(limits),
    // CIDs in paths (/ipfs/:cid, /weights/:cid/check) run past the default 100 characters.
    routerOptions: { maxParamLength: 256 },
    // A client that stops reading a CAR stream (or stops sending one) must not hold up `close`.
    forceCloseConnections: true,
  })
  // Forged signatures cost the slow ZIP-215 check each: an address that sent too many is told to
  // wait (auth-throttle.ts) — at accept, before the HTTP parser runs, for new connections, and
  // before any signature is checked on connections already open.
  const throttle = ctx.authThrottle ?? createAuthThrottle({ clock: ctx.clock })
  // Connection caps, the stalled-body answer, and RECORD_TYPES bodies read within the body budget.
  installLimits(app, limits, (key) => !throttle.allows(key))
  installSignatureThrottle(app, throttle)
  installErrorAnswers(app, throttle, ctx.log)

  const requireAdmin = adminCheck(ctx.adminToken)
  app.get('/health', async () => ({ ok: true }))
  app.get('/status', async () => ctx.status())
  app.get('/peers', async () => ({ peers: ctx.peers() }))
  registerViewRoutes(app, { store: ctx.store, clock: ctx.clock })
  registerRecordRoutes(app, {
    store: ctx.store,
    metrics: ctx.metrics,
    log: ctx.log,
    publish: (bytes) => ctx.publish(bytes),
    badSignature: (req) => throttle.failed(clientKeyOf(app, req)),
  })
  registerAdminRoutes(app, { requireAdmin, dial: (multiaddr) => ctx.dial(multiaddr) })
  if (ctx.configRoutes) registerConfigRoutes(app, { requireAdmin, ...ctx.configRoutes })
  if (ctx.gcRoutes) registerGcRoutes(app, { requireAdmin, ...ctx.gcRoutes })
  if (ctx.weights) {
    await registerWeightsApi(app, {
      weights: ctx.weights,
      store: ctx.store,
      clock: ctx.clock,
      log: ctx.log,
      requireAdmin,
      imports: ctx.imports,
    })
  }
  app.get('/metrics', async (_req, reply) => {
    ctx.metrics.update()
    return reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics())
  })
  return app
}

/** The routes that check a signature a stranger sends (a member's binding: api/replication.ts). */
const SIGNATURE_ROUTES: ReadonlySet<string> = new Set(['/records', '/weights', '/holdings/bindings'])
/** The errors that say such a signature did not verify. */
const SIGNATURE_REFUSALS: ReadonlySet<string> = new Set(['upload-signature-invalid', 'binding-signature'])

/**
 * Refuses the routes that check signatures to an address that sent too many bad ones. The hook
 * comes before every route, so the weights routes' own scope inherits it; failures are counted
 * where they are answered (the error handler, the /records route).
 */
function installSignatureThrottle(app: FastifyInstance, throttle: AuthThrottle): void {
  const checksSignatures = (req: FastifyRequest) =>
    req.method === 'POST' && SIGNATURE_ROUTES.has(req.routeOptions.url ?? '')
  app.addHook('onRequest', async (req) => {
    if (checksSignatures(req) && !throttle.allows(clientKeyOf(app, req)))
      throw new NodeError(
        'too-many-bad-signatures',
        'this address sent too many signatures that do not verify; wait a few seconds, and check the signing key and clock',
        { status: 429 },
      )
  })
}

/** Every error as `{error: {code, message}}`: a `NodeError` as it says, the framework's in our shape, the rest 500. */
function installErrorAnswers(app: FastifyInstance, throttle: AuthThrottle, log: Logger): void {
  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, req, reply) => {
    // The rest of a refused body is not read: close after the answer, or the next request on the
    // connection would wait behind unread bytes.
    if (!req.raw.complete) {
      // Once the answer is out, the socket goes: left open, Node would go on reading (and
      // dropping) whatever body the client keeps streaming, as fast as it sends it.
      reply.header('connection', 'close')
      reply.raw.once('finish', () => req.raw.socket.destroy())
    }
    if (isNodeError(error) && SIGNATURE_REFUSALS.has(error.code)) throttle.failed(clientKeyOf(app, req))
    if (isNodeError(error)) return fail(reply, error.status, error.code, error.message)
    const known = frameworkError(error, req)
    if (known) return fail(reply, known.status, known.code, known.message)
    log.error('api-error', { url: req.url, error })
    return fail(reply, 500, 'internal', 'the node could not handle this request; see its log')
  })
  app.setNotFoundHandler((req, reply) =>
    fail(reply, 404, 'not-found', `no such endpoint: ${req.method} ${req.url.slice(0, 200)}`),
  )
}
