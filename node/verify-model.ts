/**
 * Checking a model directory against its federation, offline (protocol/SPEC.md §12): a
 * certificate, verified from the federation id alone, proves the version's status and its
 * manifest; then the files are checked against that manifest. The result is `{ok, status,
 * problems}`; `ok` only when a certificate proves the version ratified and every file matches.
 * The library's `verifyModel`; an online check (a node's certificate, and its live word that may
 * only make the verdict stricter) builds on the same steps.
 */
import { CID } from 'multiformats/cid'
import {
  type CertificateVerdict,
  type ManifestBody,
  type TrustedHead,
  type TrustMark,
  verifyCertificate,
} from '../protocol/index.js'
import { verifyDirectory } from './weights/verify-directory.js'

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
  /** The high-water mark to keep for the federation (when a certificate was verified), with its head once it moved. */
  readonly trusted?: TrustMark | TrustedHead
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
  readonly trusted?: TrustMark | TrustedHead
  /** The certificate's own verdict, when one was verified: its checkpoint, mode and chain start. */
  readonly certificate?: CertificateVerdict
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
  /**
   * The highest checkpoint accepted before for this federation: nothing older is accepted. With
   * its head and state (a TrustedHead), certificates whose chain starts after that head verify too.
   */
  readonly trusted?: TrustMark | TrustedHead
  /** Also recompute the UnixFS root of the files. */
  readonly cid?: boolean
}

export function statusProblem(model: string, status: string): ModelProblem | undefined {
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
    certificate: verdict,
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
