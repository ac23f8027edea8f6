/**
 * The HTTP API (DESIGN.md §6), on Fastify: a well-kept framework with body
 * limits, content-type parsers and error hooks built in. Binds 127.0.0.1 by
 * default. Every error is JSON `{error: {code, message}}` with a 4xx/5xx
 * status; a bad request never produces a stack trace.
 *
 * Writes: `POST /records` is open to anyone who can reach the API (records
 * authenticate themselves by signature and are validated like gossip);
 * writes that are not self-authenticating need the admin bearer token.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { isAbsolute } from 'node:path'
import { CarBufferReader } from '@ipld/car/buffer-reader'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { WritableStorage } from 'ipfs-unixfs-importer'
import { checkpointDue, uncoveredDecisions } from '../protocol/checkpoint-due.js'
import {
  buildCertificate,
  cidKey,
  isInvalidCode,
  LIMITS,
  type RejectionCode,
  stateRoot,
} from '../protocol/index.js'
import {
  clientKeyOf,
  fastifyLimits,
  frameworkError,
  installLimits,
  RECORDS_BODY_BYTES,
  requireRecordType,
} from './api-limits.js'
import { type AuthThrottle, createAuthThrottle } from './auth-throttle.js'
import { API_LIMIT_DEFAULTS, type ApiLimits, MIN_TOKEN_CHARS } from './config.js'
import { isNodeError, NodeError } from './errors.js'
import { type GatewayBlockstore, type GatewayPins, registerGateway } from './weights/gateway.js'
import { parseCid } from './http-params.js'
import { proposalJson, stateJson, toJson } from './json.js'
import type { Logger } from './log.js'
import type { Metrics } from './metrics.js'
import type { RecordStore } from './store.js'
import { registerWeightsRoutes, type WeightsRoutesOptions } from './weights/upload-routes.js'
import type { Weights } from './weights/uploads.js'
import { importDirectory } from './weights/directory.js'
import { admitImport, type ImportPolicy } from './weights/import-roots.js'

export interface NodeStatus {
  peerId: string
  addresses: string[]
  federation: string
  steward: string | null
  records: number
  head: string
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
  readonly weights?: {
    readonly blockstore: GatewayBlockstore & WeightsRoutesOptions['blockstore'] & WritableStorage
    readonly service: Weights
    /** Helia's pins: the gateway serves only blocks under a pinned root. */
    readonly pins: GatewayPins
    /** The largest upload (CAR bytes); default the head state's maxModelBytes plus CAR overhead. */
    readonly maxUploadBytes?: number
  }
}

/** `POST /records` bodies: one record, or a seal as a CAR with its list blocks (api-limits.ts). */
export const MAX_BODY_BYTES = RECORDS_BODY_BYTES

function fail(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.code(status).send({ error: { code, message } })
}

/** A body as a record and the list blocks sent with it. */
function unpack(body: Buffer, type: string | undefined): { record: Uint8Array; blocks: Uint8Array[] } {
  const bytes = new Uint8Array(body.buffer, body.byteOffset, body.byteLength)
  if (type?.startsWith('application/vnd.ipld.car')) {
    let car: CarBufferReader
    try {
      car = CarBufferReader.fromBytes(bytes)
    } catch (e) {
      throw new NodeError('bad-car', `the body is not a CAR file: ${(e as Error).message}`, { status: 400 })
    }
    const root = car.getRoots()[0]
    const rec = root ? car.get(root) : undefined
    if (!root || !rec) throw new NodeError('bad-car', 'the CAR has no root record', { status: 400 })
    const blocks = car
      .blocks()
      .filter((b) => !b.cid.equals(root))
      .map((b) => b.bytes)
    return { record: rec.bytes, blocks }
  }
  return { record: bytes, blocks: [] }
}

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

  // The hook comes before every route, so the weights routes' own scope inherits it; failures are
  // counted where they are answered (the error handler, the /records route).
  const checksSignatures = (req: FastifyRequest) =>
    req.method === 'POST' && (req.routeOptions.url === '/records' || req.routeOptions.url === '/weights')
  app.addHook('onRequest', async (req) => {
    if (checksSignatures(req) && !throttle.allows(clientKeyOf(app, req)))
      throw new NodeError(
        'too-many-bad-signatures',
        'this address sent too many signatures that do not verify; wait a few seconds, and check the signing key and clock',
        { status: 429 },
      )
  })

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, req, reply) => {
    // The rest of a refused body is not read: close after the answer, or the next request on the
    // connection would wait behind unread bytes.
    if (!req.raw.complete) {
      // Once the answer is out, the socket goes: left open, Node would go on reading (and
      // dropping) whatever body the client keeps streaming, as fast as it sends it.
      reply.header('connection', 'close')
      reply.raw.once('finish', () => req.raw.socket.destroy())
    }
    if (isNodeError(error) && error.code === 'upload-signature-invalid')
      throttle.failed(clientKeyOf(app, req))
    if (isNodeError(error)) return fail(reply, error.status, error.code, error.message)
    const known = frameworkError(error, req)
    if (known) return fail(reply, known.status, known.code, known.message)
    ctx.log.error('api-error', { url: req.url, error })
    return fail(reply, 500, 'internal', 'the node could not handle this request; see its log')
  })
  app.setNotFoundHandler((req, reply) =>
    fail(reply, 404, 'not-found', `no such endpoint: ${req.method} ${req.url.slice(0, 200)}`),
  )

  const currentToken = typeof ctx.adminToken === 'function' ? ctx.adminToken : () => ctx.adminToken as string
  const digest = (token: string) => createHash('sha256').update(token).digest()
  const requireAdmin = (req: FastifyRequest) => {
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

  app.get('/health', async () => ({ ok: true }))
  app.get('/status', async () => ctx.status())
  app.get('/peers', async () => ({ peers: ctx.peers() }))
  app.get('/state', async () => stateJson(ctx.store.fold.state()))
  app.get('/members', async () => ({ members: stateJson(ctx.store.fold.state()).members }))

  app.get('/proposals', async (req) => {
    const now = ctx.clock()
    const open = (req.query as Record<string, string>).open !== undefined
    const list = [...ctx.store.fold.state().proposals.values()]
      .map((p) => proposalJson(p, now))
      .filter((p) => !open || p.status === 'open')
      .sort((a, b) => (b.at as number) - (a.at as number))
    return { proposals: list }
  })
  app.get('/proposals/:id', async (req) => {
    const cid = parseCid((req.params as { id: string }).id)
    const p = ctx.store.fold.state().proposals.get(cidKey(cid))
    if (!p)
      throw new NodeError('unknown-proposal', `no proposal ${cid} is known to this node`, { status: 404 })
    return {
      ...proposalJson(p, ctx.clock()),
      countedVotes: ctx.store.fold.countedVotes(cid).map(String),
    }
  })

  app.get('/models', async () => {
    const state = ctx.store.fold.state()
    return { models: [...state.models.values()].map((m) => toJson(m)) }
  })
  // name@version may hold a "/" (organisation/name): take the rest of the path.
  app.get('/models/*', async (req) => {
    const key = decodeURIComponent((req.params as { '*': string })['*'])
    const state = ctx.store.fold.state()
    const m = state.models.get(key)
    if (!m)
      throw new NodeError('unknown-model', `no manifest of ${key} is known to this node`, { status: 404 })
    const at = key.lastIndexOf('@')
    return {
      name: key.slice(0, at),
      version: key.slice(at + 1),
      status: m.status,
      manifest: m.manifest?.toString() ?? null,
      proposal: m.decision?.toString() ?? null,
      manifests: m.manifests.map((c) => {
        const v = state.manifests.get(cidKey(c))!
        return {
          id: c.toString(),
          status: v.status,
          base: v.base?.toString() ?? null,
          ratifiedBy: v.ratifiedBy.map(String),
          revokedBy: v.revokedBy.map(String),
        }
      }),
      stateRoot: stateRoot(state).toString(),
    }
  })

  // A certificate (DESIGN.md §5) for name@version (which may hold a "/"): a CARv1 to verify offline.
  app.get('/certificates/*', async (req, reply) => {
    const key = decodeURIComponent((req.params as { '*': string })['*'])
    const fold = ctx.store.fold
    if (!fold.state().models.has(key))
      throw new NodeError('no-certificate', `no manifest of ${key} is known to this node`, { status: 404 })
    // A decision no counted checkpoint covers yet: a certificate now would prove an older state (or
    // nothing), so say when the covering checkpoint is due instead (SPEC.md §11.2).
    const pending = uncoveredDecisions(fold.state(), key)
    if (pending.length > 0) {
      const last = pending.reduce((a, b) => (b.closesAt > a.closesAt ? b : a))
      const due = checkpointDue(fold.headState().rules, last.closesAt, ctx.clock())
      const when = due.overdue
        ? `the checkpoint covering it was due at ${new Date(due.at).toISOString()} and is not counted yet; the next is due at ${new Date(due.nextAt).toISOString()}`
        : `the checkpoint covering it is due at ${new Date(due.at).toISOString()}`
      const message = `${key} was decided by ${last.cid} (final), but no counted checkpoint covers it yet; ${when}`
      return reply.code(409).send({
        error: { code: 'not-covered', message, decision: last.cid.toString(), dueAt: due.nextAt },
      })
    }
    let car: Uint8Array
    try {
      car = buildCertificate(fold, key)
    } catch (e) {
      throw new NodeError('no-certificate', (e as Error).message, { status: 404 })
    }
    return reply.type('application/vnd.ipld.car').send(Buffer.from(car))
  })

  app.get('/records/:id', async (req, reply) => {
    const cid = parseCid((req.params as { id: string }).id)
    const r = ctx.store.fold.get(cid)
    const block = r ? r.bytes : ctx.store.getBlock(cid)
    if (!block)
      throw new NodeError('unknown-record', `no record or list block ${cid} is held here`, { status: 404 })
    const accept = req.headers.accept ?? ''
    if (r && accept.includes('application/json')) {
      return { id: cid.toString(), record: toJson(r.record), report: ctx.store.fold.report(cid) }
    }
    return reply.type('application/cbor').send(Buffer.from(block))
  })
  app.get('/manifests/:id', async (req) => {
    const cid = parseCid((req.params as { id: string }).id)
    const r = ctx.store.fold.get(cid)
    if (r?.record.kind !== 'manifest')
      throw new NodeError('unknown-manifest', `no manifest ${cid} is held here`, { status: 404 })
    return {
      id: cid.toString(),
      author: r.record.author,
      at: r.record.at,
      ...(toJson(r.record.body) as object),
      report: ctx.store.fold.report(cid),
    }
  })

  // One record or a seal with its lists (api-limits.ts); another type is refused before its body.
  const oneRecord = { bodyLimit: RECORDS_BODY_BYTES, onRequest: requireRecordType }
  app.post('/records', oneRecord, async (req, reply) => {
    if (!Buffer.isBuffer(req.body)) {
      throw new NodeError(
        'unsupported-media-type',
        'send application/cbor (one record) or application/vnd.ipld.car',
        { status: 415 },
      )
    }
    const { record, blocks } = unpack(req.body, req.headers['content-type'])
    const started = process.hrtime.bigint()
    const result = await ctx.store.ingest(record, blocks)
    ctx.metrics.ingestSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9)
    if (result.verdict === 'reject') {
      const code = (result.code ?? 'invalid') as RejectionCode
      if (code === 'sig-invalid' || code === 'genesis-cosig-invalid') throttle.failed(clientKeyOf(app, req))
      return fail(
        reply,
        isInvalidCode(code) || code.startsWith('cbor') ? 400 : 422,
        code,
        result.message ?? 'the record is invalid',
      )
    }
    if (result.verdict === 'ignore' && !result.duplicate) {
      return fail(reply, 422, result.code ?? 'ignored', result.message ?? 'the record was not taken')
    }
    if (!result.duplicate) {
      // Durable now: gossip is best effort, sync repairs what it misses.
      ctx.publish(record).catch((e) => ctx.log.warn('publish-failed', { error: e as Error }))
    }
    return reply.code(result.duplicate ? 200 : 201).send({
      id: result.record!.cid.toString(),
      duplicate: result.duplicate === true,
      report: result.report,
    })
  })

  app.post('/admin/dial', async (req) => {
    requireAdmin(req)
    const body = req.body as { multiaddr?: unknown } | undefined
    if (!body || typeof body.multiaddr !== 'string')
      throw new NodeError('bad-request', 'send {"multiaddr": "/ip4/…/tcp/…/p2p/…"}', { status: 400 })
    await ctx.dial(body.multiaddr)
    return { ok: true }
  })

  if (ctx.weights) {
    const weights = ctx.weights
    // Weights from a directory on this node's own machine (an operator who copied them there):
    // imported with the profile, every file hashed, and pinned, as an upload would be.
    app.post('/weights/import', async (req, reply) => {
      requireAdmin(req)
      const path = (req.body as { path?: unknown } | null)?.path
      if (typeof path !== 'string' || !isAbsolute(path))
        throw new NodeError(
          'bad-request',
          'send {"path": "/absolute/path"}: a model directory on the node\'s own machine',
          { status: 400 },
        )
      // Only below the configured roots, never the node home or a key file (import-roots.ts).
      const admitted = await admitImport(path, ctx.imports ?? { roots: [], home: '', keyFiles: [] })
      // Listed and bounded by maxModelBytes before a byte is read (oversize: 413).
      const imported = await importDirectory(admitted.dir, {
        blockstore: weights.blockstore,
        maxBytes: ctx.store.fold.headState().rules.maxModelBytes,
        admit: admitted.admit,
      }).catch((e: unknown) => {
        // The answer names no server path; the operator's log keeps the cause.
        if (isNodeError(e) && e.code === 'import-failed')
          ctx.log.warn('weights-import-failed', { path, error: (e.cause as Error) ?? e })
        throw e
      })
      const pinned = await weights.service.pin(imported.root)
      ctx.log.info('weights-imported', { root: imported.root.toString(), path, bytes: imported.size, pinned })
      return reply.code(201).send({
        root: imported.root.toString(),
        files: imported.files.length,
        size: imported.size,
        pinned,
      })
    })
    registerGateway(app, { blockstore: ctx.weights.blockstore, pins: ctx.weights.pins, log: ctx.log })
    await registerWeightsRoutes(app, {
      weights: ctx.weights.service,
      blockstore: ctx.weights.blockstore,
      fold: ctx.store.fold,
      clock: ctx.clock,
      requireAdmin,
      ...(ctx.weights.maxUploadBytes !== undefined ? { maxUploadBytes: ctx.weights.maxUploadBytes } : {}),
    })
  }

  app.get('/metrics', async (_req, reply) => {
    ctx.metrics.update()
    return reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics())
  })
  void LIMITS
  return app
}
