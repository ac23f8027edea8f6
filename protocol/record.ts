/**
 * From bytes to a verified record, and from fields to signed bytes
 * (SPEC.md §5). Signature first, permission second: this module decides
 * only what is intrinsic to the bytes — canonical encoding, schema,
 * federation, signatures, and for a genesis its co-signatures and
 * well-formedness. Whether an author may do what the record says is the
 * fold's business.
 *
 * `Verified<K>` values are frozen and can only be made here, so nothing
 * unverified reaches the fold. A record of a later version is a `FutureRecord`:
 * its envelope and signature are checked, its body is not read
 * (docs/adr/0023).
 */
import { decodeOptions as dagCborDecodeOptions } from '@ipld/dag-cbor'
import { type DecodeOptions as CborDecodeOptions, decode as cborgDecode } from 'cborg'
import { CID } from 'multiformats/cid'
import { equalBytes } from './bytes.js'
import { decodeStrict, encode, GENESIS_SCAN_LIMITS } from './cbor.js'
import { blockKey, cidFromKey, cidKey, cidOfBlock, type Sha256 } from './cid.js'
import { type BlockSource, readList } from './cidlist.js'
import type { Did } from './did.js'
import { parseDid } from './did.js'
import { type Ed25519Backend, zip215 } from './ed25519.js'
import { wellFormedProblem } from './govstate.js'
import { LIMITS } from './limits.js'
import { ok, type Rejection, type Result, reject } from './result.js'
import { isFutureVersion, recordSchema } from './schema.js'
import { federationIdOf, type Signer, signingBytes } from './signing.js'
import type { Cosig, Kind, SignedRecord, UnsignedRecord } from './types.js'

declare const verifiedBrand: unique symbol

export interface SealLists {
  readonly votes: readonly CID[]
  readonly attestations: readonly CID[]
}

export interface Verified<K extends Kind = Kind> {
  readonly cid: CID
  /** The CID as a map key (`cidKey(cid)`): its bytes, one char per byte. */
  readonly key: string
  readonly bytes: Uint8Array
  readonly record: SignedRecord<K>
  /** Seals only: the vote and attestation lists, once their blocks were read. */
  readonly lists?: SealLists
  /** Checkpoints only: the `(proposal, phase)` entries of `finalized`, once its blocks were read. */
  readonly finalized?: readonly FinalizedEntry[]
  readonly [verifiedBrand]: true
}

export type FinalizedEntry = readonly [CID, string]

/**
 * A record of a later version as this version reads it (SPEC.md §5.1, Versions): the envelope of
 * the signed record with `kind: 'future'` in place of the kind it names (`futureKind`), so that
 * every switch on a record's kind passes it by, and the body unread. Its bytes are what was signed.
 */
export interface FutureEnvelope {
  readonly v: number
  readonly kind: 'future'
  readonly federation: CID
  readonly author: Did
  readonly at: number
  /** The later version's body: a map this version does not interpret. */
  readonly body: { readonly [field: string]: unknown }
  readonly sig: Uint8Array
  readonly cosigs?: undefined
}

export interface FutureRecord {
  readonly cid: CID
  readonly key: string
  readonly bytes: Uint8Array
  readonly record: FutureEnvelope
  /** The kind the signed record names, e.g. `delegation`. */
  readonly futureKind: string
  readonly lists?: undefined
  readonly finalized?: undefined
  readonly [verifiedBrand]: true
}

/** Every record a node holds: one of this version's kinds, or a future record it keeps and relays. */
export type AnyVerified = { [K in Kind]: Verified<K> }[Kind] | FutureRecord

export function isFutureRecord(v: AnyVerified): v is FutureRecord {
  return v.record.kind === 'future'
}

export function isKind<K extends Kind>(v: AnyVerified | Verified, kind: K): v is Verified<K> {
  return v.record.kind === kind
}

/**
 * A verified record as held. A node holds one per record, votes by the hundred thousand, so a
 * vote keeps only the binary key of its CID and makes the CID object when asked (every other
 * kind keeps it: they are few and their CIDs are read often).
 */
class VerifiedRecord {
  readonly key: string
  readonly bytes: Uint8Array
  readonly record: SignedRecord
  readonly lists?: SealLists
  readonly finalized?: readonly FinalizedEntry[]
  readonly #cid: CID | undefined

  constructor(
    key: string,
    cid: CID | undefined,
    bytes: Uint8Array,
    record: SignedRecord,
    lists?: SealLists,
    finalized?: readonly FinalizedEntry[],
  ) {
    this.key = key
    this.bytes = bytes
    this.record = record
    if (lists) this.lists = lists
    if (finalized) this.finalized = finalized
    this.#cid = cid
  }

  get cid(): CID {
    return this.#cid ?? cidFromKey(this.key)
  }
}

function seal<K extends Kind>(
  id: CID | string,
  bytes: Uint8Array,
  record: SignedRecord<K>,
  lists?: SealLists,
  finalized?: readonly FinalizedEntry[],
): Verified<K> {
  const key = typeof id === 'string' ? id : cidKey(id)
  const cid = record.kind === 'vote' ? undefined : typeof id === 'string' ? cidFromKey(id) : id
  return Object.freeze(
    new VerifiedRecord(key, cid, bytes, record as SignedRecord, lists, finalized),
  ) as unknown as Verified<K>
}

/**
 * Points a decoded record's signature into its own bytes: the decoder copies byte strings,
 * and a separate 64-byte buffer per held record is memory for nothing.
 */
function shareSig(bytes: Uint8Array, record: SignedRecord): void {
  const sig = record.sig
  if (!(sig instanceof Uint8Array) || sig.length !== 64 || sig.buffer === bytes.buffer) return
  // The key "sig" then a 64-byte byte string: 63 73 69 67 58 40. Any place whose 64 bytes
  // equal the signature will do, since the bytes are the same.
  const end = bytes.length - 70
  for (let i = 0; i <= end; i++) {
    if (bytes[i] !== 0x63 || bytes[i + 1] !== 0x73 || bytes[i + 2] !== 0x69 || bytes[i + 3] !== 0x67) continue
    if (bytes[i + 4] !== 0x58 || bytes[i + 5] !== 0x40) continue
    const view = bytes.subarray(i + 6, i + 70)
    if (equalBytes(view, sig)) (record as { sig: Uint8Array }).sig = view
    return
  }
}

export interface DecodeOptions {
  /** The federation the record must belong to. Without it, only a genesis can be checked for the binding. */
  readonly federation?: CID
  /** Ed25519 backend; the ZIP-215 reference by default. */
  readonly ed25519?: Ed25519Backend
  /** sha2-256 for the record's CID (a native implementation is faster; the result is the same). */
  readonly sha256?: Sha256
  /** Where list blocks come from; without it seals and checkpoints are returned without their lists. */
  readonly blocks?: BlockSource
}

/** Decodes and verifies one record. Never throws. */
export function decodeRecord(bytes: Uint8Array, options: DecodeOptions = {}): Result<AnyVerified> {
  const decoded = decodeWithinLimits(bytes)
  if (!decoded.ok) return decoded
  const bad = recordSchema(decoded.value)
  if (bad) return bad
  const record = decoded.value as SignedRecord
  const backend = options.ed25519 ?? zip215
  const message = signingBytes(record)
  const future = isFutureVersion(record.v)

  if (record.kind === 'genesis' && !future) {
    const g = record as SignedRecord<'genesis'>
    if (options.federation && !federationIdOf(g).equals(options.federation)) {
      return reject('federation-mismatch', 'this genesis does not have the expected federation id')
    }
    const problem = genesisProblem(g, message, backend)
    if (problem) return problem
  } else {
    const problem = authorProblem(record, message, backend, options.federation)
    if (problem) return problem
    shareSig(bytes, record)
  }

  const cid = blockKey(bytes, options.sha256)
  if (future) return ok(futureRecord(cid, bytes, record))
  if (record.kind === 'seal' && options.blocks) {
    const lists = readSealLists(record as SignedRecord<'seal'>, options.blocks)
    if (!lists.ok) return lists
    return ok(seal(cid, bytes, record, lists.value) as AnyVerified)
  }
  if (record.kind === 'checkpoint' && options.blocks) {
    const list = readFinalized(record as SignedRecord<'checkpoint'>, options.blocks)
    if (!list.ok) return list
    return ok(seal(cid, bytes, record, undefined, list.value) as AnyVerified)
  }
  return ok(seal(cid, bytes, record) as AnyVerified)
}

/**
 * The size and structure checks in SPEC.md §3.1's order: the cap of any record before reading, a
 * single structural scan, then the smaller cap of every record but a genesis of this version.
 */
function decodeWithinLimits(bytes: Uint8Array): Result<unknown> {
  if (bytes.length > LIMITS.maxGenesisBytes) {
    return reject(
      'record-too-large',
      `a record is at most ${LIMITS.maxRecordBytes} bytes (a genesis ${LIMITS.maxGenesisBytes}), this one ${bytes.length}`,
    )
  }
  const decoded = decodeStrict(bytes, GENESIS_SCAN_LIMITS)
  if (!decoded.ok) return decoded
  const envelope = decoded.value as { v?: unknown; kind?: unknown } | null
  const genesis = envelope?.kind === 'genesis' && !isFutureVersion(envelope.v)
  if (!genesis && bytes.length > LIMITS.maxRecordBytes) {
    return reject(
      'record-too-large',
      `a record other than a genesis is at most ${LIMITS.maxRecordBytes} bytes, this one ${bytes.length}`,
    )
  }
  return decoded
}

/** A record other than a genesis: bound to the expected federation, and signed by its author. */
function authorProblem(
  record: SignedRecord,
  message: Uint8Array,
  backend: Ed25519Backend,
  federation: CID | undefined,
): Rejection | undefined {
  if (federation && !record.federation!.equals(federation)) {
    return reject('federation-mismatch', 'the record belongs to another federation', 'federation')
  }
  const key = parseDid(record.author, 'author')
  if (!key.ok) return key
  if (!backend.verify(record.sig, message, key.value))
    return reject('sig-invalid', 'the signature does not verify', 'sig')
  return undefined
}

/**
 * A verified record of a later version, as this version holds it: its envelope with `kind`
 * set aside in `futureKind`. Frozen like every verified record.
 */
function futureRecord(id: CID | string, bytes: Uint8Array, signed: SignedRecord): FutureRecord {
  const { kind, ...envelope } = signed as unknown as { kind: string } & Omit<FutureEnvelope, 'kind'>
  const key = typeof id === 'string' ? id : cidKey(id)
  const cid = typeof id === 'string' ? cidFromKey(id) : id
  const record: FutureEnvelope = Object.freeze({ ...envelope, kind: 'future' })
  return Object.freeze({ cid, key, bytes, record, futureKind: kind }) as unknown as FutureRecord
}

function genesisProblem(
  g: SignedRecord<'genesis'>,
  message: Uint8Array,
  backend: Ed25519Backend,
): Rejection | undefined {
  const members = g.body.members
  const author = members.find((m) => m.id === g.author)
  if (!author) return reject('genesis-ill-formed', 'the genesis author must be one of its members', 'author')
  const key = parseDid(g.author, 'author')
  if (!key.ok) return key
  if (!backend.verify(g.sig, message, key.value))
    return reject('sig-invalid', 'the signature does not verify', 'sig')
  const stewards = new Set(members.filter((m) => m.roles.includes('steward')).map((m) => m.id))
  const cosigs = g.cosigs ?? []
  for (let i = 0; i < cosigs.length; i++) {
    const c = cosigs[i]!
    if (!stewards.has(c.id) || c.id === g.author) {
      return reject(
        'genesis-cosig-extra',
        `${c.id} is not a founding steward other than the author`,
        `cosigs[${i}].id`,
      )
    }
    const k = parseDid(c.id, `cosigs[${i}].id`)
    if (!k.ok) return k
    if (!backend.verify(c.sig, message, k.value)) {
      return reject(
        'genesis-cosig-invalid',
        `the co-signature of ${c.id} does not verify`,
        `cosigs[${i}].sig`,
      )
    }
  }
  const cosigned = new Set(cosigs.map((c) => c.id))
  for (const s of stewards) {
    if (s !== g.author && !cosigned.has(s))
      return reject('genesis-cosig-missing', `founding steward ${s} has not co-signed`, 'cosigs')
  }
  const problem = wellFormedProblem(members, g.body.rules)
  if (problem) return reject('genesis-ill-formed', `the genesis state is not well-formed: ${problem}`, 'body')
  return undefined
}

/** Reads a seal's vote and attestation lists from blocks. */
export function readSealLists(record: SignedRecord<'seal'>, blocks: BlockSource): Result<SealLists> {
  const votes = readList(record.body.votes, blocks)
  if (!votes.ok) return { ...votes, path: 'body.votes' }
  const attestations = readList(record.body.attestations, blocks)
  if (!attestations.ok) return { ...attestations, path: 'body.attestations' }
  return ok({ votes: votes.value as CID[], attestations: attestations.value as CID[] })
}

/**
 * DAG-CBOR decoding of trusted bytes with the CIDs of tag 42 memoized: every record repeats
 * the federation id and most repeat a proposal's CID, and decoding a CID costs more than the
 * rest of a vote. The same bytes give an equal CID, so this changes no result (and holders
 * share one CID object per value).
 */
const ownDecodeOptions: CborDecodeOptions = {
  ...dagCborDecodeOptions,
  tags: Object.assign([], dagCborDecodeOptions.tags, {
    42: (decode: () => unknown) => {
      const bytes = decode() as Uint8Array
      if (!(bytes instanceof Uint8Array) || bytes[0] !== 0) throw new Error('invalid CID for tag 42')
      const key = String.fromCharCode.apply(null, bytes as unknown as number[])
      let cid = cidCache.get(key)
      if (cid === undefined) {
        cid = CID.decode(bytes.subarray(1))
        if (cidCache.size >= 4096) cidCache.clear()
        cidCache.set(key, cid)
      }
      return cid
    },
  }),
}
const cidCache = new Map<string, CID>()

/**
 * Rebuilds a verified record (a future record too) from bytes that already passed `decodeRecord`
 * — a node's own log, written only after full verification. Skips the
 * canonical-form, schema and signature checks (the CRC-protected 0600 file
 * is trusted); still computes the CID from the bytes. Returns undefined for
 * bytes that do not even decode: callers treat that as corruption.
 */
export function decodeOwnRecord(bytes: Uint8Array, sha256?: Sha256): AnyVerified | undefined {
  let value: unknown
  try {
    value = cborgDecode(bytes, ownDecodeOptions)
  } catch {
    return undefined
  }
  const r = value as SignedRecord
  if (!r || typeof r !== 'object' || typeof r.kind !== 'string' || typeof r.author !== 'string')
    return undefined
  const future = isFutureVersion(r.v)
  if (r.kind !== 'genesis' || future) shareSig(bytes, r)
  const key = blockKey(bytes, sha256)
  return future ? futureRecord(key, bytes, r) : (seal(key, bytes, r) as AnyVerified)
}

/** Reads a checkpoint's labelled `finalized` list from blocks. */
export function readFinalized(
  record: SignedRecord<'checkpoint'>,
  blocks: BlockSource,
): Result<FinalizedEntry[]> {
  const list = readList(record.body.finalized, blocks, true)
  if (!list.ok) return { ...list, path: 'body.finalized' }
  return ok(list.value as FinalizedEntry[])
}

/**
 * Reads the lists of a verified seal or checkpoint from `blocks` and returns
 * the record with them attached; other records are returned as they are.
 */
export function attachLists(v: AnyVerified, blocks: BlockSource): Result<AnyVerified> {
  if (v.record.kind === 'seal' && !v.lists) {
    const lists = readSealLists(v.record as SignedRecord<'seal'>, blocks)
    return lists.ok ? ok(seal(v.key, v.bytes, v.record, lists.value) as AnyVerified) : lists
  }
  if (v.record.kind === 'checkpoint' && !v.finalized) {
    const list = readFinalized(v.record as SignedRecord<'checkpoint'>, blocks)
    return list.ok ? ok(seal(v.key, v.bytes, v.record, undefined, list.value) as AnyVerified) : list
  }
  return ok(v)
}

/**
 * A verified seal with lists attached that the caller read and checked
 * itself (e.g. with `readSealLists`); nothing is checked here. Not exported
 * from the package: use `attachLists`, which reads and checks the lists.
 */
export function withSealLists(v: Verified<'seal'>, lists: SealLists): Verified<'seal'> {
  return seal(v.key, v.bytes, v.record, lists)
}

/**
 * Signs a record with `signer` (which also sets `author`). The result is
 * validated like any incoming record except for the signature check (we
 * just made it); it throws a TypeError if the fields are not a valid record,
 * because that is a programming error of the caller.
 */
export function signRecord<K extends Kind>(
  fields: Omit<UnsignedRecord<K>, 'author' | 'v'>,
  signer: Signer,
  extra: { cosigs?: readonly Cosig[]; lists?: SealLists; finalized?: readonly FinalizedEntry[] } = {},
): Verified<K> {
  const unsigned = { v: 1, ...fields, author: signer.did } as UnsignedRecord<K>
  const sig = signer.sign(signingBytes(unsigned))
  const record = (
    fields.kind === 'genesis' ? { ...unsigned, sig, cosigs: extra.cosigs ?? [] } : { ...unsigned, sig }
  ) as SignedRecord<K>
  return fromSignedRecord(record, extra.lists, extra.finalized)
}

/**
 * Encodes and schema-checks a signed record built elsewhere; signatures are
 * NOT checked. For tools that build records (the vector generator, tests);
 * not exported from the package — use `decodeRecord` for anything received.
 */
export function fromSignedRecord<K extends Kind>(
  record: SignedRecord<K>,
  lists?: SealLists,
  finalized?: readonly FinalizedEntry[],
): Verified<K> {
  const bytes = encode(record)
  const decoded = decodeStrict(bytes, record.kind === 'genesis' ? GENESIS_SCAN_LIMITS : undefined)
  if (!decoded.ok) throw new TypeError(`not a canonical record: ${decoded.message}`)
  const bad = recordSchema(decoded.value)
  if (bad) throw new TypeError(`not a valid record: ${bad.message}${bad.path ? ` (at ${bad.path})` : ''}`)
  return seal(cidOfBlock(bytes), bytes, decoded.value as SignedRecord<K>, lists, finalized)
}

/** A founding steward's co-signature over the genesis signing bytes. */
export function cosignGenesis(
  genesis: UnsignedRecord<'genesis'> | SignedRecord<'genesis'>,
  signer: Signer,
): Cosig {
  return { id: signer.did, sig: signer.sign(signingBytes(genesis)) }
}
