/**
 * Checking a model directory against its federation (DESIGN.md §5, §7 `verify`): offline with a
 * certificate (the checkpointed status, then every file against the certified manifest), or
 * online against a node's view (its status for name@version and the manifest record it holds).
 * The result is `{ok, status, problems}`; `ok` only when the version is ratified and the files
 * match.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { verifyDirectory } from '../node/weights/verify.js'
import {
  type AnyVerified,
  decodeRecord,
  type ManifestBody,
  type TrustMark,
  verifyCertificate,
} from '../protocol/index.js'
import type { NodeClient } from './client.js'
import { CliError } from './context.js'
import { allmendeHome } from './identity.js'
import { getModel } from './records.js'

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
  /** The high-water mark to keep for the federation (offline only). */
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

async function checkFiles(dir: string, body: ManifestBody, cid: boolean): Promise<ModelProblem[]> {
  const r = await verifyDirectory(dir, body, { cid })
  return r.problems.map((p) => ({
    code: p.code,
    ...(p.path !== undefined ? { path: p.path } : {}),
    message: p.message,
  }))
}

/** Offline: the certificate proves the status and the manifest; the files are checked against it. */
export async function verifyModel(dir: string, options: VerifyModelOptions): Promise<ModelVerdict> {
  const federation =
    typeof options.federation === 'string' ? CID.parse(options.federation) : options.federation
  const verdict = verifyCertificate(federation, options.certificate, {
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
  if (verdict.manifestRecord) {
    problems.push(...(await checkFiles(dir, verdict.manifestRecord.record.body, options.cid === true)))
  }
  return {
    ok: verdict.ok && verdict.status === 'ratified' && problems.length === 0,
    status: verdict.status,
    ...(verdict.manifest ? { manifest: verdict.manifest.toString() } : {}),
    problems,
    ...(verdict.trusted ? { trusted: verdict.trusted } : {}),
  }
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

/** Online: the node's status for the version, and the manifest record it holds (signature checked). */
export async function verifyModelOnline(
  dir: string,
  client: NodeClient,
  model: string,
  options: { cid?: boolean; federation?: CID } = {},
): Promise<ModelVerdict> {
  const m = await getModel(client, model)
  const manifestId = m.manifest ?? (m.manifests.length === 1 ? m.manifests[0]!.id : undefined)
  const problems: ModelProblem[] = []
  const s = statusProblem(model, m.status)
  if (s) problems.push(s)
  if (manifestId === undefined) {
    problems.push({
      code: 'no-manifest',
      message: `${model} has ${m.manifests.length} rival manifests and none is ratified`,
    })
    return { ok: false, status: m.status, problems }
  }
  const body = await fetchManifest(client, manifestId, options.federation)
  problems.push(...(await checkFiles(dir, body, options.cid === true)))
  return {
    ok: m.status === 'ratified' && problems.length === 0,
    status: m.status,
    manifest: manifestId,
    problems,
  }
}

// ------------------------------------------------------------ the verifier's trust marks

export function trustPath(federation: string, home: string = allmendeHome()): string {
  return join(home, 'trust', `${federation}.json`)
}

/** The highest checkpoint accepted so far for a federation, if any. */
export async function readTrust(federation: string, home?: string): Promise<TrustMark | undefined> {
  let text: string
  try {
    text = await readFile(trustPath(federation, home), 'utf8')
  } catch {
    return undefined
  }
  try {
    const v = JSON.parse(text) as { height?: unknown; epoch?: unknown }
    if (Number.isSafeInteger(v.height) && Number.isSafeInteger(v.epoch))
      return { height: v.height as number, epoch: v.epoch as number }
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
