/**
 * Checking a model directory against its federation (DESIGN.md §5, §7 `verify`). The status is
 * proven by a certificate, verified from the federation id alone — a file (offline), or the one
 * a node serves (online), by the same function with the same trust mark. Then the files are
 * checked against the certified manifest. The result is `{ok, status, problems}`; `ok` only when
 * a certificate proves the version ratified and every file matches.
 *
 * Online, the node's live word may only make the verdict stricter (a revocation or a conflict
 * that is final but not yet covered by a checkpoint refuses the model, said to be unconfirmed);
 * a node's "ratified" without a covering certificate never passes.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { verifyDirectory } from '../node/weights/verify.js'
import {
  type AnyVerified,
  type CertificateVerdict,
  decodeRecord,
  MAX_CERTIFICATE_BYTES,
  MAX_CLOCK_SKEW_MS,
  type ManifestBody,
  type TrustMark,
  verifyCertificate,
} from '../protocol/index.js'
import type { NodeClient } from './client.js'
import { CliError, EXIT } from './context.js'
import { allmendeHome } from './identity.js'
import { getModel, type ModelAnswer } from './records.js'

export interface ModelProblem {
  readonly code: string
  readonly path?: string
  readonly message: string
}

export interface ModelVerdict {
  readonly ok: boolean
  /** 'ratified' | 'conflicted' | 'revoked' | 'proposed', or 'unknown' when it could not be proven. */
  readonly status: string
  readonly manifest?: string
  readonly problems: readonly ModelProblem[]
  /** The high-water mark to keep for the federation (when a certificate was verified). */
  readonly trusted?: TrustMark
}

/**
 * What is known about a version before its files are read: its status, how it was proven, the
 * manifest to check files against, and the problems so far.
 */
export interface StatusProof {
  readonly status: string
  /** True when a verified certificate proves the version ratified, with no problem (a node's word never does). */
  readonly certified: boolean
  readonly manifestId?: string
  readonly manifest?: ManifestBody
  readonly problems: readonly ModelProblem[]
  readonly trusted?: TrustMark
}

export interface VerifyModelOptions {
  /** name@version. */
  readonly model: string
  /** The certificate CAR (`allmende certificate export`). */
  readonly certificate: Uint8Array
  /** The federation id the certificate must chain to. */
  readonly federation: CID | string
  /** Oldest acceptable checkpoint age; default 2 × the federation's checkpoint interval. */
  readonly maxAgeMs?: number
  /** The clock, ms since the epoch; default now. */
  readonly now?: number
  /** The highest checkpoint accepted before for this federation: nothing older is accepted. */
  readonly trusted?: TrustMark
  /** Also recompute the UnixFS root of the files. */
  readonly cid?: boolean
}

function statusProblem(model: string, status: string): ModelProblem | undefined {
  if (status === 'ratified') return undefined
  const code = status === 'revoked' ? 'revoked' : status === 'conflicted' ? 'conflicted' : 'not-ratified'
  return { code, message: `${model} is ${status}, not ratified` }
}

/** The certificate verified exactly as offline (`verifyCertificate`), as a status proof. */
export function proveWithCertificate(options: Omit<VerifyModelOptions, 'cid'>): StatusProof {
  const federation =
    typeof options.federation === 'string' ? CID.parse(options.federation) : options.federation
  const verdict: CertificateVerdict = verifyCertificate(federation, options.certificate, {
    now: options.now ?? Date.now(),
    model: options.model,
    ...(options.maxAgeMs !== undefined ? { maxAgeMs: options.maxAgeMs } : {}),
    ...(options.trusted !== undefined ? { trusted: options.trusted } : {}),
  })
  const problems: ModelProblem[] = verdict.problems.map((p) => ({ code: p.code, message: p.message }))
  if (verdict.status !== 'unknown' && !problems.some((p) => p.code.startsWith('cert-'))) {
    const s = statusProblem(options.model, verdict.status)
    if (s) problems.push(s)
  }
  return {
    status: verdict.status,
    certified: verdict.ok,
    ...(verdict.manifest ? { manifestId: verdict.manifest.toString() } : {}),
    ...(verdict.manifestRecord ? { manifest: verdict.manifestRecord.record.body } : {}),
    problems,
    ...(verdict.trusted ? { trusted: verdict.trusted } : {}),
  }
}

/** The files of `dir` against the proof's manifest (when it has one), and the verdict. */
export async function checkFiles(
  dir: string,
  proof: StatusProof,
  options: { cid?: boolean; extra?: readonly ModelProblem[] } = {},
): Promise<ModelVerdict> {
  const problems = [...proof.problems, ...(options.extra ?? [])]
  if (proof.manifest) {
    const r = await verifyDirectory(dir, proof.manifest, { cid: options.cid === true })
    for (const p of r.problems)
      problems.push({ code: p.code, ...(p.path !== undefined ? { path: p.path } : {}), message: p.message })
  }
  return verdictOf(proof, problems)
}

/** The verdict from a proof and every problem found: ok only when certified ratified and clean. */
export function verdictOf(proof: StatusProof, problems: readonly ModelProblem[]): ModelVerdict {
  return {
    ok: proof.certified && proof.status === 'ratified' && problems.length === 0,
    status: proof.status,
    ...(proof.manifestId ? { manifest: proof.manifestId } : {}),
    problems,
    ...(proof.trusted ? { trusted: proof.trusted } : {}),
  }
}

/** Offline: the certificate proves the status and the manifest; the files are checked against it. */
export async function verifyModel(dir: string, options: VerifyModelOptions): Promise<ModelVerdict> {
  return checkFiles(dir, proveWithCertificate(options), { cid: options.cid === true })
}

/** The manifest record `manifestId` from the node, its signature and CID checked. */
export async function fetchManifest(
  client: NodeClient,
  manifestId: string,
  federation?: CID,
): Promise<ManifestBody> {
  const bytes = await client.getBytes(`/records/${encodeURIComponent(manifestId)}`, 'application/cbor')
  const decoded = decodeRecord(bytes, federation ? { federation } : {})
  if (!decoded.ok) throw new CliError('bad-answer', `the node's manifest ${manifestId}: ${decoded.message}`)
  const record: AnyVerified = decoded.value
  if (record.cid.toString() !== manifestId || record.record.kind !== 'manifest')
    throw new CliError('bad-answer', `the node answered another record for manifest ${manifestId}`)
  return record.record.body as ManifestBody
}

// ------------------------------------------------------------------ online: a node's certificate

/** A node's certificate for a version, or why it served none (its error, e.g. `not-covered`). */
export type NodeCertificate =
  | { readonly car: Uint8Array }
  | { readonly refused: { readonly code: string; readonly message: string; readonly dueAt?: number } }

/**
 * `GET /certificates/N@V`. An answer with an error status is the node's refusal (with `dueAt`
 * when it says when a covering checkpoint is due); a node that cannot be reached is thrown. The
 * body is bounded by the certificate size cap: a hostile node cannot fill memory.
 */
export async function fetchCertificate(client: NodeClient, model: string): Promise<NodeCertificate> {
  try {
    const car = await client.getBytes(
      `/certificates/${encodeURIComponent(model)}`,
      'application/vnd.ipld.car',
      MAX_CERTIFICATE_BYTES + 1,
    )
    return { car }
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
  readonly trusted?: TrustMark
  readonly maxAgeMs?: number
  readonly now?: number
}

/**
 * Online: the node's certificate, verified exactly as offline; then the node's live word, which
 * may only make the verdict stricter (DECISIONS 1). Without a covering certificate the version
 * never passes: the status is then the node's word, and the manifest it names (signature and
 * federation checked) is only used to name bad files.
 */
export async function proveOnline(
  client: NodeClient,
  model: string,
  options: OnlineOptions,
): Promise<StatusProof> {
  const served = await fetchCertificate(client, model)
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

// ------------------------------------------------------------ the verifier's trust marks

export function trustPath(federation: string, home: string = allmendeHome()): string {
  return join(home, 'trust', `${federation}.json`)
}

/**
 * The highest checkpoint accepted so far for a federation, if any. A mark whose epoch lies past
 * `now + MAX_CLOCK_SKEW_MS` was kept by an older version from a checkpoint dated in the future
 * (SPEC §12.3 now forbids it): it keeps its height, which still stops rollbacks, but not its
 * epoch, which would refuse every honest checkpoint of that height until the clock caught up.
 */
export async function readTrust(
  federation: string,
  home?: string,
  now: number = Date.now(),
): Promise<TrustMark | undefined> {
  let text: string
  try {
    text = await readFile(trustPath(federation, home), 'utf8')
  } catch {
    return undefined
  }
  try {
    const v = JSON.parse(text) as { height?: unknown; epoch?: unknown }
    if (Number.isSafeInteger(v.height) && Number.isSafeInteger(v.epoch)) {
      const epoch = (v.epoch as number) > now + MAX_CLOCK_SKEW_MS ? 0 : (v.epoch as number)
      return { height: v.height as number, epoch }
    }
  } catch {}
  throw new CliError('trust-corrupt', `${trustPath(federation, home)} is not a trust mark {height, epoch}`)
}

/** Keeps `mark` if it is higher than the one kept (atomically: a crash leaves the old one). */
export async function keepTrust(federation: string, mark: TrustMark, home?: string): Promise<void> {
  const old = await readTrust(federation, home)
  if (old && (old.height > mark.height || (old.height === mark.height && old.epoch >= mark.epoch))) return
  const path = trustPath(federation, home)
  await mkdir(join(path, '..'), { recursive: true })
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, `${JSON.stringify({ height: mark.height, epoch: mark.epoch })}\n`)
  await rename(tmp, path)
}
