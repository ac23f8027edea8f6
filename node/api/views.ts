/**
 * Read-only views of the fold's state: `/state`, `/members`, `/proposals[/:id]`,
 * `/models[/name@version]`, and `/certificates/name@version`, the CARv1 a deployer verifies
 * offline (SPEC.md §12).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { checkpointDue, uncoveredDecisions } from '../../protocol/checkpoint-due.js'
import { buildCertificate, cidKey, stateRoot } from '../../protocol/index.js'
import { NodeError } from '../errors.js'
import { parseCid } from '../http-params.js'
import { proposalJson, stateJson, toJson } from '../json.js'
import type { RecordStore } from '../store.js'
import { CAR_TYPE } from '../weights/http-contract.js'

export interface ViewRoutesOptions {
  readonly store: RecordStore
  readonly clock: () => number
}

export function registerViewRoutes(app: FastifyInstance, options: ViewRoutesOptions): void {
  const { store, clock } = options
  app.get('/state', async () => stateJson(store.fold.state()))
  app.get('/members', async () => ({ members: stateJson(store.fold.state()).members }))
  app.get('/proposals', async (req) => {
    const now = clock()
    const open = (req.query as Record<string, string>).open !== undefined
    const list = [...store.fold.state().proposals.values()]
      .map((p) => proposalJson(p, now))
      .filter((p) => !open || p.status === 'open')
      .sort((a, b) => (b.at as number) - (a.at as number))
    return { proposals: list }
  })
  app.get('/proposals/:id', async (req) => {
    const cid = parseCid((req.params as { id: string }).id)
    const p = store.fold.state().proposals.get(cidKey(cid))
    if (!p)
      throw new NodeError('unknown-proposal', `no proposal ${cid} is known to this node`, { status: 404 })
    return { ...proposalJson(p, clock()), countedVotes: store.fold.countedVotes(cid).map(String) }
  })
  app.get('/models', async () => {
    const state = store.fold.state()
    return { models: [...state.models.values()].map((m) => toJson(m)) }
  })
  // name@version may hold a "/" (organisation/name): take the rest of the path.
  app.get('/models/*', async (req) => modelView(store, pathKey(req)))
  app.get('/certificates/*', async (req, reply) => certificate(options, pathKey(req), reply))
}

/** The rest of the path, `name@version`, which may hold a "/". */
function pathKey(req: FastifyRequest): string {
  return decodeURIComponent((req.params as { '*': string })['*'])
}

/** `GET /models/name@version`: the model's status and every manifest of it. */
function modelView(store: RecordStore, key: string) {
  const state = store.fold.state()
  const m = state.models.get(key)
  if (!m) throw new NodeError('unknown-model', `no manifest of ${key} is known to this node`, { status: 404 })
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
}

/** `GET /certificates/name@version`: a CARv1 to verify offline, or when the covering checkpoint is due. */
function certificate(options: ViewRoutesOptions, key: string, reply: FastifyReply) {
  const fold = options.store.fold
  if (!fold.state().models.has(key))
    throw new NodeError('no-certificate', `no manifest of ${key} is known to this node`, { status: 404 })
  // A decision no counted checkpoint covers yet: a certificate now would prove an older state (or
  // nothing), so say when the covering checkpoint is due instead (SPEC.md §11.2).
  const pending = uncoveredDecisions(fold.state(), key)
  if (pending.length > 0) {
    const last = pending.reduce((a, b) => (b.closesAt > a.closesAt ? b : a))
    const due = checkpointDue(fold.headState().rules, last.closesAt, options.clock())
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
  return reply.type(CAR_TYPE).send(Buffer.from(car))
}
