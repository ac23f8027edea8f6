/**
 * Records over HTTP: `POST /records` (one record, or a seal as a CAR with its list blocks; open to
 * anyone, as records authenticate themselves by signature and are validated like gossip), and
 * `GET /records/:id` and `GET /manifests/:id`.
 */
import { CarBufferReader } from '@ipld/car/buffer-reader'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { isInvalidCode, type RejectionCode } from '../../protocol/index.js'
import { RECORDS_BODY_BYTES, requireRecordType } from '../api-limits.js'
import { NodeError } from '../errors.js'
import { parseCid } from '../http-params.js'
import { toJson } from '../json.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import type { RecordStore } from '../store.js'
import { CAR_TYPE } from '../weights/http-contract.js'
import { fail } from './reply.js'

export interface RecordRoutesOptions {
  readonly store: RecordStore
  readonly metrics: Metrics
  readonly log: Logger
  /** Best-effort gossip of bytes already made durable. */
  publish(bytes: Uint8Array): Promise<void>
  /** Counts a signature that did not verify against the sender (auth-throttle.ts). */
  badSignature(req: FastifyRequest): void
}

/** A body as a record and the list blocks sent with it. */
function unpack(body: Buffer, type: string | undefined): { record: Uint8Array; blocks: Uint8Array[] } {
  const bytes = new Uint8Array(body.buffer, body.byteOffset, body.byteLength)
  if (type?.startsWith(CAR_TYPE)) {
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

export function registerRecordRoutes(app: FastifyInstance, options: RecordRoutesOptions): void {
  const { store } = options
  app.get('/records/:id', async (req, reply) => {
    const cid = parseCid((req.params as { id: string }).id)
    const r = store.fold.get(cid)
    const block = r ? r.bytes : store.getBlock(cid)
    if (!block)
      throw new NodeError('unknown-record', `no record or list block ${cid} is held here`, { status: 404 })
    const accept = req.headers.accept ?? ''
    if (r && accept.includes('application/json')) {
      return { id: cid.toString(), record: toJson(r.record), report: store.fold.report(cid) }
    }
    return reply.type('application/cbor').send(Buffer.from(block))
  })
  app.get('/manifests/:id', async (req) => {
    const cid = parseCid((req.params as { id: string }).id)
    const r = store.fold.get(cid)
    if (r?.record.kind !== 'manifest')
      throw new NodeError('unknown-manifest', `no manifest ${cid} is held here`, { status: 404 })
    return {
      id: cid.toString(),
      author: r.record.author,
      at: r.record.at,
      ...(toJson(r.record.body) as object),
      report: store.fold.report(cid),
    }
  })
  registerRecordIngest(app, options)
}

/** `POST /records`: one record or a seal with its lists (api-limits.ts); another type is refused before its body. */
function registerRecordIngest(app: FastifyInstance, options: RecordRoutesOptions): void {
  const { store, metrics, log } = options
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
    const result = await store.ingest(record, blocks)
    metrics.ingestSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9)
    if (result.verdict === 'reject') {
      const code = (result.code ?? 'invalid') as RejectionCode
      if (code === 'sig-invalid' || code === 'genesis-cosig-invalid') options.badSignature(req)
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
      options.publish(record).catch((e) => log.warn('publish-failed', { error: e as Error }))
    }
    return reply.code(result.duplicate ? 200 : 201).send({
      id: result.record!.cid.toString(),
      duplicate: result.duplicate === true,
      report: result.report,
    })
  })
}
