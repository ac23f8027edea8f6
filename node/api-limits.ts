/**
 * The HTTP API's limits (node/api.ts), in one place: timeouts, body limits derived from the
 * protocol's own limits, the connection caps and body budget (http-guard.ts), and Fastify's and
 * Node's own errors turned into the API's `{error: {code, message}}` shape with stable codes.
 *
 * Timeouts are idle timeouts (a connection is closed when no byte has moved for
 * `apiIdleTimeoutMs`), never total ones: a multi-GB gateway stream or upload moves bytes all
 * along and must survive; a stalled body does not. Headers have their own deadline.
 */
import { type IncomingMessage, type Server, STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyHttpOptions, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { LIMITS } from '../protocol/limits.js'
import type { ApiLimits } from './config.js'
import { NodeError } from './errors.js'
import {
  addressKey,
  type BodyAccount,
  type ConnectionGuard,
  guardServer,
  type HttpLoad,
  watchIdle,
} from './http-guard.js'
import { CAR_TYPE } from './weights/http-contract.js'

// ------------------------------------------------------------------ body limits

/** Bytes of one CID in DAG-CBOR: tag 42 (2), a byte-string head (2), 0x00, the CID (36). */
const CBOR_CID_BYTES = 2 + 2 + 1 + 36
/** Bytes of a CIDv1 dag-cbor sha2-256 as a CAR section names it. */
const CAR_CID_BYTES = 36
/** A CAR section's length prefix: a varint, 3 bytes for anything under 2 MiB. */
const CAR_VARINT_BYTES = 3
/** A CARv1 header `{roots: [cid], version: 1}` with its length prefix. */
const CAR_HEADER_BYTES = 1 + 1 + 6 + 1 + CBOR_CID_BYTES + 8 + 1

/** Bytes of a CBOR array head for `n` items. */
function arrayHeadBytes(n: number): number {
  return n < 24 ? 1 : n < 256 ? 2 : n < 65_536 ? 3 : 5
}

/**
 * The most blocks and bytes a canonical CID list of `entries` unlabelled entries can take
 * (protocol/cidlist.ts): leaves `[0, [cid × 256]]`, branches `[1, [cid × ≤256]]` above them,
 * every node counted as full.
 */
export function listBound(entries: number): { blocks: number; bytes: number } {
  const fanout = LIMITS.listFanout
  const node = (children: number) => 1 + 1 + arrayHeadBytes(children) + children * CBOR_CID_BYTES
  let width = Math.max(1, Math.ceil(entries / fanout))
  let blocks = width
  let bytes = width * node(fanout)
  while (width > 1) {
    const children = Math.min(width, fanout)
    width = Math.ceil(width / fanout)
    blocks += width
    bytes += width * node(children)
  }
  return { blocks, bytes }
}

/**
 * `POST /records` takes one record (batches get a route of their own; docs/adr/0003), or a seal as a
 * CAR with its list blocks. A seal names at most one vote per voter, and a federation has at
 * most `maxMembers` (10,000) members, so its votes list holds at most 10,000 entries; its
 * attestations list is given the same room (one per auditor; a seal naming more attestations
 * than a federation has members reaches nodes by gossip and sync, which carry blocks one by one).
 *
 *     one list of 10,000:  ⌈10,000 / 256⌉ = 40 leaves of ≤ 1+1+3+256·41 = 10,501 bytes
 *                          + 1 branch of 1+1+2+40·41 = 1,644 bytes       = 421,684 bytes, 41 blocks
 *     two lists                                                          = 843,368 bytes, 82 blocks
 *     the record itself (maxRecordBytes)                                 =  65,536 bytes
 *     83 CAR sections × (3-byte varint + 36-byte CID)                    =   3,237 bytes
 *     the CAR header                                                     =      59 bytes
 *     ------------------------------------------------------------------------------------
 *                                                                          912,200 bytes
 *
 * (test/integration/http-abuse.test.ts holds the number to this arithmetic and sends a real seal
 * CAR of two full lists.)
 */
export const RECORDS_BODY_BYTES = (() => {
  const list = listBound(LIMITS.maxMembers)
  const blocks = 1 + 2 * list.blocks
  return (
    CAR_HEADER_BYTES + LIMITS.maxRecordBytes + 2 * list.bytes + blocks * (CAR_VARINT_BYTES + CAR_CID_BYTES)
  )
})()

/**
 * A body that is one record and nothing else (`application/cbor` and the other record types but
 * the CAR) is at most the largest record: a genesis (the limit derives from one record; docs/adr/0003).
 */
export const ONE_RECORD_BODY_BYTES = LIMITS.maxGenesisBytes

/** The largest body of this type the route takes: one record, unless it is a CAR. */
function bodyLimitOf(req: FastifyRequest): number {
  const route = req.routeOptions.bodyLimit
  return contentType(req) === CAR_TYPE ? route : Math.min(route, ONE_RECORD_BODY_BYTES)
}

/** Every other body the API takes is a small JSON object (`/admin/dial`, `/weights/import`). */
export const SMALL_BODY_BYTES = 16 * 1024

/** The body types `POST /records` reads into memory: a record, or a CAR with its blocks. */
export const RECORD_TYPES: readonly string[] = [
  'application/cbor',
  'application/octet-stream',
  CAR_TYPE,
  'application/vnd.ipld.dag-cbor',
]

// ------------------------------------------------------------------ Fastify options

/** How often Node checks for requests past the headers deadline (its default is 30 s). */
function checkingIntervalMs(headersTimeoutMs: number): number {
  return Math.max(100, Math.min(5_000, Math.floor(headersTimeoutMs / 4)))
}

/** How long a socket refused or answered for an error may still send before it is closed. */
const CLOSE_GRACE_MS = 2_000

type ErrorBody = { status: number; code: string; message: string }

function rawAnswer(e: ErrorBody): string {
  const body = JSON.stringify({ error: { code: e.code, message: e.message } })
  return `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
}

/** Errors Node's HTTP parser reports before there is a request: answered on the socket. */
function clientError(error: Error & { code?: string }, limits: ApiLimits): ErrorBody {
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT')
    return {
      status: 408,
      code: 'headers-timeout',
      message: `the request's headers did not all arrive within ${limits.headersTimeoutMs} ms (apiHeadersTimeoutMs)`,
    }
  if (error.code === 'HPE_HEADER_OVERFLOW')
    return { status: 431, code: 'headers-too-large', message: 'the request headers are too large' }
  return { status: 400, code: 'bad-http', message: 'the request is not valid HTTP/1.1' }
}

/** The constructor options that carry the limits. */
export function fastifyLimits(limits: ApiLimits): Partial<FastifyHttpOptions<Server>> {
  return {
    bodyLimit: SMALL_BODY_BYTES,
    // Node's socket timeout is an idle timeout: it is reset whenever a byte is read or written.
    connectionTimeout: limits.idleTimeoutMs,
    requestTimeout: 0,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    maxRequestsPerSocket: limits.maxRequestsPerConnection,
    // Fastify's own 503 while closing is not in our shape: installLimits answers it instead.
    return503OnClosing: false,
    http: {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: 0,
      connectionsCheckingInterval: checkingIntervalMs(limits.headersTimeoutMs),
    },
    clientErrorHandler(error: Error & { code?: string }, socket: Socket) {
      if (error.code === 'ECONNRESET' || socket.destroyed) return
      closeWithAnswer(socket, rawAnswer(clientError(error, limits)))
    },
    frameworkErrors(error: Error & { code?: string }, _req: FastifyRequest, reply: FastifyReply) {
      const e =
        error.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? { status: 414, code: 'url-too-long', message: 'a part of the URL is too long' }
          : { status: 400, code: 'bad-url', message: 'the URL is not valid (bad percent-encoding?)' }
      return reply.code(e.status).send({ error: { code: e.code, message: e.message } })
    },
  }
}

/** Writes an answer and closes: what the socket still sends is read and dropped meanwhile. */
function closeWithAnswer(socket: Socket, answer: string): void {
  socket.on('data', () => {})
  socket.on('error', () => socket.destroy())
  socket.once('end', () => socket.destroy())
  socket.setTimeout(CLOSE_GRACE_MS, () => socket.destroy())
  if (socket.writable) socket.end(answer)
  else socket.destroy()
}

// ------------------------------------------------------------------ errors

/**
 * Fastify's own errors (and anything else a 4xx) in the API's shape. Messages are ours, never a
 * library's text that might name a file on the server.
 */
export function frameworkError(
  error: Error & { statusCode?: number; code?: string },
  req: FastifyRequest,
): ErrorBody | undefined {
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return tooLarge(req.routeOptions.bodyLimit)
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return {
        status: 415,
        code: 'unsupported-media-type',
        message: `this endpoint does not take ${contentType(req) || 'a body without a type'}`,
      }
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { status: 400, code: 'bad-json', message: 'the body is empty: send a JSON object' }
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { status: 400, code: 'bad-json', message: 'the body is not valid JSON' }
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return {
        status: 400,
        code: 'bad-content-length',
        message: 'the body does not match its Content-Length',
      }
    case 'FST_ERR_CTP_EMPTY_TYPE':
    case 'FST_ERR_CTP_INVALID_TYPE':
      return { status: 415, code: 'unsupported-media-type', message: 'the Content-Type is not valid' }
  }
  if (error instanceof URIError)
    return { status: 400, code: 'bad-url', message: 'the URL is not valid percent-encoding' }
  if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
    // Fastify's own messages name nothing on the server; anyone else's might.
    const own = error.code?.startsWith('FST_') === true
    return {
      status: error.statusCode,
      code: 'bad-request',
      message: own ? error.message : 'the request cannot be handled as sent',
    }
  }
  return undefined
}

function tooLarge(limit: number): ErrorBody {
  return {
    status: 413,
    code: 'body-too-large',
    message: `this endpoint takes bodies of at most ${limit} bytes`,
  }
}

/** `onRequest` of `POST /records`: a body of another type is refused before a byte is read. */
export async function requireRecordType(req: FastifyRequest): Promise<void> {
  if (!RECORD_TYPES.includes(contentType(req)))
    throw new NodeError(
      'unsupported-media-type',
      'send application/cbor (one record) or application/vnd.ipld.car (a record and its blocks)',
      { status: 415 },
    )
}

function contentType(req: FastifyRequest): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
}

// ------------------------------------------------------------------ guards

const guards = new WeakMap<FastifyInstance, ConnectionGuard>()

/**
 * The key the client of `req` is counted under: its address (for a trusted proxy, the client it
 * forwards for), an IPv6 address by its /64.
 */
export function clientKeyOf(app: FastifyInstance, req: FastifyRequest): string {
  const peer = req.raw.socket.remoteAddress
  const guard = guards.get(app)
  return addressKey(guard ? guard.clientAddress(peer, req.headers['x-forwarded-for']) : (peer ?? 'unknown'))
}

/** What the API holds now: open connections and buffered body bytes (for tests and metrics). */
export function apiLoad(app: FastifyInstance): HttpLoad {
  const guard = guards.get(app)
  if (guard === undefined) throw new Error('this Fastify instance has no API limits installed')
  return guard.load()
}

/**
 * Installs the caps, the idle answer and the body reader for `RECORD_TYPES` on `app` (made with
 * `fastifyLimits`). Call before any route is added.
 */
export function installLimits(
  app: FastifyInstance,
  limits: ApiLimits,
  refuseAddress?: (key: string) => boolean,
): void {
  const guard = guardServer(app.server, { ...limits, ...(refuseAddress ? { refuseAddress } : {}) })
  guards.set(app, guard)
  const idle = watchIdle(app.server, CLOSE_GRACE_MS)
  const accounts = new WeakMap<IncomingMessage, BodyAccount>()
  let closing = false

  app.addHook('onRequest', async (req, reply) => {
    if (closing) {
      reply.header('connection', 'close')
      throw new NodeError(
        'node-stopping',
        'the node is shutting down; try again shortly or ask another node',
        {
          status: 503,
        },
      )
    }
    idle.track(req.raw, reply.raw)
    const account = guard.account()
    accounts.set(req.raw, account)
    reply.raw.once('close', () => account.release())
    const refused = guard.admitRequest(
      req.raw.socket.remoteAddress,
      req.headers['x-forwarded-for'],
      reply.raw,
    )
    if (refused) throw new NodeError(refused.code, refused.message, { status: refused.status })
  })
  app.addHook('preClose', async () => {
    closing = true
    guard.closeRefused()
  })

  app.addContentTypeParser(RECORD_TYPES as string[], (req, payload, done) =>
    readBody(req, payload, accounts.get(req.raw), done),
  )
}

/**
 * Reads a body into memory within the route's `bodyLimit` and the node's body budget, counting
 * every byte as it arrives: one byte over the limit is 413, a body the budget cannot hold is 503.
 */
function readBody(
  req: FastifyRequest,
  payload: IncomingMessage,
  account: BodyAccount | undefined,
  done: (error: Error | null, body?: Buffer) => void,
): void {
  const limit = bodyLimitOf(req)
  const declared = Number(req.headers['content-length'])
  if (declared > limit) {
    const e = tooLarge(limit)
    done(new NodeError(e.code, e.message, { status: e.status }))
    return
  }
  const chunks: Buffer[] = []
  let received = 0
  const finish = (error: NodeError | null) => {
    payload.off('data', onData)
    payload.off('end', onEnd)
    payload.off('error', onError)
    if (error) return done(error)
    done(null, Buffer.concat(chunks, received))
  }
  const onData = (chunk: Buffer) => {
    received += chunk.length
    if (received > limit) {
      const e = tooLarge(limit)
      return finish(new NodeError(e.code, e.message, { status: e.status }))
    }
    if (account && !account.take(chunk.length)) {
      return finish(
        new NodeError(
          'server-busy',
          'the node holds as many request bodies in memory as it may (apiMaxBufferedBytes); try again shortly',
          { status: 503 },
        ),
      )
    }
    chunks.push(chunk)
  }
  const onEnd = () => {
    if (!Number.isNaN(declared) && declared !== received)
      return finish(
        new NodeError('bad-content-length', 'the body does not match its Content-Length', { status: 400 }),
      )
    finish(null)
  }
  const onError = () =>
    finish(new NodeError('request-aborted', 'the request body was cut off before its end', { status: 400 }))
  payload.on('data', onData)
  payload.on('end', onEnd)
  payload.on('error', onError)
}
