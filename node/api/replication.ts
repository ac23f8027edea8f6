/**
 * The replication routes (docs/adr/0029-holding-announcements.md), open to anyone who can reach
 * the API like the other views: `GET /replication` (every ratified version, who holds it,
 * where, when they last verified it, flagged below `minHolders`), `GET /replication?model=N@V`
 * (one version, of any status), `GET /holdings/bindings` (the members' current bindings), and
 * `POST /holdings/bindings` (a member-signed binding, self-authenticating like a record: checked,
 * stored, gossiped).
 */
import type { FastifyInstance } from 'fastify'
import { NodeError } from '../errors.js'
import type { TakeResult } from '../holdings/intake.js'
import { MAX_HOLDINGS_MESSAGE_BYTES } from '../holdings/wire.js'
import type { NodeHoldings } from '../parts/holdings.js'

/** The longest `name@version` a query may name (a model name and a version, each at most 256 bytes). */
const MAX_MODEL_KEY_CHARS = 600

export type ReplicationRoutesOptions = Pick<
  NodeHoldings,
  'report' | 'version' | 'minHolders' | 'bindings' | 'submitBinding'
>

export function registerReplicationRoutes(app: FastifyInstance, holdings: ReplicationRoutesOptions): void {
  app.get('/replication', async (req) => {
    const model = (req.query as Record<string, unknown>).model
    if (model === undefined) return holdings.report()
    if (
      typeof model !== 'string' ||
      model.length === 0 ||
      model.length > MAX_MODEL_KEY_CHARS ||
      !model.includes('@')
    )
      throw new NodeError(
        'bad-model',
        `model must be one name@version of at most ${MAX_MODEL_KEY_CHARS} characters`,
        {
          status: 400,
        },
      )
    // One version's entry only: the whole report costs every ratified version.
    return { minHolders: holdings.minHolders(), versions: [holdings.version(model)] }
  })
  app.get('/holdings/bindings', async () => ({ bindings: holdings.bindings() }))
  app.post('/holdings/bindings', { bodyLimit: MAX_HOLDINGS_MESSAGE_BYTES }, async (req, reply) => {
    const body = req.body
    if (!(body instanceof Uint8Array))
      throw new NodeError('unsupported-media-type', 'send the signed binding as application/cbor', {
        status: 415,
      })
    const taken = await holdings.submitBinding(new Uint8Array(body))
    if (taken.verdict === 'accept') return reply.code(201).send({ stored: true })
    if (taken.reason === 'duplicate') return reply.code(200).send({ stored: false, duplicate: true })
    throw refusalError(taken)
  })
}

/** A refused binding as the API's error: a stable code and what to do about it. */
function refusalError(taken: TakeResult): NodeError {
  const reason = taken.reason ?? 'malformed'
  const detail = taken.message ? `: ${taken.message}` : ''
  switch (reason) {
    case 'not-member':
      return new NodeError('binding-not-member', `only a member of the federation may bind nodes${detail}`, {
        status: 403,
      })
    case 'stale':
      return new NodeError(
        'binding-stale',
        'this node holds a newer binding of that member; sign a new one',
        {
          status: 409,
        },
      )
    case 'future':
      return new NodeError(
        'binding-future',
        "the binding's at is ahead of this node's clock; check the clock",
        {
          status: 400,
        },
      )
    case 'store-full':
      return new NodeError('binding-store-full', 'this node holds as many bindings as it keeps', {
        status: 503,
      })
    default:
      return new NodeError(`binding-${reason}`, `the binding was refused (${reason})${detail}`, {
        status: 400,
      })
  }
}
