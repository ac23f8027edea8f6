/**
 * Fixtures for the certificate and checkpoint tests: a federation whose
 * model ratification sits several governance decisions after the genesis
 * (two admissions, a steward's key replacement, a rule change), checkpointed
 * by the seal threshold of stewards; and small helpers to take a
 * certificate's CAR apart and write it back with blocks removed, replaced
 * or added.
 *
 * Times are ms after `sim.base`; every proposal is made on the then-current
 * head (the Simulator's default basis), voted, and sealed inside
 * `[closesAt + sealGraceMs, closesAt + sealDeadlineMs]`. Signing goes
 * through node:crypto (`nativeSigner`, byte-identical to noble) so building
 * a fixture costs a few milliseconds.
 */
import { CarBufferReader } from '@ipld/car/buffer-reader'
import * as CarBufferWriter from '@ipld/car/buffer-writer'
import type { CID } from 'multiformats/cid'
import { nativeSigner } from '../../node/ed25519-native.js'
import {
  type Action,
  type Block,
  buildCertificate,
  buildList,
  buildStateRoot,
  type Choice,
  cidKey,
  cidOfBlock,
  encode,
  type Member,
  plainManifestEntry,
  type Role,
  type Rules,
  signRecord,
  type Verified,
} from '../../protocol/index.js'
import { DEFAULT_RULES, type SimMember, Simulator } from './simulator.js'

// ---------------------------------------------------------------- CAR surgery

export interface CarContent {
  readonly roots: CID[]
  readonly blocks: Block[]
}

export function readCar(car: Uint8Array): CarContent {
  const reader = CarBufferReader.fromBytes(car)
  const blocks = [...reader.blocks()].map((b) => ({ cid: b.cid as CID, bytes: b.bytes }))
  return { roots: reader.getRoots() as CID[], blocks }
}

/** A CARv1 file with `roots` and `blocks`, in the order given. */
export function writeCar(roots: readonly CID[], blocks: readonly Block[]): Uint8Array {
  const size =
    CarBufferWriter.headerLength({ roots: [...roots] }) +
    blocks.reduce((n, b) => n + CarBufferWriter.blockLength(b), 0)
  const writer = CarBufferWriter.createWriter(new ArrayBuffer(size), { roots: [...roots] })
  for (const b of blocks) writer.write(b)
  return writer.close({ resize: true })
}

export interface CarEdit {
  /** Blocks to drop, by CID. */
  readonly remove?: readonly CID[]
  /** Bytes to put under an existing CID (the CID is kept, so the block no longer matches it). */
  readonly replace?: readonly (readonly [CID, Uint8Array])[]
  /** Blocks to append. */
  readonly add?: readonly Block[]
  /** New roots (the header), if given. */
  readonly roots?: readonly CID[]
}

/** Rewrites a CAR with blocks removed, replaced or added; throws if a named block is not there. */
export function rewriteCar(car: Uint8Array, edit: CarEdit): Uint8Array {
  const { roots, blocks } = readCar(car)
  const present = new Set(blocks.map((b) => cidKey(b.cid)))
  const remove = new Set((edit.remove ?? []).map(cidKey))
  const replace = new Map((edit.replace ?? []).map(([c, bytes]) => [cidKey(c), bytes]))
  for (const k of [...remove, ...replace.keys()])
    if (!present.has(k)) throw new Error('rewriteCar: a block to remove or replace is not in the CAR')
  const out: Block[] = []
  for (const b of blocks) {
    const k = cidKey(b.cid)
    if (remove.has(k)) continue
    const bytes = replace.get(k)
    out.push(bytes ? { cid: b.cid, bytes } : b)
  }
  out.push(...(edit.add ?? []))
  return writeCar(edit.roots ?? roots, out)
}

export function blockOf(v: { cid: CID; bytes: Uint8Array }): Block {
  return { cid: v.cid, bytes: v.bytes }
}

export function hasBlock(car: Uint8Array, cid: CID): boolean {
  return readCar(car).blocks.some((b) => b.cid.equals(cid))
}

// ---------------------------------------------------------------- federation

export const MEMBERS: readonly SimMember[] = [
  { name: 's1', roles: ['publisher', 'steward', 'voter'], weight: 1 },
  { name: 's2', roles: ['auditor', 'steward', 'voter'], weight: 1 },
  { name: 's3', roles: ['steward', 'voter'], weight: 1 },
  { name: 'v1', roles: ['publisher', 'voter'], weight: 1 },
]

/** The rule change decided on the chain: ratifications now need one passing `eval` attestation. */
export const CHANGED_RULES: Rules = {
  ...DEFAULT_RULES,
  maxOpenProposalsPerAuthor: 50,
  actions: {
    ...DEFAULT_RULES.actions,
    'ratify-model': { quorum: [1, 2], threshold: [1, 2], requiredAttestations: [{ kind: 'eval', min: 1 }] },
  },
}

/** Voting period used by every proposal here (the rules' minimum is 1000 ms). */
export const PERIOD = 1100
/** Seals are signed this long after close: inside [close + sealGraceMs, close + sealDeadlineMs]. */
export const SEAL_AFTER = 200
export const HOUR = 3_600_000

export function simulator(
  members: readonly SimMember[] = MEMBERS,
  name = 'certificate federation',
): Simulator {
  return new Simulator({ members, name, signer: nativeSigner })
}

export function member(sim: Simulator, name: string, roles: Role[], weight = 1): Member {
  return { id: sim.did(name), roles: [...roles].sort(), weight }
}

export interface Decision {
  readonly proposal: Verified<'proposal'>
  readonly votes: Verified<'vote'>[]
  readonly seals: Verified<'seal'>[]
  /** Sim time of the close. */
  readonly closesAt: number
}

export interface DecideOptions {
  readonly by: string
  /** Sim time the proposal is signed. */
  readonly at: number
  readonly action: Action
  readonly voters: readonly string[]
  readonly sealers: readonly string[]
  readonly choice?: Choice
  readonly basis?: CID
  /** Sign the seals but do not add them to the simulator's fold. */
  readonly withholdSeals?: boolean
  /** Extra `at` offset of the seals after close (default SEAL_AFTER). */
  readonly sealAfter?: number
}

/** Proposes (on the head unless `basis`), votes and seals one decision; adds everything to the fold. */
export function decide(sim: Simulator, o: DecideOptions): Decision {
  const closesAt = o.at + PERIOD
  const proposal = sim.proposal(o.by, o.at, {
    closesAt,
    action: o.action,
    ...(o.basis ? { basis: o.basis } : {}),
  })
  sim.add(proposal)
  const votes = o.voters.map((v, i) =>
    sim.vote(v, o.at + 10 + i, { proposal: proposal.cid, choice: o.choice ?? 'yes' }),
  )
  sim.add(...votes)
  const seals = o.sealers.map((s, i) =>
    sim.seal(s, closesAt + (o.sealAfter ?? SEAL_AFTER) + i, { proposal: proposal.cid }),
  )
  if (!o.withholdSeals) sim.add(...seals)
  return { proposal, votes, seals, closesAt }
}

export interface Ratification extends Decision {
  readonly manifest: Verified<'manifest'>
  readonly attestation: Verified<'attestation'>
}

/** Publishes a manifest, attests it (`eval`, pass), and ratifies it. */
export function ratifyModel(
  sim: Simulator,
  o: {
    at: number
    name: string
    version: string
    id: string
    publisher?: string
    auditor?: string
    voters?: readonly string[]
    sealers?: readonly string[]
  },
): Ratification {
  const manifest = sim.manifest(o.publisher ?? 'v1', o.at, { id: o.id, name: o.name, version: o.version })
  const attestation = sim.attestation(o.auditor ?? 'n2', o.at + 5, {
    subject: manifest.cid,
    kind: 'eval',
    result: 'pass',
  })
  sim.add(manifest, attestation)
  const d = decide(sim, {
    by: 's1',
    at: o.at + 10,
    action: { type: 'ratify-model', manifest: manifest.cid },
    voters: o.voters ?? ['s1', 's2', 's3b', 'v1'],
    sealers: o.sealers ?? ['s2', 's3b'],
  })
  return { ...d, manifest, attestation }
}

export interface Fixture {
  readonly sim: Simulator
  /** The governance chain in order: admit n1, admit n2, replace s3 → s3b, change-rules. */
  readonly chain: readonly Decision[]
  /** llama@1.0.0: ratified. */
  readonly llama: Ratification
  /** other@1.0.0: ratified too. */
  readonly other: Ratification
  /** twin@1.0.0: two manifests, both ratified (conflicted). */
  readonly twins: readonly [Ratification, Ratification]
  /** Epoch of the checkpoint, in sim time (a multiple of checkpointIntervalMs from sim.base). */
  readonly epoch: number
  /** Sim time the checkpoints are signed (≥ epoch + sealDeadlineMs). */
  readonly signedAt: number
  /** The checkpoint copies, by s1 and s3b (the replaced key's successor). */
  readonly checkpoints: readonly Verified<'checkpoint'>[]
  /** The certificate for llama@1.0.0. */
  readonly car: Uint8Array
  /** A verifier's clock one minute after the checkpoint could be signed (absolute ms). */
  readonly now: number
}

export const MODEL = 'llama@1.0.0'

/**
 * The federation of the certificate tests: four governance decisions, then
 * the ratifications, then a checkpoint for the first epoch boundary after
 * them, signed by s1 and s3b (t = 2), then the certificate for llama@1.0.0.
 */
export function buildFixture(): Fixture {
  const sim = simulator()
  const admitN1 = decide(sim, {
    by: 's1',
    at: 10,
    action: { type: 'admit-member', member: member(sim, 'n1', ['voter']) },
    voters: ['s1', 's2', 's3'],
    sealers: ['s1', 's2'],
  })
  const admitN2 = decide(sim, {
    by: 's2',
    at: 1400,
    action: { type: 'admit-member', member: member(sim, 'n2', ['auditor', 'voter']) },
    voters: ['s1', 's2', 'n1'],
    sealers: ['s2', 's3'],
  })
  const replace = decide(sim, {
    by: 's3',
    at: 2800,
    action: { type: 'replace-key', id: sim.did('s3'), newId: sim.did('s3b') },
    voters: ['s1', 's2', 's3', 'n1'],
    sealers: ['s1', 's3'],
  })
  // From here on the third steward signs with its new key.
  const rules = decide(sim, {
    by: 'n1',
    at: 4200,
    action: { type: 'change-rules', rules: CHANGED_RULES },
    voters: ['s1', 's3b', 'n1', 'n2'],
    sealers: ['s1', 's3b'],
  })
  const llama = ratifyModel(sim, { at: 5600, name: 'llama', version: '1.0.0', id: 'llama weights' })
  const other = ratifyModel(sim, { at: 5700, name: 'other', version: '1.0.0', id: 'other weights' })
  const twinA = ratifyModel(sim, { at: 5800, name: 'twin', version: '1.0.0', id: 'twin weights A' })
  const twinB = ratifyModel(sim, {
    at: 5900,
    name: 'twin',
    version: '1.0.0',
    id: 'twin weights B',
    publisher: 's1',
  })
  const epoch = HOUR
  const signedAt = epoch + DEFAULT_RULES.sealDeadlineMs + 100
  const checkpoints = [sim.checkpoint('s1', signedAt, epoch), sim.checkpoint('s3b', signedAt + 1, epoch)]
  sim.add(...checkpoints)
  const car = buildCertificate(sim.fold, MODEL)
  return {
    sim,
    chain: [admitN1, admitN2, replace, rules],
    llama,
    other,
    twins: [twinA, twinB],
    epoch,
    signedAt,
    checkpoints,
    car,
    now: sim.base + epoch + DEFAULT_RULES.sealDeadlineMs + 60_000,
  }
}

// ---------------------------------------------------------------- a forged chain

export interface Forgery {
  readonly sim: Simulator
  readonly model: string
  /** The forged governance proposals, in chain order; none has a single vote or seal. */
  readonly chain: readonly Verified<'proposal'>[]
  readonly checkpoints: readonly Verified<'checkpoint'>[]
  readonly car: Uint8Array
  readonly now: number
}

/**
 * What the holder of ONE voter key (`v`, no steward) can make, with fresh
 * keys a1, a2, a3 of its own: three governance proposals that nobody voted
 * on or sealed (replace s1 → a1, replace s2 → a2, admit a3 as publisher),
 * a manifest and a ratification sealed by a1 and a2, and a checkpoint whose
 * `finalized` list calls all of them final-passed, signed by a1 and a2 —
 * "stewards of state(head)" as that very list computes state(head).
 * Stewards s1, s2, s3 (t = 2) never signed anything.
 */
export function forgeCertificate(): Forgery {
  const sim = simulator(
    [
      { name: 's1', roles: ['steward', 'voter'], weight: 1 },
      { name: 's2', roles: ['steward', 'voter'], weight: 1 },
      { name: 's3', roles: ['steward', 'voter'], weight: 1 },
      { name: 'v', roles: ['voter'], weight: 1 },
    ],
    'forgery victim',
  )
  const replace = (id: string, newId: string) =>
    ({ type: 'replace-key', id: sim.did(id), newId: sim.did(newId) }) as const
  const p1 = sim.proposal('v', 10, { closesAt: 1200, basis: sim.federation, action: replace('s1', 'a1') })
  const p2 = sim.proposal('v', 1300, { closesAt: 2400, basis: p1.cid, action: replace('s2', 'a2') })
  const p3 = sim.proposal('v', 2500, {
    closesAt: 3600,
    basis: p2.cid,
    action: { type: 'admit-member', member: member(sim, 'a3', ['auditor', 'publisher', 'voter']) },
  })
  const manifest = sim.manifest('a3', 3700, { id: 'evil', name: 'evil', version: '1.0.0' })
  const ratify = sim.proposal('v', 3800, {
    closesAt: 4900,
    basis: p3.cid,
    action: { type: 'ratify-model', manifest: manifest.cid },
  })
  const votes = ['v', 'a1', 'a2', 'a3'].map((n) => sim.vote(n, 3810, { proposal: ratify.cid, choice: 'yes' }))
  const voteList = buildList(votes.map((x) => x.cid))
  const noAttestations = buildList([])
  const seals = ['a1', 'a2'].map((n) =>
    signRecord(
      {
        kind: 'seal',
        federation: sim.federation,
        at: sim.base + 5100,
        body: {
          proposal: ratify.cid,
          votes: { root: voteList.root, count: voteList.count },
          attestations: { root: noAttestations.root, count: 0 },
          tally: { yes: 4, no: 0, abstain: 0 },
          outcome: 'passed',
          weightsVerified: true,
        },
      },
      sim.signer(n),
      { lists: { votes: votes.map((x) => x.cid), attestations: [] } },
    ),
  )
  const model = 'evil@1.0.0'
  const finalized = [p1, p2, p3, ratify].map((p) => [p.cid, 'final-passed'] as const)
  const finalizedList = buildList(finalized)
  const root = buildStateRoot({
    head: p3.cid,
    height: 3,
    entries: [
      {
        key: model,
        value: {
          status: 'ratified',
          manifests: [plainManifestEntry(manifest.cid, true, false)],
          decision: ratify.cid,
        },
      },
    ],
  })
  const epoch = HOUR
  const body = {
    head: p3.cid,
    height: 3,
    epoch: sim.base + epoch,
    stateRoot: root.root,
    finalized: { root: finalizedList.root, count: finalizedList.count },
  }
  const checkpoints = ['a1', 'a2'].map((n) =>
    signRecord(
      { kind: 'checkpoint', federation: sim.federation, at: sim.base + epoch + 5100, body },
      sim.signer(n),
      { finalized },
    ),
  )
  const headerBytes = encode({
    certificate: 1,
    federation: sim.federation,
    model,
    genesis: sim.genesis.cid,
    checkpoint: checkpoints[0]!.cid,
  })
  const header = { cid: cidOfBlock(headerBytes), bytes: headerBytes }
  const records = [sim.genesis, p1, p2, p3, manifest, ratify, ...votes, ...seals, ...checkpoints]
  const car = writeCar(
    [header.cid],
    [
      header,
      ...records.map(blockOf),
      ...voteList.blocks,
      ...noAttestations.blocks,
      ...finalizedList.blocks,
      ...root.blocks.values(),
    ],
  )
  return {
    sim,
    model,
    chain: [p1, p2, p3],
    checkpoints,
    car,
    now: sim.base + epoch + DEFAULT_RULES.sealDeadlineMs + 1000,
  }
}
