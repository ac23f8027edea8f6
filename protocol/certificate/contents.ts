/**
 * The blocks a certificate holds (SPEC.md §12.1), one function per part: the genesis, the
 * checkpoint copies, the governance chain (full or compact), the proof, the manifests and the
 * deciding proposal. The exporter collects them from its fold; the verifier collects them again
 * from the fold of the file and refuses every block outside them, so two nodes holding the same
 * records write the same bytes and a file holds nothing the verifier did not ask for
 * (docs/adr/0020).
 */
import type { CID } from 'multiformats/cid'
import { equalBytes } from '../bytes.js'
import { encode } from '../cbor.js'
import { cidKey, compareCids } from '../cid.js'
import { type Block, buildList } from '../cidlist.js'
import type { Fold } from '../fold/index.js'
import type { AnyVerified, Verified } from '../record.js'
import type { MapValue } from '../stateroot.js'
import type { CertificateMode } from './format.js'

export interface ContentsRequest {
  readonly fold: Fold
  readonly mode: CertificateMode
  /** The trusted head the chain starts after, or null (from the genesis). */
  readonly since: CID | null
  /** The model's entry under the checkpoint's state root, null when it has none. */
  readonly entry: MapValue | null
  /** The blocks of the model's proof under the checkpoint's state root. */
  readonly proof: readonly Block[]
}

export interface Contents {
  /** Every block but the header, by CID key. */
  readonly blocks: Map<string, Block>
  /** The records among them, by CID key. */
  readonly records: Map<string, AnyVerified>
  /** Keys of seals held without their lists (compact governance steps). */
  readonly bare: Set<string>
}

/** What a fold holds about seals and attestations, indexed once (a chain step reads it many times). */
interface RecordIndex {
  readonly sealsByProposal: Map<string, Verified<'seal'>[]>
  readonly attestationsBySubject: Map<string, Verified<'attestation'>[]>
  readonly checkpoints: Verified<'checkpoint'>[]
}

/** The blocks of a certificate of the fold's newest counted checkpoint; throws without one. */
export function collectContents(request: ContentsRequest): Contents {
  const { fold } = request
  const contents: Contents = { blocks: new Map(), records: new Map(), bare: new Set() }
  const index = indexRecords(fold)
  addRecord(contents, fold.state().genesis)
  addCheckpointCopies(contents, fold, index)
  addChain(contents, request, index)
  for (const block of request.proof) contents.blocks.set(cidKey(block.cid), block)
  addManifests(contents, request, index)
  if (request.entry?.decision) addDecision(contents, fold, index, request.entry.decision)
  return contents
}

/** The manifest CIDs an entry names. */
export function manifestCids(entry: MapValue): CID[] {
  return entry.manifests.map((m) => m.cid)
}

function indexRecords(fold: Fold): RecordIndex {
  const index: RecordIndex = { sealsByProposal: new Map(), attestationsBySubject: new Map(), checkpoints: [] }
  for (const record of fold.records()) {
    if (record.record.kind === 'seal') {
      const seal = record as Verified<'seal'>
      push(index.sealsByProposal, cidKey(seal.record.body.proposal), seal)
    } else if (record.record.kind === 'attestation') {
      const attestation = record as Verified<'attestation'>
      push(index.attestationsBySubject, cidKey(attestation.record.body.subject), attestation)
    } else if (record.record.kind === 'checkpoint') {
      index.checkpoints.push(record as Verified<'checkpoint'>)
    }
  }
  return index
}

/** A record, and the blocks of its lists unless it is held bare. */
function addRecord(contents: Contents, record: AnyVerified, bare = false): void {
  contents.records.set(record.key, record)
  contents.blocks.set(record.key, { cid: record.cid, bytes: record.bytes })
  if (bare) {
    contents.bare.add(record.key)
    return
  }
  if (record.record.kind === 'seal' && record.lists) {
    for (const block of buildList(record.lists.votes).blocks) contents.blocks.set(cidKey(block.cid), block)
    for (const block of buildList(record.lists.attestations).blocks)
      contents.blocks.set(cidKey(block.cid), block)
  }
  if (record.record.kind === 'checkpoint' && record.finalized)
    for (const block of buildList(record.finalized).blocks) contents.blocks.set(cidKey(block.cid), block)
}

/** Every copy of the newest counted checkpoint that counts (signed by a steward of its head state). */
function addCheckpointCopies(contents: Contents, fold: Fold, index: RecordIndex): void {
  const newest = fold.state().checkpoint
  if (!newest) throw new Error('no checkpoint has been counted: a certificate needs one')
  const body = encode((fold.get(newest.cid) as Verified<'checkpoint'>).record.body)
  for (const copy of index.checkpoints) {
    if (fold.report(copy.key)?.status !== 'applied') continue
    if (equalBytes(encode(copy.record.body), body)) addRecord(contents, copy)
  }
}

/** The governance steps from the checkpoint's head back to `since` (or the genesis). */
function addChain(contents: Contents, request: ContentsRequest, index: RecordIndex): void {
  const { fold } = request
  const state = fold.state()
  const start = request.since ?? state.federation
  for (let head = state.checkpoint!.head; !head.equals(start) && !head.equals(state.federation); ) {
    const step = fold.get(head) as Verified<'proposal'> | undefined
    if (!step) return
    if (request.mode === 'full') addDecision(contents, fold, index, head)
    else addCompactStep(contents, fold, index, step)
    head = step.record.body.basis
  }
}

/** A proposal with its valid seals, their lists and every vote and attestation they name. */
function addDecision(contents: Contents, fold: Fold, index: RecordIndex, proposal: CID): void {
  const record = fold.get(proposal)
  if (!record) return
  addRecord(contents, record)
  for (const seal of index.sealsByProposal.get(record.key) ?? []) {
    if (fold.report(seal.key)?.status !== 'applied') continue
    addRecord(contents, seal)
    for (const named of [...(seal.lists?.votes ?? []), ...(seal.lists?.attestations ?? [])]) {
      const vote = fold.get(named)
      if (vote) addRecord(contents, vote)
    }
  }
}

/**
 * A governance step as a compact certificate proves it: the proposal and the t valid seals that
 * agree on `passed` with the smallest CIDs, one per steward, without their lists or votes.
 */
function addCompactStep(
  contents: Contents,
  fold: Fold,
  index: RecordIndex,
  step: Verified<'proposal'>,
): void {
  addRecord(contents, step)
  const threshold = fold.electorate(step.cid)?.rules.sealThreshold ?? 0
  for (const seal of agreeingSeals(fold, index, step).slice(0, threshold)) addRecord(contents, seal, true)
}

/** Valid seals of a step that say `passed`, by CID, each steward's smallest only. */
function agreeingSeals(fold: Fold, index: RecordIndex, step: Verified<'proposal'>): Verified<'seal'>[] {
  const passed = (index.sealsByProposal.get(step.key) ?? [])
    .filter((seal) => seal.record.body.outcome === 'passed' && fold.report(seal.key)?.status === 'applied')
    .sort((a, b) => compareCids(a.cid, b.cid))
  const stewards = new Set<string>()
  return passed.filter((seal) => {
    if (stewards.has(seal.record.author)) return false
    stewards.add(seal.record.author)
    return true
  })
}

/** The manifests the entry names, and every applicable attestation of them. */
function addManifests(contents: Contents, request: ContentsRequest, index: RecordIndex): void {
  if (!request.entry) return
  const { fold } = request
  for (const manifest of manifestCids(request.entry)) {
    const record = fold.get(manifest)
    if (!record) continue
    addRecord(contents, record)
    for (const attestation of index.attestationsBySubject.get(record.key) ?? [])
      if (fold.report(attestation.key)?.status === 'applied') addRecord(contents, attestation)
  }
}

function push<V>(map: Map<string, V[]>, key: string, value: V): void {
  const list = map.get(key)
  if (list) list.push(value)
  else map.set(key, [value])
}
