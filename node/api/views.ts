/**
 * Read-only views of the fold's state: `/state`, `/members`, `/proposals[/:id]`,
 * `/models[/name@version]`, and `/certificates/name@version`, the CARv1 a deployer verifies
 * offline (SPEC.md §12).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { checkpointDue, uncoveredDecisions } from '../../protocol/checkpoint-due.js'
import {
  type BuildCertificateOptions,
  type CertificateExport,
  cidKey,
  exportCertificate,
  stateRoot,
} from '../../protocol/index.js'
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
  app.get('/certificates/*', async (req, reply) =>
    certificate(options, pathKey(req), exportOptions(req.query as Record<string, string>), reply),
  )
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

/** `?mode=full|compact&since=CID` of `GET /certificates/…` (compact from the genesis by default). */
function exportOptions(query: Record<string, string>): BuildCertificateOptions {
  const mode = query.mode ?? 'compact'
  if (mode !== 'full' && mode !== 'compact')
    // The query is a stranger's text: named, not echoed back.
    throw new NodeError('bad-mode', 'mode is "full" or "compact" (or absent: compact)', { status: 400 })
  return { mode, ...(query.since ? { since: parseCid(query.since) } : {}) }
}

/**
 * `GET /certificates/name@version`: a CARv1 to verify offline, or when the covering checkpoint is
 * due. Headers say what was exported: `x-certificate-mode`, `x-certificate-since` (a CID, or
 * `genesis`) and, when a `since` asked for could not be used, `x-certificate-since-refused`.
 */
function certificate(
  options: ViewRoutesOptions,
  key: string,
  exportAs: BuildCertificateOptions,
  reply: FastifyReply,
) {
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
  let made: CertificateExport
  try {
    made = exportCertificate(fold, key, exportAs)
  } catch (e) {
    const tooLarge = (e as { code?: string }).code === 'cert-too-large'
    throw new NodeError(tooLarge ? 'cert-too-large' : 'no-certificate', (e as Error).message, {
      status: tooLarge ? 413 : 404,
    })
  }
  reply.header('x-certificate-mode', made.mode)
  reply.header('x-certificate-since', made.since?.toString() ?? 'genesis')
  if (made.sinceRefused) reply.header('x-certificate-since-refused', made.sinceRefused)
  return reply.type(CAR_TYPE).send(Buffer.from(made.bytes))
}
