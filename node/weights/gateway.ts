/**
 * An IPFS trustless gateway (specs.ipfs.tech http-gateways/trustless-gateway): `GET`/`HEAD
 * /ipfs/<cid>[/<path>]` as one raw block (`application/vnd.ipld.raw`) or a CARv1 stream
 * (`application/vnd.ipld.car; version=1; order=dfs; dups=n|y`), so any IPFS client, and our own
 * fetcher, can download weights over plain HTTP and verify every block against its CID. It serves
 * only blocks under a pinned root, from the local store only, each block at most once per answer
 * (docs/adr/0001-gateway-pinned-and-no-repeats.md); how it streams: docs/adr/0013-gateway-streaming.md;
 * `entity-bytes`, cross-origin reads and the wildcard `Accept`: docs/adr/0027-gateway-ranges-cors-defaults.md.
 * Weights of a conflicted or suspended version are withheld: docs/adr/0028-mirrors-and-withholding.md.
 *
 * The parts: what a request asks for (gateway-request.ts), byte ranges (gateway-range.ts), the
 * reads (gateway-blocks.ts), the CAR walk and writer (gateway-car.ts), cross-origin headers
 * (gateway-cors.ts); here, the routes and their answers.
 *
 * Errors are JSON `{error: {code, message}}`: 400 `bad-cid`, `bad-dag-scope`, `bad-entity-bytes`,
 * `entity-bytes-out-of-range`, `format-required`, `path-not-allowed`; 404 `block-not-found` (not
 * held, or held but under no pin: the same answer), `path-not-found`; 406 `not-acceptable`; 451
 * `version-withheld` (held only under weights whose version is conflicted or suspended); 412
 * `not-cached`; 501 `path-unsupported`; 500 `internal`.
 */
import type { OutgoingHttpHeaders } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { CID } from 'multiformats/cid'
import { type Logger, silentLogger } from '../log.js'
import {
  BlockBuffers,
  type GatewayBlockstore,
  type GatewayPins,
  readBlock,
  resolvePath,
  type Source,
  servable,
} from './gateway-blocks.js'
import { type CarPlan, carBody, pump, READ_AHEAD, repeatsBlocks } from './gateway-car.js'
import { allowAnyOrigin, registerPreflight } from './gateway-cors.js'
import { GatewayError, WalkError } from './gateway-errors.js'
import { type EntityBytes, fileSize, parseEntityBytes, resolveEntityBytes } from './gateway-range.js'
import {
  carEtag,
  type DagScope,
  etagsFor,
  firstValues,
  matchingEtag,
  type Negotiated,
  negotiate,
  parseCid,
  parseScope,
  rawEtag,
} from './gateway-request.js'
import { CAR_TYPE, IMMUTABLE, RAW_TYPE } from './http-contract.js'

export type { GatewayBlockstore, GatewayPins }

export interface GatewayOptions {
  /** A local store (e.g. `FsBlockstore`), never one that fetches from the network. */
  blockstore: GatewayBlockstore
  /** Only blocks under a pinned root are served; any other block is a 404. */
  pins: GatewayPins
  log?: Logger
}

/** What one request asks for, checked before the store is read. */
interface Asked {
  readonly cid: CID
  readonly path: string[]
  readonly negotiated: Negotiated
  readonly scope: DagScope
  /** `entity-bytes`, on a CAR request only. */
  readonly range?: EntityBytes | undefined
  readonly head: boolean
}

/** One request being answered: what it asks, where blocks come from, and the log. */
interface Answering {
  readonly asked: Asked
  readonly source: Source
  readonly log: Logger
}

/** The request's CID, path, format and scope, or the `GatewayError` that refuses it. */
function readAsked(req: FastifyRequest): Asked {
  const params = req.params as { cid: string; '*'?: string }
  const query = firstValues(req.query)
  const cid = parseCid(params.cid)
  const path = (params['*'] ?? '').split('/').filter((s) => s.length > 0)
  const negotiated = negotiate(query, req.headers.accept, path.length > 0)
  if (negotiated.format === 'raw') {
    if (path.length > 0)
      throw new GatewayError(
        400,
        'path-not-allowed',
        'raw block requests take no path: ask for the CID itself',
      )
    // A raw block is one block: dag-scope and entity-bytes are CAR parameters, not looked at here.
    return { cid, path, negotiated, scope: 'block', head: req.method === 'HEAD' }
  }
  const text = query['entity-bytes']
  const range = text === undefined ? undefined : parseEntityBytes(text)
  // entity-bytes implies dag-scope=entity; a dag-scope given as well is kept (a range applies to a
  // file under entity or all, and a file has no other entities under it).
  const scope = parseScope(query['dag-scope'], range ? 'entity' : 'all')
  return { cid, path, negotiated, scope, range, head: req.method === 'HEAD' }
}

/**
 * The CAR's plan once the path's end is known: under `entity-bytes`, a file's range resolved
 * (before anything is sent, so a range past its end is still a 400), or the range ignored where
 * the end is no file (a directory: the request is dag-scope=entity's). A range of no bytes sends
 * the file's root alone, whose UnixFS data gives the client the size.
 */
function planFor(asked: Asked, plan: CarPlan): CarPlan {
  if (asked.range === undefined || plan.scope === 'block') return plan
  const size = fileSize(plan.terminal.cid, plan.terminal.bytes)
  if (size === null) return plan
  const bytes = resolveEntityBytes(asked.range, size)
  return bytes === null ? { ...plan, scope: 'block' } : { ...plan, bytes }
}

/**
 * The answer for a block that is not served: the same whether it is not held or held under no
 * pin, so the response does not tell whether the node has it.
 */
function notServed(req: FastifyRequest, cid: CID): GatewayError {
  return /only-if-cached/i.test(req.headers['cache-control'] ?? '')
    ? new GatewayError(412, 'not-cached', `block ${cid} is not held here`)
    : new GatewayError(
        404,
        'block-not-found',
        `block ${cid} is not held here (this gateway serves only the weights this node pins)`,
      )
}

/**
 * The answer for a block held only under withheld weights (docs/adr/0028-mirrors-and-withholding.md):
 * 451, as the federation's governance, not the client, keeps it back, and only until the version
 * is decided; not cached (the error answer is `no-store`).
 */
async function refusal(req: FastifyRequest, source: Source, cid: CID): Promise<GatewayError> {
  const withheld = await source.pins.withheldBy?.(cid, { signal: source.signal })
  if (!withheld) return notServed(req, cid)
  const why =
    withheld.status === 'conflicted'
      ? 'two or more of its manifests are ratified'
      : `its status is ${withheld.status}`
  return new GatewayError(
    451,
    'version-withheld',
    `block ${cid} belongs to ${withheld.model}, which this node withholds: ${why}, and no node serves it until the federation decides (see GET /models/${withheld.model})`,
  )
}

/** The headers of a successful answer; set on success only, as an error must not be cached as immutable. */
function servedHeaders(req: FastifyRequest, asked: Asked): Record<string, string> {
  const cidText = (req.params as { cid: string }).cid
  const headers: Record<string, string> = {
    'Cache-Control': IMMUTABLE,
    Vary: 'Accept',
    'X-Content-Type-Options': 'nosniff',
    'X-Ipfs-Path': `/ipfs/${cidText}${asked.path.length > 0 ? `/${asked.path.join('/')}` : ''}`,
  }
  if (asked.negotiated.viaAccept) {
    const sep = req.url.includes('?') ? '&' : '?'
    headers['Content-Location'] = `${req.url}${sep}format=${asked.negotiated.format}`
  }
  return headers
}

/** `GET`/`HEAD` of one raw block. */
function sendRaw(reply: FastifyReply, asked: Asked, headers: Record<string, string>, bytes: Uint8Array) {
  const { cid } = asked
  reply.headers(headers)
  reply.header('Etag', rawEtag(cid))
  reply.header('Content-Disposition', `attachment; filename="${cid}.bin"`)
  reply.header('X-Ipfs-Roots', cid.toString())
  reply.type(RAW_TYPE)
  if (asked.head) return reply.header('Content-Length', String(bytes.byteLength)).send()
  return reply.send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
}

/** `GET`/`HEAD` of a CAR: the path resolved, `dups` settled, the headers, then the stream. */
async function sendCar(
  answering: Answering,
  reply: FastifyReply,
  headers: Record<string, string>,
  rootBytes: Uint8Array,
) {
  const { asked, source, log } = answering
  const { cid, path } = asked
  const { pathBlocks, terminal } = await resolvePath(source, { cid, bytes: rootBytes }, path)
  const plan = planFor(asked, { root: cid, pathBlocks, terminal, scope: asked.scope })
  // dups=y as asked only where it is the dups=n stream: no block may leave twice.
  let dups = asked.negotiated.format === 'car' ? asked.negotiated.dups : 'n'
  if (dups === 'y' && (await repeatsBlocks(source, plan))) {
    dups = 'n'
    log.debug('gateway-dups-n', { root: cid.toString() })
  }
  // One logical root per path segment: the requested CID, each directory passed, the end.
  const roots = path.length > 0 ? [...pathBlocks.map((b) => b.cid), terminal.cid] : [cid]
  reply.headers(headers)
  reply.header('Etag', carEtag(cid, dups, asked))
  reply.header('Content-Disposition', `attachment; filename="${cid}.car"`)
  reply.header('X-Ipfs-Roots', roots.join(','))
  reply.header('Accept-Ranges', 'none')
  reply.type(`${CAR_TYPE}; version=1; order=dfs; dups=${dups}`)
  if (asked.head) return reply.send()
  await streamCar(answering, reply, plan)
  return reply
}

/**
 * Writes the CAR to the socket itself, not through reply.send: only so is it known when a block's
 * buffer has been taken by the socket and may be reused (BlockBuffers). Once the headers are out,
 * a failure can only cut the stream: the client sees a truncated CAR (the spec's "Streaming and
 * Missing Child Blocks").
 */
async function streamCar(answering: Answering, reply: FastifyReply, plan: CarPlan): Promise<void> {
  const { source, log } = answering
  const root = plan.root.toString()
  reply.hijack()
  const res = reply.raw
  res.writeHead(200, reply.getHeaders() as OutgoingHttpHeaders)
  try {
    await pump(res, carBody(source, plan))
  } catch (e) {
    // A client that left aborts the read in flight: that is not a missing block.
    if (source.signal.aborted) {
      log.debug('gateway-car-aborted', { root })
    } else if (e instanceof WalkError) {
      log.warn('gateway-car-truncated', { root, cid: e.cid.toString(), reason: e.code })
    } else {
      log.error('gateway-car-failed', { root, error: e as Error })
    }
    res.destroy()
  }
}

/** Answers one request: checks, the pin, a tag the client holds, then the block or the CAR. */
async function answer(req: FastifyRequest, reply: FastifyReply, source: Source, log: Logger) {
  const asked = readAsked(req)
  const { cid } = asked
  // The pin record is checked before the store is read.
  if (!(await servable(source.pins, cid, source.signal))) throw await refusal(req, source, cid)
  const headers = servedHeaders(req, asked)
  // Content-addressed: a tag the client already holds for this URL can never go stale.
  const held = matchingEtag(req.headers['if-none-match'], etagsFor(cid, asked.negotiated, asked))
  if (held)
    return reply
      .code(304)
      .headers({ ...headers, Etag: held })
      .send()
  const rootBytes = await readBlock(source.store, cid, source.signal)
  if (rootBytes === null) throw notServed(req, cid)
  if (asked.negotiated.format === 'raw') return sendRaw(reply, asked, headers, rootBytes)
  return sendCar({ asked, source, log }, reply, headers, rootBytes)
}

function fail(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.code(status).header('Cache-Control', 'no-store').send({ error: { code, message } })
}

/**
 * Adds `GET`, `HEAD` and `OPTIONS` `/ipfs/:cid` and `/ipfs/:cid/*` to `app`, readable from any
 * origin. The routes answer their own errors, so any Fastify instance can carry them.
 */
export function registerGateway(app: FastifyInstance, options: GatewayOptions): void {
  const { blockstore, pins } = options
  const log = options.log ?? silentLogger
  // A profile leaf (1 MiB) fits with room to spare; enough for a few responses' read-ahead.
  const buffers = new BlockBuffers(1024 * 1024 + 64 * 1024, 4 * (READ_AHEAD + 4))

  const handle = async (req: FastifyRequest, reply: FastifyReply) => {
    allowAnyOrigin(reply)
    const controller = new AbortController()
    reply.raw.once('close', () => controller.abort())
    const source: Source = { store: blockstore, pins, buffers, signal: controller.signal }
    try {
      return await answer(req, reply, source, log)
    } catch (e) {
      if (e instanceof GatewayError) return fail(reply, e.status, e.code, e.message)
      if (e instanceof WalkError) return fail(reply, 500, e.code, e.message)
      // A client that left before the headers (a read or the dups=y walk aborted): nothing failed.
      if (controller.signal.aborted) {
        log.debug('gateway-aborted', { url: req.url })
        return reply
      }
      log.error('gateway-error', { url: req.url, error: e as Error })
      return fail(reply, 500, 'internal', 'the gateway could not read its blockstore; see the node log')
    }
  }

  const urls = ['/ipfs/:cid', '/ipfs/:cid/*']
  for (const url of urls) {
    app.route({ method: ['GET', 'HEAD'], url, handler: handle })
  }
  registerPreflight(app, urls)
}
