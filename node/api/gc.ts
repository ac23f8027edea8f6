/**
 * `POST /admin/gc {dryRun}` (admin token; docs/adr/0031-scrubbing-and-clean-up.md): the weights
 * clean-up would let go now — uploads never ratified whose retention has run out — each with why
 * and the bytes it frees, and the total. Without `dryRun` they are let go before the answer.
 */
import type { FastifyInstance } from 'fastify'
import { NodeError } from '../errors.js'
import type { Cleanup, DueRoot } from '../weights/cleanup.js'
import type { RequireAdmin } from './admin.js'

/** The largest body: `{"dryRun": false}` with room for whitespace. */
export const GC_BODY_BYTES = 256

export interface GcRoutesOptions {
  readonly requireAdmin: RequireAdmin
  readonly cleanup: Cleanup
}

export interface GcAnswer {
  readonly dryRun: boolean
  readonly roots: { root: string; why: string; bytes: number; since: number; dueAt: number }[]
  readonly totalBytes: number
}

function answer(dryRun: boolean, due: readonly DueRoot[]): GcAnswer {
  return {
    dryRun,
    roots: due.map((d) => ({
      root: d.root.toString(),
      why: d.why,
      bytes: d.bytes,
      since: d.since,
      dueAt: d.dueAt,
    })),
    totalBytes: due.reduce((n, d) => n + d.bytes, 0),
  }
}

/** `{dryRun: boolean}`, or an empty body (a dry run is never assumed: it must be asked for). */
function dryRunOf(body: unknown): boolean {
  if (body === undefined || body === null) return false
  const dryRun = (body as { dryRun?: unknown }).dryRun
  if (
    typeof body !== 'object' ||
    Array.isArray(body) ||
    (dryRun !== undefined && typeof dryRun !== 'boolean')
  )
    throw new NodeError('bad-request', 'send {"dryRun": true} to list, or {"dryRun": false} to collect', {
      status: 400,
    })
  return dryRun === true
}

export function registerGcRoutes(app: FastifyInstance, options: GcRoutesOptions): void {
  app.post('/admin/gc', { bodyLimit: GC_BODY_BYTES }, async (req) => {
    options.requireAdmin(req)
    const dryRun = dryRunOf(req.body)
    const due = dryRun ? await options.cleanup.plan() : await options.cleanup.collect()
    return answer(dryRun, due)
  })
}
