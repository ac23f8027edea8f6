/**
 * The stable rejection codes (SPEC.md §9). A code, once published, keeps its
 * meaning: nodes, the CLI and other implementations match on it.
 *
 * Codes starting with `cbor-`, `record-`, `schema-`, `did-`, `sig-`,
 * `genesis-` and `federation-` are *invalid*: the bytes can never count and
 * gossip rejects them. Codes of the fold (`CODES_INAPPLICABLE`) are
 * *inapplicable*: the record is valid and kept, but counts nowhere.
 */
export const CODES_INVALID = [
  // bytes
  'cbor-empty',
  'cbor-truncated',
  'cbor-trailing-bytes',
  'cbor-too-large',
  'cbor-too-deep',
  'cbor-indefinite-length',
  'cbor-non-minimal',
  'cbor-float',
  'cbor-undefined',
  'cbor-simple-value',
  'cbor-tag',
  'cbor-invalid-cid',
  'cbor-map-key',
  'cbor-duplicate-key',
  'cbor-key-order',
  'cbor-invalid-utf8',
  'cbor-integer-range',
  'cbor-collection-too-large',
  'cbor-non-canonical',
  // record envelope and body
  'record-too-large',
  'schema-type',
  'schema-missing-field',
  'schema-unknown-field',
  'schema-unknown-kind',
  'schema-version',
  'schema-range',
  'schema-length',
  'schema-format',
  'schema-order',
  'schema-duplicate',
  // identities and signatures
  'did-prefix',
  'did-base58',
  'did-multicodec',
  'did-length',
  'did-non-canonical',
  'did-small-order',
  'did-mixed-order',
  'sig-length',
  'sig-invalid',
  // genesis and federation binding
  'genesis-cosig-missing',
  'genesis-cosig-extra',
  'genesis-cosig-invalid',
  'genesis-ill-formed',
  'federation-missing',
  'federation-present',
  'federation-mismatch',
  // canonical CID lists
  'list-count',
  'list-shape',
  'list-order',
  'list-block-missing',
  'list-block-invalid',
] as const

export const CODES_INAPPLICABLE = [
  'author-not-member',
  'author-role',
  'basis-not-closed',
  'basis-not-governance',
  'basis-not-chain',
  'basis-stale',
  'proposal-period',
  'proposal-void',
  'manifest-inapplicable',
  'action-member-exists',
  'action-member-unknown',
  'action-key-retired',
  'action-ill-formed',
  'vote-not-eligible',
  'vote-window',
  'attestation-late',
  'seal-not-steward',
  'seal-window',
  'seal-vote-invalid',
  'seal-voter-twice',
  'seal-attestation-invalid',
  'seal-auditor-twice',
  'seal-tally-mismatch',
  'seal-outcome-mismatch',
  'seal-weights-field',
  'checkpoint-not-steward',
  'checkpoint-head',
  'checkpoint-label',
  'checkpoint-epoch',
  // record versions (SPEC.md §5.1, Versions)
  'version-unsupported',
  'version-below-minimum',
] as const

/** Codes of records waiting for something: reported as pending, never as errors. */
export const CODES_PENDING = [
  'basis-unknown',
  'basis-pending',
  'proposal-unknown',
  'proposal-pending',
  'manifest-unknown',
  'record-unknown',
  'seal-list-pending',
  'checkpoint-list-pending',
] as const

/** Problems found when checking a state proof or a certificate (SPEC.md §11–§12). */
export const CODES_CERTIFICATE = ['proof-block-missing', 'proof-block-invalid', 'proof-shape'] as const

export const CODES = [...CODES_INVALID, ...CODES_INAPPLICABLE] as const

export type InvalidCode = (typeof CODES_INVALID)[number]
export type InapplicableCode = (typeof CODES_INAPPLICABLE)[number]
export type PendingCode = (typeof CODES_PENDING)[number]
export type CertificateCode = (typeof CODES_CERTIFICATE)[number]
export type RejectionCode = InvalidCode | InapplicableCode | CertificateCode

const invalidSet: ReadonlySet<string> = new Set(CODES_INVALID)

/** True for codes that make a record invalid (gossip *reject*), false for inapplicable ones. */
export function isInvalidCode(code: RejectionCode): code is InvalidCode {
  return invalidSet.has(code)
}
