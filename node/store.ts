/**
 * The record store: the durable record log, the list blocks, and the fold
 * over everything held (DESIGN.md §6).
 *
 * Invariants
 * - A record is acknowledged (ingest resolves) only after it — and every
 *   list block it needs that was sent with it — is written and fsync'd.
 * - The log holds only bytes that passed `decodeRecord`, and list blocks that
 *   a held seal or checkpoint names (below), so replay at start trusts its own file: it decodes
 *   and hashes each record but checks neither canonical form, schema nor
 *   signature again (that would make start-up far slower than the 5 s budget
 *   for 100,000 records; the file is 0600 and every frame is CRC'd).
 * - `check` is synchronous, never throws and never touches the network: it
 *   is the gossip validator. Verdicts: *reject* only for invalid bytes;
 *   *ignore* for duplicates, unknown authors and records past the ingest
 *   limits; *accept* otherwise (inapplicable and pending records are kept).
 * - A list block is kept only where a held seal or checkpoint names it: as the
 *   root of one of its lists (`votes`, `attestations`, `finalized`), or as a
 *   child of a kept branch, and only if it is exactly the block that position
 *   calls for (SPEC.md §6: `count` fixes the shape; sync/list-shape.ts). This
 *   holds wherever blocks enter — sent along with a record (`ingest`: only the
 *   record's own lists), or on their own (`ingestBlocks`, sync) — so a block
 *   nobody names is never written, never in `ids`, never served. Blocks of an
 *   older log that nothing names are dropped at start (`record-log-junk-dropped`).
 * - Only a seal or checkpoint whose author is a steward in some state of the
 *   governance chain names list blocks (only those can ever count). One by
 *   any other member is held as a record, its lists not wanted, until a
 *   decision makes its author a steward (ADR 0005).
 */

import { dirname, join } from 'node:path'
import type { CID } from 'multiformats/cid'
import {
  type AnyVerified,
  admit,
  attachLists,
  blockKey,
  cidKey,
  createAdmissionTally,
  createFold,
  decodeRecord,
  type Ed25519Backend,
  type Fold,
  federationIdOf,
  GOVERNANCE_ACTIONS,
  type GovState,
  LIMITS,
  type RecordReport,
  stewardsOf,
  type Verified,
} from '../protocol/index.js'
import { decodeOwnRecord } from '../protocol/record.js'
import { chainStates } from './chain-states.js'
import { fastEd25519 } from './ed25519-native.js'
import { NodeError } from './errors.js'
import type { Logger } from './log.js'
import { openRecordLog, type RecordLog } from './record-log.js'
import { nativeSha256 } from './sha256.js'
import { createIdSet, type IdSet } from './sync/id-set.js'
import { childPosition, fitAt, type ListPosition, rootPosition } from './sync/list-shape.js'
import { createVerifyPool, type VerifyPool } from './verify-pool.js'
import { openWitnessLog } from './witness.js'

export type Verdict = 'accept' | 'reject' | 'ignore'

export interface Checked {
  readonly verdict: Verdict
  readonly code?: string
  readonly message?: string
  readonly record?: AnyVerified
}

export interface IngestResult extends Checked {
  /** The fold's report for the record, once held. */
  readonly report?: RecordReport
  readonly duplicate?: boolean
  /** List blocks sent along that the record's lists name and that were new: kept with it. */
  readonly blocksTaken?: number
}

/** List blocks by key (`cidKey` of their CID): candidates already hashed by the caller. */
export type KeyedBlocks = ReadonlyMap<string, Uint8Array>

/** What became of list blocks offered on their own (`ingestBlocks`). */
export interface BlocksTaken {
  /** Named by a held seal or checkpoint, new here, and now durable. */
  readonly taken: number
  /** Held already (or being written by another call). */
  readonly duplicates: number
  /** Named by nothing held, or not the block their position calls for: not kept. */
  readonly refused: number
  readonly refusedBytes: number
}

export interface StoreCounters {
  /** Records by kind and verdict: `vote|accept` → n. */
  readonly verdicts: Map<string, number>
}

export { MAX_VOTES_PER_VOTER_AND_PROPOSAL } from '../protocol/index.js'

export interface RecordStore {
  readonly fold: Fold
  readonly federation: CID
  readonly counters: StoreCounters
  /** The gossip validator. */
  check(bytes: Uint8Array): Checked
  /** `check` for a batch, verified on worker threads (sync catch-up); the same verdicts. */
  checkMany(records: readonly Uint8Array[]): Promise<Checked[]>
  /**
   * Validates, makes durable, folds. `blocks` are list blocks sent along (a seal's vote list).
   * Of `blocks`, only those the record's own lists name are kept (a seal's or checkpoint's
   * closure); the rest are dropped. `checked` is the gossip validator's verdict on the same
   * bytes: an accepted record is not decoded and verified a second time.
   */
  ingest(
    bytes: Uint8Array,
    blocks?: readonly Uint8Array[] | KeyedBlocks,
    checked?: Checked,
  ): Promise<IngestResult>
  /** List blocks held, by CID. */
  getBlock(cid: CID): Uint8Array | undefined
  /** Whether the list block with this key (`cidKey`) is held. */
  hasBlock(key: string): boolean
  /** Whether a held seal or checkpoint names the list block with this key and it is not held yet. */
  wantsBlock(key: string): boolean
  /** A number that changes whenever a held record comes to name a list block not held. */
  namingGeneration(): number
  /**
   * The bytes held under a CID, never from the network: a record, a list block, or for the
   * federation id the genesis.
   */
  bytesOf(cid: CID): Uint8Array | undefined
  /** When this node first received a proposal or vote (its own clock), if known. */
  witnessedAt(key: string): number | undefined
  /** The ids (CID digests) of every record and list block held: what sync reconciles. */
  readonly ids: IdSet
  /**
   * List blocks from a peer (sync): those a held seal or checkpoint names (directly or below a
   * named branch, in the shape its count fixes) are made durable, then seals and checkpoints
   * waiting for them are completed. The rest are refused: not written, not in `ids`.
   */
  ingestBlocks(blocks: readonly Uint8Array[] | KeyedBlocks): Promise<BlocksTaken>
  logBytes(): number
  close(): Promise<void>
}

/** The roots of a seal's or checkpoint's lists, with their positions; none for other records. */
function listRoots(v: AnyVerified): [string, ListPosition][] {
  const r = v.record
  const lists =
    r.kind === 'seal'
      ? [r.body.votes, r.body.attestations]
      : r.kind === 'checkpoint'
        ? [r.body.finalized]
        : []
  const out: [string, ListPosition][] = []
  for (const list of lists) {
    const p = rootPosition(list.count)
    if (p) out.push([cidKey(list.root), p])
  }
  return out
}

/** Named blocks found in candidates (admitted) and named positions nothing filled (missing). */
interface Admission {
  readonly admitted: Map<string, Uint8Array>
  readonly missing: Map<string, ListPosition>
}

const NO_BLOCKS: KeyedBlocks = new Map()

function countOf(blocks: readonly Uint8Array[] | KeyedBlocks): number {
  return Array.isArray(blocks) ? blocks.length : (blocks as KeyedBlocks).size
}

export async function openStore(options: {
  path: string
  genesis: Verified<'genesis'>
  clock: () => number
  log: Logger
  ed25519?: Ed25519Backend
}): Promise<RecordStore> {
  const { genesis, clock, log } = options
  const federation = federationIdOf(genesis.record)
  const backend = options.ed25519 ?? fastEd25519
  const fold = createFold(genesis)
  const blocks = new Map<string, Uint8Array>()
  const ids = createIdSet()
  // A key is the CID's 36 bytes as one char each; the id is the digest after the 4-byte prefix.
  const idScratch = new Uint8Array(32)
  const addId = (key: string) => {
    for (let i = 0; i < 32; i++) idScratch[i] = key.charCodeAt(i + 4)
    ids.add(idScratch)
  }
  const getBlock = (cid: CID) => blocks.get(cidKey(cid))
  /** What the ingest limits count (protocol/admission.ts). */
  const tally = createAdmissionTally()
  /** Governance proposals held: with the head, their electorates are the chain's states. */
  const governance: CID[] = []
  const unresolved = new Map<string, AnyVerified>()
  const verdicts = new Map<string, number>()
  const inflight = new Map<string, Promise<IngestResult>>()

  const count = (kind: string, verdict: string) => {
    const k = `${kind}|${verdict}`
    verdicts.set(k, (verdicts.get(k) ?? 0) + 1)
  }

  /** Adds a record to the fold, with its lists if the blocks are here. */
  // Interning: every record repeats the federation id, most repeat a proposal's CID and an
  // author's DID. Sharing one object per value (equal by value, so nothing changes in meaning)
  // saves most of a record's heap: a decoded CID is five objects.
  const cids = new Map<string, CID>([[cidKey(federation), federation]])
  const dids = new Map<string, string>()
  const intern = (v: AnyVerified) => {
    const r = v.record as unknown as { federation?: CID; author: string; body: Record<string, unknown> }
    if (r.federation) r.federation = federation
    const author = dids.get(r.author)
    if (author === undefined) dids.set(r.author, r.author)
    else r.author = author
    for (const field of ['proposal', 'subject', 'basis'] as const) {
      const c = r.body[field] as CID | undefined
      if (!c) continue
      const k = cidKey(c)
      const shared = cids.get(k)
      if (shared) r.body[field] = shared
      else cids.set(k, c)
    }
    if (v.record.kind === 'proposal' || v.record.kind === 'manifest') {
      const k = v.key
      if (!cids.has(k)) cids.set(k, v.cid)
    }
  }
  const hold = (v: AnyVerified) => {
    intern(v)
    addId(v.key)
    const withLists = attachLists(v, getBlock)
    if (withLists.ok) {
      fold.add(withLists.value)
      unresolved.delete(v.key)
    } else {
      fold.add(v)
      unresolved.set(v.key, v)
    }
    tally.add(v)
    const r = v.record
    if (r.kind === 'proposal' && GOVERNANCE_ACTIONS.has(r.body.action.type)) governance.push(v.cid)
  }

  /** A new list block may complete seals or checkpoints that waited for it. */
  const holdBlock = (bytes: Uint8Array, key: string) => {
    blocks.set(key, bytes)
    addId(key)
  }
  /** List blocks a held seal or checkpoint names that are not here yet, by key: where each goes. */
  const named = new Map<string, ListPosition>()
  /** Changes whenever a block not held becomes named: blocks refused before may be named now. */
  let namingGeneration = 0
  /** Keys of list blocks being written now (two seals may share a block, e.g. the empty list). */
  const writing = new Set<string>()

  /**
   * Members with the steward role in some state of the governance chain: the head state, and
   * every other chain state as the electorate of the governance proposal after it
   * (chain-states.ts, as for who may upload). Only their seals and checkpoints can ever count, so only theirs
   * name list blocks: a member's seal could otherwise make every node keep a million entries
   * of its choosing. Worked out again when the governance head changes.
   */
  let stewards: ReadonlySet<string> = new Set()
  let stewardsUnder: GovState | undefined
  const stewardsEver = (): ReadonlySet<string> => {
    const head = fold.headState()
    if (head === stewardsUnder) return stewards
    const found = new Set<string>()
    for (const state of chainStates(fold, governance)) for (const id of stewardsOf(state)) found.add(id)
    stewardsUnder = head
    stewards = found
    return found
  }
  const namesLists = (v: AnyVerified) => stewardsEver().has(v.record.author)

  /**
   * Held seals and checkpoints whose authors are stewards in no chain state yet: their lists are
   * not wanted. Records already held, so bounded by them. Looked at again when the governance head
   * changes: a decision may have made their authors stewards.
   */
  const deferred = new Map<string, AnyVerified>()
  let deferredUnder: GovState | undefined
  /** Names the lists of `holders` (held already): sync asks for them from now on. */
  const nameListsOf = (holders: readonly AnyVerified[]) => {
    if (holders.length > 0) commit(follow(holders.flatMap(listRoots), NO_BLOCKS))
  }
  /** A held seal or checkpoint: its lists named now, or deferred until its author is a steward. */
  const placeLists = (v: AnyVerified) => {
    if (namesLists(v)) nameListsOf([v])
    else deferred.set(v.key, v)
  }
  const reviewDeferred = () => {
    if (deferred.size === 0) return
    const head = fold.headState()
    if (head === deferredUnder) return
    deferredUnder = head
    const now: AnyVerified[] = []
    for (const v of deferred.values()) if (namesLists(v)) now.push(v)
    for (const v of now) deferred.delete(v.key)
    nameListsOf(now)
  }

  /**
   * Follows named positions from `starts` down through held blocks and `candidates`: the
   * candidates that are exactly the block their position calls for, and the named positions
   * nothing fills yet. Held blocks passed through are added to `reached`. Levels only go down,
   * so this ends; it reads each block at most once per start.
   */
  const follow = (
    starts: Iterable<readonly [string, ListPosition]>,
    candidates: KeyedBlocks,
    reached?: Set<string>,
  ): Admission => {
    const admitted = new Map<string, Uint8Array>()
    const missing = new Map<string, ListPosition>()
    const visit = (key: string, p: ListPosition): void => {
      if (admitted.has(key) || writing.has(key)) return
      const held = blocks.get(key)
      if (held !== undefined) {
        reached?.add(key)
        // A held leaf names nothing; a held branch may name blocks still to come.
        if (p.level === 0) return
      }
      const bytes = held ?? candidates.get(key)
      if (bytes === undefined) {
        missing.set(key, p)
        return
      }
      const children = fitAt(bytes, p)
      if (children === undefined) {
        if (held === undefined) missing.set(key, p)
        return
      }
      // A compact copy: a view would pin the whole network frame it came in.
      if (held === undefined) admitted.set(key, Uint8Array.prototype.slice.call(bytes))
      for (let j = 0; j < children.length; j++) visit(cidKey(children[j]!), childPosition(p, j))
    }
    for (const [key, p] of starts) visit(key, p)
    return { admitted, missing }
  }

  /** After the admitted blocks are durable: hold them, and remember what is still named. */
  const commit = (a: Admission) => {
    for (const [key, bytes] of a.admitted) {
      holdBlock(bytes, key)
      named.delete(key)
    }
    for (const [key, p] of a.missing) {
      if (blocks.has(key) || named.has(key)) continue
      named.set(key, p)
      namingGeneration++
    }
  }

  /** Writes the admitted blocks (and a record after them), marked as being written meanwhile. */
  const write = async (a: Admission, record?: Uint8Array) => {
    const keys = [...a.admitted.keys()]
    for (const k of keys) writing.add(k)
    try {
      await recordLog.appendMany(record ? [...a.admitted.values(), record] : [...a.admitted.values()])
    } finally {
      for (const k of keys) writing.delete(k)
    }
  }

  /** Candidates by key; blocks of no possible list size are left out (refused by the caller). */
  const keyed = (candidates: readonly Uint8Array[] | KeyedBlocks): KeyedBlocks => {
    if (!Array.isArray(candidates)) return candidates as KeyedBlocks
    const out = new Map<string, Uint8Array>()
    for (const b of candidates as readonly Uint8Array[]) {
      if (b.length === 0 || b.length > LIMITS.maxListBlockBytes) continue
      out.set(blockKey(b, nativeSha256), b)
    }
    return out
  }
  const retryUnresolved = () => {
    for (const v of [...unresolved.values()]) {
      const r = attachLists(v, getBlock)
      if (r.ok) {
        unresolved.delete(v.key)
        fold.add(r.value)
      }
    }
  }

  const recordLog: RecordLog = await openRecordLog(options.path, {
    log: (event) => {
      const name = String((event as { event?: string }).event ?? 'record-log')
      // A repair means acknowledged records were lost to damage (sync fetches them back): an
      // operator should look at the disk. A torn tail or a stale lock is routine after a crash.
      log.log(name === 'record-log-repaired' ? 'error' : 'warn', name, event as Record<string, unknown>)
    },
  })
  const witness = await openWitnessLog(join(dirname(options.path), 'witness.log'), (event) =>
    log.warn(String((event as { event?: string }).event ?? 'witness-log'), event as Record<string, unknown>),
  )
  const started = Date.now()
  let replayed = 0
  let skipped = 0
  // Seals and checkpoints replayed: after the whole log, they tell which list blocks are named.
  const listed: AnyVerified[] = []
  await recordLog.replay((bytes) => {
    // Records are CBOR maps (major type 5), list blocks arrays (major type 4): one byte tells.
    if (bytes[0]! >> 5 === 4) {
      blocks.set(blockKey(bytes, nativeSha256), bytes)
      return
    }
    const v = decodeOwnRecord(bytes, nativeSha256)
    if (!v || v.record.kind === 'genesis' || !v.record.federation?.equals(federation)) {
      skipped++
      return
    }
    hold(v)
    if (v.record.kind === 'seal' || v.record.kind === 'checkpoint') listed.push(v)
    replayed++
  })
  retryUnresolved()
  // Only a steward's seals and checkpoints name blocks; the others wait for a decision.
  const naming: AnyVerified[] = []
  for (const v of listed) {
    if (namesLists(v)) naming.push(v)
    else deferred.set(v.key, v)
  }
  deferredUnder = fold.headState()
  dropUnnamed(naming)
  fold.state()
  log.info('record-log-replayed', {
    records: replayed,
    blocks: blocks.size,
    skipped,
    ms: Date.now() - started,
    ...(recordLog.recovery ? { recovery: recordLog.recovery } : {}),
  })

  /**
   * Keeps, of the list blocks replayed, those a held seal or checkpoint names, and drops the
   * rest from memory: an older version stored any well-formed list block a peer sent. The file
   * keeps their bytes (skipped at every start) until it is compacted.
   */
  function dropUnnamed(holders: readonly AnyVerified[]): void {
    const reached = new Set<string>()
    commit(follow(holders.flatMap(listRoots), NO_BLOCKS, reached))
    let dropped = 0
    let droppedBytes = 0
    for (const [key, bytes] of blocks) {
      if (reached.has(key)) {
        addId(key)
        continue
      }
      blocks.delete(key)
      dropped++
      droppedBytes += bytes.length
    }
    if (dropped > 0) log.warn('record-log-junk-dropped', { blocks: dropped, bytes: droppedBytes })
  }

  const check = (input: Uint8Array): Checked => {
    // A compact copy: the decoded record keeps views into these bytes, and a small view
    // into a pooled network buffer would pin the whole pool slab for as long as the record lives.
    const bytes = Uint8Array.prototype.slice.call(input)
    let d: ReturnType<typeof decodeRecord>
    try {
      d = decodeRecord(bytes, { federation, ed25519: backend, sha256: nativeSha256 })
    } catch (e) {
      // decodeRecord never throws by contract; if it ever does, the input is not trusted.
      log.error('validator-threw', { error: e as Error })
      return { verdict: 'ignore', code: 'internal', message: 'validation failed unexpectedly' }
    }
    if (!d.ok) {
      count('unknown', 'reject')
      return { verdict: 'reject', code: d.code, message: d.message }
    }
    return judge(d.value)
  }

  /** The node's policy for a record whose bytes passed every check (protocol/admission.ts). */
  const judge = (v: AnyVerified): Checked => {
    const admission = admit(v, { fold, tally }, clock())
    if (admission.admitted) {
      count(v.record.kind, 'accept')
      return { verdict: 'accept', record: v }
    }
    count(v.record.kind, admission.code === 'duplicate' ? 'duplicate' : 'ignore')
    return { verdict: 'ignore', code: admission.code, message: admission.message, record: v }
  }

  // Workers for batches (sync), started on first use.
  let pool: VerifyPool | undefined
  const checkMany = async (inputs: readonly Uint8Array[]): Promise<Checked[]> => {
    if (inputs.length < 64) return inputs.map(check)
    pool ??= createVerifyPool(federation)
    const copies = inputs.map((b) => Uint8Array.prototype.slice.call(b) as Uint8Array)
    const verdicts = await pool.verify(copies)
    return copies.map((bytes, i) => {
      const bad = verdicts[i]
      if (bad) {
        count('unknown', 'reject')
        return { verdict: 'reject', code: bad.code, message: bad.message }
      }
      // The worker ran decodeRecord on these bytes: decoding them again is all that is left.
      const v = decodeOwnRecord(bytes, nativeSha256)
      if (!v || v.record.kind === 'genesis') return check(bytes)
      return judge(v)
    })
  }

  let closed = false
  const ingestBlocks = async (candidates: readonly Uint8Array[] | KeyedBlocks): Promise<BlocksTaken> => {
    if (closed) throw new NodeError('store-closed', 'the node is shutting down', { status: 503 })
    const pool = keyed(candidates)
    const offered = countOf(candidates)
    let duplicates = 0
    const starts: [string, ListPosition][] = []
    for (const key of pool.keys()) {
      if (blocks.has(key) || writing.has(key)) {
        duplicates++
        continue
      }
      const p = named.get(key)
      if (p) starts.push([key, p])
    }
    const a = follow(starts, pool)
    let refusedBytes = 0
    for (const [key, bytes] of pool)
      if (!a.admitted.has(key) && !blocks.has(key) && !writing.has(key)) refusedBytes += bytes.length
    if (Array.isArray(candidates))
      for (const b of candidates as readonly Uint8Array[])
        if (b.length === 0 || b.length > LIMITS.maxListBlockBytes) refusedBytes += b.length
    const refused = offered - duplicates - a.admitted.size
    if (a.admitted.size > 0) {
      await write(a)
      commit(a)
      retryUnresolved()
      reviewDeferred()
    }
    return { taken: a.admitted.size, duplicates, refused, refusedBytes }
  }

  const ingest = (
    bytes: Uint8Array,
    extra: readonly Uint8Array[] | KeyedBlocks = [],
    checked?: Checked,
  ): Promise<IngestResult> => {
    if (closed)
      return Promise.reject(new NodeError('store-closed', 'the node is shutting down', { status: 503 }))
    const c =
      checked?.verdict === 'accept' && checked.record && !fold.has(checked.record.key)
        ? checked
        : check(bytes)
    if (c.verdict === 'reject') return Promise.resolve(c)
    const v = c.record!
    if (c.code === 'duplicate' || c.verdict === 'ignore') {
      const held = fold.has(v.key)
      // A held seal still waiting for its lists may be sent again with them.
      if (held && unresolved.has(v.key) && countOf(extra) > 0)
        return completeLists(v, keyed(extra)).then((taken) => ({
          ...c,
          report: fold.report(v.key)!,
          duplicate: true,
          blocksTaken: taken,
        }))
      return Promise.resolve({
        ...c,
        ...(held ? { report: fold.report(v.key)!, duplicate: true } : {}),
      })
    }
    const key = v.key
    const running = inflight.get(key)
    if (running) return running.then((r) => ({ ...r, duplicate: true }))
    const roots = listRoots(v)
    // A steward's seal or checkpoint keeps the blocks of its own lists sent along; another
    // member's keeps none (placeLists below).
    const named = roots.length > 0 && namesLists(v)
    const a = named
      ? follow(roots, keyed(extra))
      : { admitted: new Map<string, Uint8Array>(), missing: new Map<string, ListPosition>() }
    const work = write(a, v.bytes)
      .then(() => {
        commit(a)
        if (a.admitted.size > 0) retryUnresolved()
        const kind = v.record.kind
        if (kind === 'vote' || kind === 'proposal' || kind === 'attestation') witness.note(v.key, clock())
        hold(v)
        // Asked again now that v is held (the head may have moved while it was written).
        if (roots.length > 0 && !named) placeLists(v)
        reviewDeferred()
        return {
          verdict: 'accept' as const,
          record: v,
          report: fold.report(v.key)!,
          blocksTaken: a.admitted.size,
        }
      })
      .finally(() => inflight.delete(key))
    inflight.set(key, work)
    return work
  }

  /** The named blocks of a held record's own lists, from `pool`: written, then the record retried. */
  const completeLists = async (v: AnyVerified, pool: KeyedBlocks): Promise<number> => {
    if (deferred.has(v.key)) return 0
    const a = follow(listRoots(v), pool)
    if (a.admitted.size === 0) return 0
    await write(a)
    commit(a)
    retryUnresolved()
    reviewDeferred()
    return a.admitted.size
  }

  return {
    fold,
    federation,
    counters: { verdicts },
    check,
    checkMany,
    ingest,
    getBlock,
    hasBlock: (key) => blocks.has(key),
    wantsBlock: (key) => named.has(key),
    namingGeneration: () => namingGeneration,
    bytesOf(cid) {
      if (cid.equals(federation)) return genesis.bytes
      const key = cidKey(cid)
      return blocks.get(key) ?? fold.get(cid)?.bytes
    },
    ids,
    witnessedAt: (key) => witness.at(key),
    ingestBlocks,
    logBytes: () => recordLog.size(),
    async close() {
      closed = true
      await Promise.allSettled([...inflight.values()])
      await pool?.close()
      await recordLog.close()
      await witness.close()
    },
  }
}
