/**
 * A federation simulator (in the manner of python-tuf's RepositorySimulator):
 * members with fixed keys, and builders for every record kind, signed with
 * the project's own code. Used by the fold tests, the conformance runner,
 * the benchmarks and the record vectors (fixtures/generate/), which also
 * forge records the schema refuses (`forge`, `forgeGenesis`).
 */
import { sha256 } from '@noble/hashes/sha2.js'
import type { CID } from 'multiformats/cid'
import {
  type Action,
  type AnyVerified,
  type BodyOf,
  buildList,
  type Choice,
  checkpointFor,
  cidKey,
  cosignGenesis,
  createFold,
  createSigner,
  type Ed25519Signer,
  eligibleWeight,
  type FinalizedEntry,
  type Fold,
  federationIdOf,
  type Kind,
  type ManifestFile,
  type Member,
  nobleSigner,
  outcomeOf,
  type Role,
  type Rules,
  rawCidOfDigest,
  ruleFor,
  type SealLists,
  type Signer,
  signingBytes,
  signRecord,
  type Tally,
  utf8,
  type Verified,
} from '../../protocol/index.js'

export interface SimMember {
  readonly name: string
  readonly roles: readonly Role[]
  readonly weight: number
}

export const DEFAULT_RULES: Rules = {
  votingPeriodMs: 1000,
  sealThreshold: 2,
  sealGraceMs: 100,
  weightsDeadlineMs: 3000,
  sealDeadlineMs: 5000,
  checkpointIntervalMs: 3_600_000,
  maxModelBytes: 2 ** 40,
  maxOpenProposalsPerAuthor: 100,
  actions: {
    'ratify-model': { quorum: [1, 2], threshold: [1, 2], requiredAttestations: [] },
    '*': { quorum: [1, 2], threshold: [1, 2], requiredAttestations: [] },
  },
}

/** The default rules with some replaced: one place for the timing every test and benchmark shares. */
export function rulesWith(changes: Partial<Rules>): Rules {
  return { ...DEFAULT_RULES, ...changes }
}

export interface SimulatorOptions {
  readonly members: readonly SimMember[]
  readonly rules?: Rules
  /** Secret key of name n = sha256(utf8(keyPrefix + n)). */
  readonly keyPrefix?: string
  /** Time 0 of the simulation, in ms since the epoch. */
  readonly base?: number
  readonly name?: string
  /** The genesis nonce; derived from `name` when absent. */
  readonly nonce?: Uint8Array
  readonly signer?: Ed25519Signer
}

/** Record kinds a member signs alone (a genesis is the simulator's own and co-signed). */
export type MemberKind = Exclude<Kind, 'genesis'>

/** A plain record (or one being forged) as the schema sees it: field name to value. */
export type PlainRecord = Record<string, unknown>

function byId(a: { readonly id: string }, b: { readonly id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

export class Simulator {
  readonly base: number
  readonly genesis: Verified<'genesis'>
  readonly federation: CID
  readonly fold: Fold
  /** Blocks of every seal list made, by CID string. */
  readonly blocks = new Map<string, Uint8Array>()
  private readonly signers = new Map<string, Signer>()
  private readonly names = new Map<string, string>()
  private readonly keyPrefix: string
  private readonly backend: Ed25519Signer

  constructor(options: SimulatorOptions) {
    this.keyPrefix = options.keyPrefix ?? 'allmende-conformance:'
    this.backend = options.signer ?? nobleSigner
    this.base = options.base ?? 1_767_225_600_000
    const rules = options.rules ?? DEFAULT_RULES
    const members: Member[] = options.members
      .map((m) => ({ id: this.did(m.name), roles: [...m.roles].sort(), weight: m.weight }))
      .sort(byId)
    const founder = options.members.find((m) => m.roles.includes('steward')) ?? options.members[0]!
    const body = {
      name: options.name ?? 'simulated federation',
      members,
      rules,
      nonce: options.nonce ?? sha256(utf8.encode(`nonce:${options.name ?? ''}`)).subarray(0, 16),
    }
    const unsigned = {
      v: 1 as const,
      kind: 'genesis' as const,
      author: this.did(founder.name),
      at: this.base,
      body,
    }
    const cosigs = options.members
      .filter((m) => m.roles.includes('steward') && m.name !== founder.name)
      .map((m) => cosignGenesis(unsigned, this.signer(m.name)))
      .sort(byId)
    this.genesis = signRecord({ kind: 'genesis', at: this.base, body }, this.signer(founder.name), { cosigs })
    this.federation = federationIdOf(this.genesis.record)
    this.fold = createFold(this.genesis)
  }

  signer(name: string): Signer {
    let s = this.signers.get(name)
    if (!s) {
      s = createSigner(this.secretKey(name), this.backend)
      this.signers.set(name, s)
      this.names.set(s.did, name)
    }
    return s
  }

  /** The secret key of member `name`: sha256(utf8(keyPrefix + name)). */
  secretKey(name: string): Uint8Array {
    return sha256(utf8.encode(this.keyPrefix + name))
  }

  did(name: string): string {
    return this.signer(name).did
  }

  nameOf(did: string): string | undefined {
    return this.names.get(did)
  }

  /**
   * A record of this federation with `body` as given, signed by `by` at `at` (simulation time);
   * the builders below fill in the body, this takes it whole.
   */
  record<K extends MemberKind>(
    kind: K,
    by: string,
    at: number,
    body: BodyOf[K],
    extra: { lists?: SealLists; finalized?: readonly FinalizedEntry[] } = {},
  ): Verified<K> {
    const fields = { kind, federation: this.federation, at: this.base + at, body }
    return signRecord(fields as Parameters<typeof signRecord<K>>[0], this.signer(by), extra)
  }

  /**
   * `record` signed by `by` over its own signing bytes, with none of the checks `record` makes:
   * how a test or a vector builds a record the schema must refuse. Its `author` is kept.
   */
  forge(record: PlainRecord, by: string): PlainRecord {
    return { ...record, sig: this.signer(by).sign(signingBytes(record as never)) }
  }

  /** A genesis-shaped `record` signed by `author` and co-signed by `cosigners` (in DID order), unchecked. */
  forgeGenesis(record: PlainRecord, author: string, cosigners: readonly string[]): PlainRecord {
    const message = signingBytes(record as never)
    const cosigs = cosigners.map((n) => ({ id: this.did(n), sig: this.signer(n).sign(message) })).sort(byId)
    return { ...record, sig: this.signer(author).sign(message), cosigs }
  }

  manifest(
    by: string,
    at: number,
    m: {
      id: string
      name: string
      version: string
      base?: CID
      description?: string
      /** Real weights (an imported directory); a made-up one-file model otherwise. */
      weights?: { root: CID; files: readonly ManifestFile[]; size: number }
    },
  ): Verified<'manifest'> {
    const digest = sha256(utf8.encode(m.id))
    return this.record('manifest', by, at, {
      name: m.name,
      version: m.version,
      weights: m.weights?.root ?? rawCidOfDigest(digest),
      cidProfile: 'unixfs-v1-2025',
      files: m.weights ? [...m.weights.files] : [{ path: 'model.safetensors', size: 1, sha256: digest }],
      size: m.weights?.size ?? 1,
      format: 'safetensors',
      license: 'Apache-2.0',
      languages: ['de'],
      ...(m.base ? { base: m.base } : {}),
      ...(m.description ? { description: m.description } : {}),
    })
  }

  attestation(
    by: string,
    at: number,
    a: {
      subject: CID
      kind: string
      result: 'pass' | 'fail'
      report?: CID
      metrics?: Readonly<Record<string, number>>
    },
  ): Verified<'attestation'> {
    return this.record('attestation', by, at, { ...a })
  }

  proposal(
    by: string,
    at: number,
    p: { closesAt: number; action: Action; basis?: CID; title?: string; description?: string },
  ): Verified<'proposal'> {
    return this.record('proposal', by, at, {
      action: p.action,
      basis: p.basis ?? this.fold.state().head,
      closesAt: this.base + p.closesAt,
      title: p.title ?? `${p.action.type} proposal`,
      ...(p.description === undefined ? {} : { description: p.description }),
    })
  }

  vote(by: string, at: number, v: { proposal: CID; choice: Choice; reason?: string }): Verified<'vote'> {
    return this.record('vote', by, at, { ...v })
  }

  /**
   * A seal naming `votes` and `attestations` (default: what the fold counts
   * now), with the tally and outcome they imply (or a forged tally).
   */
  seal(
    by: string,
    at: number,
    s: { proposal: CID; votes?: CID[]; attestations?: CID[]; weightsVerified?: boolean; forgeTally?: Tally },
  ): Verified<'seal'> {
    const votes = s.votes ?? this.fold.countedVotes(s.proposal)
    const attestations = s.attestations ?? this.fold.countedAttestations(s.proposal)
    const p = this.fold.get(s.proposal) as Verified<'proposal'> | undefined
    const action = p?.record.body.action
    const ratify = action?.type === 'ratify-model'
    const electorate = this.fold.electorate(s.proposal)
    const tally = { yes: 0, no: 0, abstain: 0 }
    for (const c of votes) {
      const v = this.fold.get(c)
      if (v?.record.kind !== 'vote') continue
      tally[v.record.body.choice] += electorate?.members.get(v.record.author)?.weight ?? 0
    }
    const passes = new Map<string, number>()
    for (const c of attestations) {
      const a = this.fold.get(c)
      if (a?.record.kind === 'attestation' && a.record.body.result === 'pass') {
        passes.set(a.record.body.kind, (passes.get(a.record.body.kind) ?? 0) + 1)
      }
    }
    const claimed = s.forgeTally ?? tally
    const outcome = electorate
      ? outcomeOf(
          claimed,
          eligibleWeight(electorate),
          ruleFor(electorate.rules, action!.type),
          ratify ? passes : undefined,
        )
      : 'no-quorum'
    const vl = buildList(votes)
    const al = buildList(attestations)
    for (const b of [...vl.blocks, ...al.blocks]) this.blocks.set(cidKey(b.cid), b.bytes)
    const weightsVerified = ratify ? (s.weightsVerified ?? true) : undefined
    return this.record(
      'seal',
      by,
      at,
      {
        proposal: s.proposal,
        votes: { root: vl.root, count: vl.count },
        attestations: { root: al.root, count: al.count },
        tally: claimed,
        outcome,
        ...(weightsVerified !== undefined ? { weightsVerified } : {}),
      },
      { lists: { votes: [...votes], attestations: [...attestations] } },
    )
  }

  /**
   * A checkpoint for `epoch` (in simulation time) as an honest steward signs
   * it from the simulator's current state; its blocks are kept.
   */
  checkpoint(by: string, at: number, epoch: number): Verified<'checkpoint'> {
    const content = checkpointFor(this.fold.state(), this.base + epoch)
    for (const b of content.blocks) this.blocks.set(cidKey(b.cid), b.bytes)
    return this.record('checkpoint', by, at, content.body, { finalized: content.finalized })
  }

  /** Adds records to the simulator's own fold. */
  add(...records: AnyVerified[]): void {
    for (const r of records) this.fold.add(r)
  }

  getBlock = (cid: CID): Uint8Array | undefined => this.blocks.get(cidKey(cid))
}
