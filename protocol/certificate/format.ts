/**
 * Certificates (SPEC.md §12): the cap, the clock bound, the problem codes and the types a
 * verifier and its callers share.
 */

import type { CID } from 'multiformats/cid'
import type { Ed25519Backend } from '../ed25519.js'
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
] as const
export type CertificateProblemCode = (typeof CERTIFICATE_PROBLEMS)[number]

export interface CertificateProblem {
  readonly code: CertificateProblemCode
  readonly message: string
}

/** The highest checkpoint a verifier has accepted for a federation: never go below it. */
export interface TrustMark {
  readonly height: number
  readonly epoch: number
}

export interface VerifyCertificateOptions {
  /** The verifier's clock, in ms since the epoch. */
  readonly now: number
  /** Oldest acceptable checkpoint age; default 2 × checkpointIntervalMs of state(head). */
  readonly maxAgeMs?: number
  /** The high-water mark seen so far (rollback protection). */
  readonly trusted?: TrustMark
  /** The name@version the caller expects, if any. */
  readonly model?: string
  readonly ed25519?: Ed25519Backend
  readonly maxBytes?: number
}

export interface CertificateVerdict {
  readonly ok: boolean
  readonly model?: string
  readonly status: EntryStatus | 'unknown'
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
  /** The high-water mark to keep: the checkpoint's if it is newer and counted, else the one given. */
  readonly trusted?: TrustMark
  readonly problems: readonly CertificateProblem[]
}
