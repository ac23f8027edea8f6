/**
 * Certificates (SPEC.md §12): the cap, the clock bound, the problem codes and the types a
 * verifier and its callers share. Why two modes and a trusted head: docs/adr/0020 and 0021.
 */

import type { CID } from 'multiformats/cid'
import type { Ed25519Backend } from '../ed25519.js'
import type { GovState } from '../govstate.js'
import type { Verified } from '../record.js'
import type { EntryStatus } from '../stateroot.js'

export const MAX_CERTIFICATE_BYTES = 64 * 1024 * 1024

/**
 * How far ahead of the verifier's clock a checkpoint may seem to be signed (SPEC.md §12.2). No
 * honest steward signs a checkpoint before `epoch + sealDeadlineMs`; one dated later than
 * `now + MAX_CLOCK_SKEW_MS` is refused, so a checkpoint dated in the future can neither stay
 * fresh for ever nor raise a verifier's trust mark past its own clock. Five minutes is the usual
 * bound for clocks that are meant to agree (Kerberos' default): hosts kept by NTP are within a
 * second of each other, a laptop or build runner that drifted for days is still within it, and
 * it lets a checkpoint signed ahead of time gain at most five minutes of freshness.
 */
export const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000

export const CERTIFICATE_PROBLEMS = [
  'cert-too-large',
  'cert-car',
  'cert-header',
  'cert-genesis-mismatch',
  'cert-block-invalid',
  'cert-block-missing',
  'cert-record-invalid',
  'cert-checkpoint-unsigned',
  'cert-checkpoint-signer',
  'cert-stale',
  'cert-future',
  'cert-rollback',
  'cert-proof',
  'cert-wrong-model',
  'cert-not-ratified',
  'cert-revoked',
  'cert-conflicted',
  'cert-ratification-unproven',
  'cert-not-canonical',
  'cert-version-unsupported',
  'cert-checkpoint-invalid',
  'cert-suspended',
  'cert-tainted',
  'cert-since',
] as const
export type CertificateProblemCode = (typeof CERTIFICATE_PROBLEMS)[number]

/** Problems after which nothing else is checked (SPEC.md §12.2): the file cannot be read further. */
export const STOPPING_PROBLEMS: ReadonlySet<CertificateProblemCode> = new Set([
  'cert-too-large',
  'cert-car',
  'cert-header',
  'cert-genesis-mismatch',
  'cert-since',
])

/** Problems about the model's status or age, not about the certificate's integrity: the mark may move. */
export const STATUS_PROBLEMS: ReadonlySet<CertificateProblemCode> = new Set([
  'cert-stale',
  'cert-revoked',
  'cert-conflicted',
  'cert-not-ratified',
  'cert-suspended',
  'cert-tainted',
])

export interface CertificateProblem {
  readonly code: CertificateProblemCode
  readonly message: string
}

/**
 * `full` re-tallies every governance step from its votes; `compact` takes each governance step
 * on the word of t stewards of the state before it (docs/adr/0020).
 */
export type CertificateMode = 'full' | 'compact'
export const CERTIFICATE_MODES: readonly CertificateMode[] = ['full', 'compact']

/** The highest checkpoint a verifier has accepted for a federation: never go below it. */
export interface TrustMark {
  readonly height: number
  readonly epoch: number
}

/**
 * What a verifier keeps, as TUF keeps its trusted root: the mark, the governance head of the
 * checkpoint it last accepted, and that head's state (its stewards, threshold and rules), from
 * which a `--since` certificate continues the chain (docs/adr/0021).
 */
export interface TrustedHead extends TrustMark {
  readonly head: CID
  readonly state: GovState
}

export function isTrustedHead(trust: TrustMark | TrustedHead | undefined): trust is TrustedHead {
  return trust !== undefined && 'head' in trust && 'state' in trust
}

/** The header block (the CAR's root), as read; version 1 headers read as full, from the genesis. */
export interface CertificateHeader {
  readonly version: 1 | 2
  readonly federation: CID
  /** `name@version` */
  readonly model: string
  readonly genesis: CID
  /** The smallest CID among the steward-signed copies of the newest counted checkpoint. */
  readonly checkpoint: CID
  readonly mode: CertificateMode
  /** The governance head the chain starts after, or null: from the genesis. */
  readonly since: CID | null
}

export interface VerifyCertificateOptions {
  /** The verifier's clock, in ms since the epoch. */
  readonly now: number
  /** Oldest acceptable checkpoint age; default 2 × checkpointIntervalMs of state(head). */
  readonly maxAgeMs?: number
  /** The high-water mark seen so far (rollback protection); a TrustedHead to verify `--since` files. */
  readonly trusted?: TrustMark | TrustedHead
  /** The name@version the caller expects, if any. */
  readonly model?: string
  readonly ed25519?: Ed25519Backend
  readonly maxBytes?: number
}

export interface CertificateVerdict {
  readonly ok: boolean
  readonly model?: string
  readonly status: EntryStatus | 'unknown'
  /** Which kind of file was checked (the header's; `full` when no header could be read). */
  readonly mode: CertificateMode
  /** The trusted head the file's chain starts after, for a `--since` certificate. */
  readonly since?: CID
  readonly manifest?: CID
  /** The manifest record, for checking files against it. */
  readonly manifestRecord?: Verified<'manifest'>
  /** The deciding proposal (ratification, or revocation when revoked). */
  readonly proposal?: CID
  readonly checkpoint?: {
    readonly cid: CID
    readonly epoch: number
    readonly height: number
    readonly age: number
  }
  /**
   * What to keep: a TrustedHead of this checkpoint when the mark moves to it (newer or equal,
   * no integrity problem), else the `trusted` given.
   */
  readonly trusted?: TrustMark | TrustedHead
  readonly problems: readonly CertificateProblem[]
}

export interface BuildCertificateOptions {
  /** Default `compact`. */
  readonly mode?: CertificateMode
  /** A governance head the verifier already trusts: the chain starts after it. */
  readonly since?: CID
  /** The export cap; default MAX_CERTIFICATE_BYTES. */
  readonly maxBytes?: number
}

/** What an export made, and why a `since` asked for was not used. */
export interface CertificateExport {
  readonly bytes: Uint8Array
  readonly mode: CertificateMode
  /** The head the chain starts after, or null (from the genesis). */
  readonly since: CID | null
  /** Set when `since` was asked for but the file starts at the genesis: the reason. */
  readonly sinceRefused?: string
}
