/**
 * Every cap on untrusted input in one place (SPEC.md §2 "Limits").
 *
 * Invariant: a value within these limits can be decoded, validated and folded
 * in bounded memory and time; anything beyond is rejected with a stable code
 * before any expensive work is done.
 */
export const LIMITS = Object.freeze({
  /** Bytes of one encoded record, signature included. */
  maxRecordBytes: 64 * 1024,
  /** Bytes of an encoded genesis (it lists up to 1,024 members). */
  maxGenesisBytes: 256 * 1024,
  /** Bytes of one block of a canonical CID list. */
  maxListBlockBytes: 1024 * 1024,
  /** Entries per leaf block of a canonical CID list (and links per branch). */
  listFanout: 256,
  /** Entries one seal or checkpoint list may name. */
  maxListEntries: 1_000_000,
  /** Nesting depth of CBOR arrays and maps in a record. */
  maxDepth: 16,
  /** Bytes of any one text string (descriptions are the longest). */
  maxStringBytes: 16 * 1024,
  /** Bytes of any one byte string (signatures are 64, nonces up to 64). */
  maxBytesLength: 1024,
  /** Items in any one CBOR array or map. */
  maxCollectionItems: 4096,
  /** Members listed in a genesis. */
  maxGenesisMembers: 1024,
  /** Members a well-formed state may hold. */
  maxMembers: 10_000,
  /** Largest member weight. Keeps every tally a safe integer (10,000 × 2^32 < 2^53). */
  maxWeight: 2 ** 32,
  /** Largest numerator or denominator of a fraction. */
  maxFractionPart: 2 ** 32,
  /** Files listed in one manifest. */
  maxManifestFiles: 2048,
  /** Metrics in one attestation. */
  maxMetrics: 64,
  /** Required-attestation entries per action rule. */
  maxRequiredAttestations: 16,
  /** Bytes of short identifiers: names, kinds, titles, licenses, paths. */
  maxNameBytes: 256,
  maxTitleBytes: 512,
  maxPathBytes: 1024,
  /** Languages named by one manifest. */
  maxLanguages: 64,
  /** Bytes of one binary CID inside tag 42. */
  maxCidBytes: 128,
  /** Nonce bytes in a genesis. */
  minNonceBytes: 8,
  maxNonceBytes: 64,
})

export type Limits = typeof LIMITS
