/**
 * Building, signing and submitting records against a node's view: its federation, head and
 * rules (GET /state), and the manifests of a `name@version` (GET /models/N@V).
 */
import { CID } from 'multiformats/cid'
import type { AnyVerified, Member, RecordReport, Rules } from '../protocol/index.js'
import type { NodeClient, RecordAnswer } from './client.js'
import { CliError, type Ctx, usage } from './context.js'

export interface StateView {
  federation: string
  head: string
  height: number
  members: Member[]
  rules: Rules
}

export interface ModelAnswer {
  name: string
  version: string
  status: 'ratified' | 'conflicted' | 'revoked' | 'proposed'
  manifest: string | null
  proposal: string | null
  manifests: { id: string; status: string; base: string | null; ratifiedBy: string[]; revokedBy: string[] }[]
  stateRoot: string
}

export function parseCidArg(text: string, what: string): CID {
  try {
    return CID.parse(text.trim())
  } catch {
    throw usage(`${what}: not a CID: ${text}`)
  }
}

/** `name@version` (the name may hold one "/"). */
export function parseModelRef(text: string): { name: string; version: string; key: string } {
  const at = text.lastIndexOf('@')
  if (at <= 0 || at === text.length - 1)
    throw usage(`expected NAME@VERSION, e.g. mistral-7b-de@1.2.0, not "${text}"`)
  return { name: text.slice(0, at), version: text.slice(at + 1), key: text }
}

export async function getModel(client: NodeClient, ref: string): Promise<ModelAnswer> {
  const { key } = parseModelRef(ref)
  return client.get<ModelAnswer>(`/models/${encodeURIComponent(key)}`)
}

/**
 * The manifest a command about `N@V` means: the one given with --manifest, else the ratified
 * one, else the only applicable one. Two rival manifests without --manifest are a usage error.
 */
export async function resolveManifest(client: NodeClient, ref: string, given?: string): Promise<CID> {
  if (given !== undefined) return parseCidArg(given, '--manifest')
  const m = await getModel(client, ref)
  if (m.manifest) return CID.parse(m.manifest)
  if (m.manifests.length === 1) return CID.parse(m.manifests[0]!.id)
  if (m.manifests.length === 0)
    throw new CliError('unknown-model', `no applicable manifest of ${ref} is known to the node`)
  throw usage(
    `${ref} has ${m.manifests.length} rival manifests (${m.manifests.map((x) => x.id).join(', ')}); choose one with --manifest CID`,
  )
}

/**
 * Submits a signed record and reports the node's verdict: a rejection (4xx) or a record the
 * fold finds inapplicable is exit 1; pending is fine (it applies once what it waits for arrives).
 */
export async function submit(ctx: Ctx, client: NodeClient, v: AnyVerified): Promise<RecordAnswer> {
  const answer = await client.postRecord(v.bytes)
  const report = answer.report as RecordReport | undefined
  if (report?.status === 'inapplicable' || report?.status === 'invalid') {
    throw new CliError(
      report.code,
      `the node holds ${answer.id} but it has no effect: ${report.message} (${report.code})`,
    )
  }
  if (report?.status === 'pending')
    ctx.note(`pending: ${report.message} (${report.code}); it applies once that arrives`)
  if (answer.duplicate) ctx.note('the node already held this record')
  return answer
}
