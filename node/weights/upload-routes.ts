/**
 * The HTTP side of weights uploads (SPEC.md §7): `POST /weights` and
 * `GET /weights/:cid/check`, and the upload statement a publisher sends in the headers of a
 * `POST /weights` — its header names, reading it, and every check that needs no body (the signer
 * a publisher: `isPublisher`) — and the idle bound on the body (`idleBounded`). An upload is
 * refused from its headers alone, with nothing of its body read; receiving the CAR itself is
 * uploads.ts.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ReadableStorage } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'
import {
  type Did,
  type Fold,
  hasRole,
  type ManifestBody,
  parseDid,
  peerIdBytes,
  UPLOAD_NONCE_BYTES,
  UPLOAD_STATEMENT_VERSION,
  uploadStatementBytes,
} from '../../protocol/index.js'
import { governanceProposals, heldRoleEver } from '../chain-states.js'
import { fastEd25519 } from '../ed25519-native.js'
import { NodeError } from '../errors.js'
import { parseCid } from '../http-params.js'
import { CAR_TYPE, UPLOAD_HEADERS } from './http-contract.js'
import { carBudget, type UploadGate, type UploadResult, type Weights } from './uploads.js'
import { verifyDag } from './verify.js'

export interface WeightsRoutesOptions {
  readonly weights: Weights
  /** The node's own blockstore, read by the checks. */
  readonly blockstore: ReadableStorage
  readonly fold: Pick<Fold, 'get' | 'headState' | 'state' | 'electorate' | 'knownMember'>
  readonly clock: () => number
  /** Throws `NodeError('unauthorized')` unless the request carries the admin token. */
  readonly requireAdmin: (req: FastifyRequest) => void
  /** The largest CAR accepted; by default the CAR budget of the signed size (or of `maxModelBytes`). */
  readonly maxUploadBytes?: number
}

/** An upload statement read from the headers: well-formed, not yet checked. */
interface Statement {
  readonly author: Did
  readonly publicKey: Uint8Array
  readonly federation: CID
  readonly node: Uint8Array
  readonly nodeText: string
  readonly root: CID
  readonly at: number
  readonly size: number
  readonly nonce: Uint8Array
  readonly signature: Uint8Array
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

function statementError(message: string): NodeError {
  return new NodeError('upload-statement-invalid', message, { status: 401 })
}

const UINT = /^(0|[1-9][0-9]{0,15})$/

function uintHeader(req: FastifyRequest, name: string, what: string): number {
  const text = header(req, name) ?? ''
  if (!UINT.test(text) || !Number.isSafeInteger(Number(text))) throw statementError(`${name} must be ${what}`)
  return Number(text)
}

function cidHeader(req: FastifyRequest, name: string, what: string): CID {
  try {
    return CID.parse(header(req, name) ?? '')
  } catch {
    throw statementError(`${name} must be ${what} (CID text)`)
  }
}

/** Refuses any statement version but 2, telling an old CLI's user what to do. */
function checkVersion(req: FastifyRequest): void {
  const version = header(req, UPLOAD_HEADERS.version)
  if (version === String(UPLOAD_STATEMENT_VERSION)) return
  if (version === undefined || version === '1')
    throw new NodeError(
      'upload-statement-outdated',
      `this node takes upload statements of version ${UPLOAD_STATEMENT_VERSION} only (signed for this node, with a nonce); version 1 came from an older allmende: upgrade the allmende CLI and publish again`,
      { status: 400 },
    )
  throw new NodeError(
    'upload-statement-version',
    `${UPLOAD_HEADERS.version} ${version.slice(0, 16)} is not known here: this node takes version ${UPLOAD_STATEMENT_VERSION}; use a CLI of the node's version or upgrade the node`,
    { status: 400 },
  )
}

/** The upload statement in the headers, checked for form only. */
function readStatement(req: FastifyRequest): Statement {
  checkVersion(req)
  const author = header(req, UPLOAD_HEADERS.author) ?? ''
  const key = parseDid(author)
  if (!key.ok) throw statementError(`${UPLOAD_HEADERS.author} is not a did:key: ${key.message}`)
  const federation = cidHeader(req, UPLOAD_HEADERS.federation, 'the federation id')
  const nodeText = header(req, UPLOAD_HEADERS.node) ?? ''
  const node = peerIdBytes(nodeText)
  if (node === undefined)
    throw statementError(`${UPLOAD_HEADERS.node} must be the node's peer id (12D3KooW…)`)
  const root = cidHeader(req, UPLOAD_HEADERS.root, 'the root of the upload')
  const at = uintHeader(req, UPLOAD_HEADERS.at, 'the signing time in ms since the epoch')
  const size = uintHeader(req, UPLOAD_HEADERS.size, 'the signed size in bytes')
  const nonceText = header(req, UPLOAD_HEADERS.nonce) ?? ''
  if (!new RegExp(`^[0-9a-f]{${2 * UPLOAD_NONCE_BYTES}}$`).test(nonceText))
    throw statementError(
      `${UPLOAD_HEADERS.nonce} must be ${UPLOAD_NONCE_BYTES} random bytes in lowercase hex`,
    )
  const sigText = header(req, UPLOAD_HEADERS.signature) ?? ''
  const signature = /^[A-Za-z0-9+/]{86}={0,2}$/.test(sigText)
    ? new Uint8Array(Buffer.from(sigText, 'base64'))
    : new Uint8Array()
  if (signature.length !== 64)
    throw statementError(`${UPLOAD_HEADERS.signature} must be a base64 Ed25519 signature (64 bytes)`)
  return {
    author,
    publicKey: key.value,
    federation,
    node,
    nodeText,
    root,
    at,
    size,
    nonce: new Uint8Array(Buffer.from(nonceText, 'hex')),
    signature,
  }
}

/** A publisher in some governance state of the chain: the head, or the electorate of a governance proposal. */
export function isPublisher(fold: WeightsRoutesOptions['fold'], did: Did): boolean {
  // A DID that is a member in no known state is a publisher in none: no walk over the chain.
  if (!fold.knownMember(did) && !hasRole(fold.headState(), did, 'publisher')) return false
  return heldRoleEver(fold, governanceProposals(fold), did, 'publisher')
}

/**
 * Every check of a statement that needs no body (SPEC.md §7), cheapest first: it names this
 * federation and this node, is fresh, within maxModelBytes, signed, by a publisher, and its
 * nonce was never taken.
 */
function checkStatement(
  s: Statement,
  gate: UploadGate,
  fold: WeightsRoutesOptions['fold'],
  now: number,
): void {
  if (!s.federation.equals(gate.federation))
    throw new NodeError(
      'upload-federation-mismatch',
      `the upload statement is for federation ${s.federation}; this node is of federation ${gate.federation}`,
      { status: 401 },
    )
  if (s.nodeText !== gate.peerId)
    throw new NodeError(
      'upload-node-mismatch',
      `the upload statement is for node ${s.nodeText.slice(0, 64)}; this node is ${gate.peerId}: sign one for this node`,
      { status: 401 },
    )
  if (Math.abs(s.at - now) > gate.windowMs)
    throw new NodeError(
      'upload-stale',
      `the upload statement was signed at ${s.at}, more than ${gate.windowMs / 60_000} minutes from this node's clock (${now})`,
      { status: 401 },
    )
  const maxModelBytes = fold.headState().rules.maxModelBytes
  if (s.size > maxModelBytes)
    throw new NodeError(
      'upload-too-large',
      `the upload statement signs ${s.size} bytes; this federation takes models of at most ${maxModelBytes} bytes (maxModelBytes)`,
      { status: 413 },
    )
  const signed = uploadStatementBytes({
    federation: s.federation,
    node: s.node,
    root: s.root,
    at: s.at,
    size: s.size,
    nonce: s.nonce,
  })
  if (!fastEd25519.verify(s.signature, signed, s.publicKey))
    throw new NodeError(
      'upload-signature-invalid',
      `the upload statement's signature by ${s.author} does not cover root ${s.root}, size ${s.size}, at ${s.at} and its nonce for this node`,
      { status: 401 },
    )
  if (!isPublisher(fold, s.author))
    throw new NodeError(
      'not-a-publisher',
      `${s.author} is not a publisher in any governance state of this federation`,
      { status: 403 },
    )
  if (gate.nonces.has(s.nonce))
    throw new NodeError('upload-replayed', 'this upload statement was used before: sign a new one', {
      status: 401,
    })
}

function idleError(ms: number): NodeError {
  return new NodeError(
    'upload-idle',
    `the upload sent nothing for ${ms / 1000} s and was ended; send the CAR again`,
    { status: 408 },
  )
}

/**
 * `source`, ended with `upload-idle` when it yields nothing for `ms` while it is waited on. Only
 * the sender's silence counts: the time this node spends on a chunk (hashing, writing) does not.
 */
export async function* idleBounded(
  source: AsyncIterable<Uint8Array>,
  ms: number,
): AsyncGenerator<Uint8Array> {
  const it = source[Symbol.asyncIterator]()
  let waiting: ((e: Error) => void) | undefined
  const timer = setTimeout(() => waiting?.(idleError(ms)), ms)
  // The timer never keeps the process alive, and is cleared when the reader closes this.
  timer.unref()
  try {
    for (;;) {
      timer.refresh()
      const next = await new Promise<IteratorResult<Uint8Array>>((resolve, reject) => {
        waiting = reject
        it.next().then(resolve, reject)
      })
      waiting = undefined
      if (next.done) return
      yield next.value
    }
  } finally {
    clearTimeout(timer)
  }
}

/**
 * `POST /weights` (a CARv1 body, the admin token or a publisher's upload statement) and
 * `GET /weights/:cid/check?manifest=<cid>` (admin: `verifyDag` against a held manifest).
 * Registered in their own scope: the body of an upload is a stream, never a buffer.
 */
export async function registerWeightsRoutes(
  app: FastifyInstance,
  options: WeightsRoutesOptions,
): Promise<void> {
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers()
    // The body is handed over unread: the route decides whether to read it at all.
    scope.addContentTypeParser('*', (_req, payload, done) => done(null, payload))

    scope.post('/weights', async (req, reply) => {
      try {
        return await upload(req, reply, options)
      } catch (e) {
        // The rest of a refused body is not read: close the connection after the answer, or the
        // next request on it would wait behind unread bytes (a half-read stream is not dumped).
        if (!req.raw.complete) reply.header('connection', 'close')
        throw e
      }
    })

    scope.get('/weights/:cid/check', async (req) => checkWeights(req, options))
  })
}

/** The credential of an upload, from its headers alone: who it counts against, and the statement. */
function authenticate(
  req: FastifyRequest,
  options: WeightsRoutesOptions,
): { author: string; statement?: Statement } {
  if (header(req, 'authorization') !== undefined) {
    options.requireAdmin(req)
    return { author: 'the admin' }
  }
  if (header(req, UPLOAD_HEADERS.author) === undefined)
    throw new NodeError(
      'unauthorized',
      'uploads need the admin token or a publisher upload statement (Allmende-Upload-* headers, SPEC.md §7)',
      { status: 401 },
    )
  const statement = readStatement(req)
  checkStatement(statement, options.weights.gate, options.fold, options.clock())
  return { author: statement.author, statement }
}

function requireCarType(req: FastifyRequest): void {
  const type = (header(req, 'content-type') ?? '').toLowerCase()
  if (!type.startsWith(CAR_TYPE)) {
    throw new NodeError('unsupported-media-type', `send the weights as ${CAR_TYPE} (a CARv1 file)`, {
      status: 415,
    })
  }
}

/** The CAR budget of an upload of `size` logical bytes, refused now if its declared length is over it. */
function carLimits(
  req: FastifyRequest,
  options: WeightsRoutesOptions,
  size: number,
): { maxBytes: number; maxBlocks: number } {
  const budget = carBudget(size)
  const maxBytes = Math.min(options.maxUploadBytes ?? budget.maxBytes, budget.maxBytes)
  const declared = Number(header(req, 'content-length') ?? 0)
  if (declared > maxBytes)
    throw new NodeError('upload-too-large', `this upload may be at most ${maxBytes} bytes of CAR`, {
      status: 413,
    })
  return { maxBytes, maxBlocks: budget.maxBlocks }
}

/** The body of a request as the stream it was handed over as (never buffered). */
function bodyStream(req: FastifyRequest): AsyncIterable<Uint8Array> {
  const source = req.body as AsyncIterable<Uint8Array> | undefined
  if (source === undefined || source === null || typeof source[Symbol.asyncIterator] !== 'function')
    throw new NodeError('bad-car', 'the body is empty: send a CARv1 file', { status: 400 })
  return source
}

/** Aborted when the client goes before its answer is out. */
function abortedOnClose(reply: FastifyReply): AbortSignal {
  const controller = new AbortController()
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort()
  })
  return controller.signal
}

function uploadJson(result: UploadResult) {
  return {
    root: result.root.toString(),
    blocks: result.blocks,
    bytes: result.bytes,
    carBytes: result.carBytes,
    dropped: result.dropped,
    pinned: result.pinned,
  }
}

/** `POST /weights`: every check the headers allow, then a slot and the nonce, then the body. */
async function upload(req: FastifyRequest, reply: FastifyReply, options: WeightsRoutesOptions) {
  const { weights, fold } = options
  const { gate } = weights
  requireCarType(req)
  const maxModelBytes = fold.headState().rules.maxModelBytes
  const { author, statement } = authenticate(req, options)
  // The signed size bounds the CAR; the admin's uploads are bounded by maxModelBytes.
  const limits = carLimits(req, options, statement?.size ?? maxModelBytes)
  const source = bodyStream(req)

  const release = gate.slots.acquire(author)
  try {
    // Recorded on disk before the first byte of the body is read: a replay is refused even
    // after a crash and restart.
    if (statement) await gate.nonces.take(statement.nonce, statement.at)
    const signal = abortedOnClose(reply)
    const result = await weights.receive(idleBounded(source, gate.idleMs), {
      maxBytes: limits.maxBytes,
      maxBlocks: limits.maxBlocks,
      maxLogicalBytes: maxModelBytes,
      signal,
      ...(statement ? { root: statement.root, size: statement.size } : {}),
    })
    return reply.code(201).send(uploadJson(result))
  } finally {
    release()
  }
}

/** The body of the manifest named by `?manifest=`, or a `bad-request` / `unknown-manifest` error. */
function heldManifest(
  req: FastifyRequest,
  fold: WeightsRoutesOptions['fold'],
): { cid: CID; body: ManifestBody } {
  const manifestText = (req.query as Record<string, string | undefined>).manifest
  if (typeof manifestText !== 'string')
    throw new NodeError('bad-request', 'name the manifest to check against: ?manifest=<cid>', {
      status: 400,
    })
  const cid = parseCid(manifestText)
  const r = fold.get(cid)
  if (r?.record.kind !== 'manifest')
    throw new NodeError('unknown-manifest', `no manifest ${cid} is held here`, { status: 404 })
  return { cid, body: r.record.body as ManifestBody }
}

/** `GET /weights/:cid/check?manifest=<cid>`: the weights under `:cid` checked against a held manifest. */
async function checkWeights(req: FastifyRequest, options: WeightsRoutesOptions) {
  options.requireAdmin(req)
  const root = parseCid((req.params as { cid: string }).cid)
  const manifest = heldManifest(req, options.fold)
  if (!manifest.body.weights.equals(root)) {
    return {
      ok: false,
      problems: [
        {
          code: 'root-mismatch',
          message: `manifest ${manifest.cid} names weights ${manifest.body.weights}, not ${root}`,
        },
      ],
    }
  }
  const controller = new AbortController()
  req.raw.socket.once('close', () => controller.abort())
  return verifyDag(options.blockstore, manifest.body, {
    maxModelBytes: options.fold.headState().rules.maxModelBytes,
    signal: controller.signal,
  })
}
