/**
 * Checking a model directory online (`allmende verify` and `exec` with a node): the node's
 * certificate is verified exactly as offline (node/verify-model.ts, the same trust mark); then the
 * node's live word, which may only make the verdict stricter (a revocation or a conflict that is
 * final but not yet covered by a checkpoint refuses the model, said to be unconfirmed). A node's
 * "ratified" without a covering certificate never passes. The node is asked for the mode wanted and
 * for a chain that starts after the trusted head, when one is kept (docs/adr/0026).
 */
import type { CID } from 'multiformats/cid'
import { fastEd25519 } from '../node/ed25519-native.js'
import { type ModelProblem, proveWithCertificate, type StatusProof, statusProblem } from '../node/index.js'
import {
  type AnyVerified,
  type CertificateMode,
  decodeRecord,
  isTrustedHead,
  MAX_CERTIFICATE_BYTES,
  type ManifestBody,
} from '../protocol/index.js'
import type { NodeClient } from './client.js'
import { CliError, EXIT } from './context.js'
import { getModel, type ModelAnswer } from './records.js'
import type { KeptTrust } from './trust-marks.js'

/**
 * The manifest record `manifestId` from the node, its signature and CID checked (node:crypto's
 * Ed25519 with its ZIP-215 fallback: the pure-JS check's first verification costs about 0.1 s).
 */
export async function fetchManifest(
  client: NodeClient,
  manifestId: string,
  federation?: CID,
): Promise<ManifestBody> {
  const bytes = await client.getBytes(`/records/${encodeURIComponent(manifestId)}`, 'application/cbor')
  const decoded = decodeRecord(bytes, { ed25519: fastEd25519, ...(federation ? { federation } : {}) })
  if (!decoded.ok) throw new CliError('bad-answer', `the node's manifest ${manifestId}: ${decoded.message}`)
  const record: AnyVerified = decoded.value
  if (record.cid.toString() !== manifestId || record.record.kind !== 'manifest')
    throw new CliError('bad-answer', `the node answered another record for manifest ${manifestId}`)
  return record.record.body as ManifestBody
}

/** A node's certificate for a version, or why it served none (its error, e.g. `not-covered`). */
export type NodeCertificate =
  | {
      readonly car: Uint8Array
      /** The node's reason, when a `since` asked for could not be used (the chain starts at the genesis). */
      readonly sinceRefused?: string
    }
  | { readonly refused: { readonly code: string; readonly message: string; readonly dueAt?: number } }

/** Which certificate to ask a node for: its mode, and the trusted head its chain may start after. */
export interface CertificateRequest {
  readonly mode?: CertificateMode
  readonly since?: CID
}

/** `/certificates/N@V?mode=…&since=…`, the node's export route (a node that predates them ignores both). */
export function certificatePath(model: string, request: CertificateRequest = {}): string {
  const query = new URLSearchParams()
  if (request.mode !== undefined) query.set('mode', request.mode)
  if (request.since !== undefined) query.set('since', request.since.toString())
  const search = query.toString()
  return `/certificates/${encodeURIComponent(model)}${search ? `?${search}` : ''}`
}

/**
 * `GET /certificates/N@V`. An answer with an error status is the node's refusal (with `dueAt`
 * when it says when a covering checkpoint is due); a node that cannot be reached is thrown. The
 * body is bounded by the certificate size cap: a hostile node cannot fill memory.
 */
export async function fetchCertificate(
  client: NodeClient,
  model: string,
  request: CertificateRequest = {},
): Promise<NodeCertificate> {
  try {
    const answer = await client.getBytesAnswer(
      certificatePath(model, request),
      'application/vnd.ipld.car',
      MAX_CERTIFICATE_BYTES + 1,
    )
    const sinceRefused = answer.headers.get('x-certificate-since-refused')
    return { car: answer.bytes, ...(sinceRefused ? { sinceRefused } : {}) }
  } catch (e) {
    if (!(e instanceof CliError) || e.exit !== EXIT.failed) throw e
    const dueAt = e.details.dueAt
    return {
      refused: {
        code: e.code,
        message: e.message,
        ...(typeof dueAt === 'number' && Number.isSafeInteger(dueAt) ? { dueAt } : {}),
      },
    }
  }
}

/** `at 2025-05-01T12:00:05.000Z (in 7 s)`: a due time for people, against this machine's clock. */
export function dueText(dueAt: number, now: number = Date.now()): string {
  const s = Math.round((dueAt - now) / 1000)
  return `at ${new Date(dueAt).toISOString()} (${s >= 0 ? `in ${s} s` : `${-s} s ago`})`
}

export interface OnlineOptions {
  /** The federation the certificate must chain to (pinned, or given). */
  readonly federation: CID
  /** The kept trust: the node is asked for a chain after its head, when it names one. */
  readonly trusted?: KeptTrust
  /** The kind of certificate to ask for (default: the node's, compact). */
  readonly mode?: CertificateMode
  readonly maxAgeMs?: number
  readonly now?: number
}

/**
 * Online: the node's certificate, verified exactly as offline; then the node's live word, which
 * may only make the verdict stricter (docs/adr/0007). Without a covering certificate the version
 * never passes: the status is then the node's word, and the manifest it names (signature and
 * federation checked) is only used to name bad files.
 */
export async function proveOnline(
  client: NodeClient,
  model: string,
  options: OnlineOptions,
): Promise<StatusProof> {
  const served = await fetchCertificate(client, model, {
    ...(options.mode !== undefined ? { mode: options.mode } : {}),
    ...(isTrustedHead(options.trusted) ? { since: options.trusted.head } : {}),
  })
  const proof =
    'car' in served
      ? proveWithCertificate({
          model,
          certificate: served.car,
          federation: options.federation,
          ...(options.now !== undefined ? { now: options.now } : {}),
          ...(options.maxAgeMs !== undefined ? { maxAgeMs: options.maxAgeMs } : {}),
          ...(options.trusted !== undefined ? { trusted: options.trusted } : {}),
        })
      : undefined
  // The node's live word (throws unknown-model when it knows nothing of the version).
  const live = await getModel(client, model)
  const dueAt = 'refused' in served ? served.refused.dueAt : undefined
  const when =
    dueAt !== undefined
      ? `the checkpoint that will confirm it is due ${dueText(dueAt, options.now)}`
      : 'no checkpoint confirms it yet'
  if (proof && proof.status !== 'unknown') {
    const news = stricterNews(client, model, live, proof.status, when)
    return news ? { ...proof, status: live.status, problems: [...proof.problems, news] } : proof
  }
  // No certificate that proves a status: only the node's word, which never passes. (A certificate
  // with no decision under its checkpoint is said below, with what the node claims.)
  const problems = (proof?.problems ?? []).filter((p) => p.code !== 'cert-not-ratified')
  let status = proof?.status ?? 'unknown'
  if (live.status === 'ratified') {
    const why =
      'refused' in served
        ? `it serves no certificate for it (${served.refused.code}: ${served.refused.message})`
        : 'its certificate does not cover the decision'
    problems.push({
      code: 'ratified-unconfirmed',
      message: `the node at ${client.base} says ${model} is ratified, but ${why}; a node's word alone never passes. ${dueAt !== undefined ? `The checkpoint covering the decision is due ${dueText(dueAt, options.now)}: try again then` : 'Try again once a checkpoint covers it'}`,
    })
  } else {
    status = live.status
    problems.push(stricterNews(client, model, live, 'unknown', when) ?? statusProblem(model, live.status)!)
  }
  const named = await namedManifest(client, live, options.federation)
  return {
    status,
    certified: false,
    problems,
    ...named,
    ...(proof?.trusted ? { trusted: proof.trusted } : {}),
  }
}

/** A final revocation or conflict the node holds that the certificate does not show yet. */
function stricterNews(
  client: NodeClient,
  model: string,
  live: ModelAnswer,
  certified: string,
  when: string,
): ModelProblem | undefined {
  if ((live.status !== 'revoked' && live.status !== 'conflicted') || live.status === certified)
    return undefined
  const by = live.proposal ? ` by ${live.proposal}` : ''
  return {
    code: `${live.status}-unconfirmed`,
    message: `the node at ${client.base} says ${model} is ${live.status}${by}, final but not yet covered by a counted checkpoint: the node's unconfirmed word, and ${when}; refused until then`,
  }
}

/** The manifest the node names for the version (signature and federation checked), to name bad files. */
async function namedManifest(
  client: NodeClient,
  live: ModelAnswer,
  federation: CID,
): Promise<{ manifestId?: string; manifest?: ManifestBody }> {
  const id = live.manifest ?? (live.manifests.length === 1 ? live.manifests[0]!.id : undefined)
  if (id === undefined) return {}
  try {
    return { manifestId: id, manifest: await fetchManifest(client, id, federation) }
  } catch (e) {
    // Only to name bad files: a node that will not serve it changes nothing (the version is refused).
    if (e instanceof CliError && e.exit === EXIT.failed) return {}
    throw e
  }
}
