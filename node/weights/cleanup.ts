/**
 * Clean-up of weights nobody ratified (docs/adr/0031-scrubbing-and-clean-up.md): the decision is
 * cleanup-plan.ts's; here the pinned roots are looked at, their first sight recorded (the ledger's
 * `pinnedAt`, from which retention counts), the bytes each would free measured, and what is due
 * unpinned — its blocks no other pin holds deleted in the unpin's turn, as retention.ts lets
 * revoked weights go, so no pin can take a block between its release and its delete.
 *
 * `plan` lists what is due (for `node gc --dry-run`); `collect` lets it go, judging each root
 * again on the fold's state of the moment just before its unpin; the node's timer collects every
 * minute.
 */
import * as dagPb from '@ipld/dag-pb'
import type { CID } from 'multiformats/cid'
import { DAG_PB_CODE, IDENTITY_CODE } from '../../protocol/cid.js'
import type { FederationState } from '../../protocol/index.js'
import type { Logger } from '../log.js'
import { type CollectReason, judgeRoot, type RootStanding, standings } from './cleanup-plan.js'
import type { RetentionPins } from './retention.js'
import type { RootLedger } from './root-ledger.js'
import { unpinRoot } from './unpin-root.js'

export interface CleanupPins extends RetentionPins {
  /** The pinned roots whose DAG holds the block `cid`. */
  rootsOf(cid: CID): Promise<CID[]>
}

export interface CleanupBlockstore {
  get(cid: CID, options?: { signal?: AbortSignal }): AsyncIterable<Uint8Array> | Iterable<Uint8Array>
  delete(cid: CID): Promise<void>
}

export interface CleanupOptions {
  readonly state: () => FederationState
  /** A manifest's weights root and `at` (its record). */
  readonly manifestOf: (manifest: CID) => { weights: CID; at: number } | undefined
  readonly pinnedRoots: () => Promise<CID[]>
  readonly pins: CleanupPins
  readonly blockstore: CleanupBlockstore
  readonly ledger: RootLedger
  /** What the node holds verified: a root let go is forgotten there. */
  readonly held?: { forget(root: CID): Promise<void> }
  readonly clock: () => number
  /** `unratifiedRetentionMs` as it is now. */
  readonly retentionMs: () => number
  readonly log: Logger
}

/** One root clean-up lets go (or would). */
export interface DueRoot {
  readonly root: CID
  readonly why: CollectReason
  /** When its retention started, and ran out (ms since epoch). */
  readonly since: number
  readonly dueAt: number
  /** Bytes of its blocks no other pinned root holds: what letting it go frees. */
  readonly bytes: number
}

export interface Cleanup {
  /** Records the first sight of new pins; lists what is due now. */
  plan(signal?: AbortSignal): Promise<DueRoot[]>
  /** Lets go what is due now; returns what went. */
  collect(signal?: AbortSignal): Promise<DueRoot[]>
}

export function createCleanup(options: CleanupOptions): Cleanup {
  const { ledger, log } = options
  // One run at a time: the timer's and an operator's `node gc` wait for each other.
  let last: Promise<unknown> = Promise.resolve()

  const plan = async (signal?: AbortSignal): Promise<DueRoot[]> => {
    const now = options.clock()
    const byRoot = standings(options.state(), options.manifestOf)
    const due: DueRoot[] = []
    const pinned = await options.pinnedRoots()
    await ledger.prune(pinned)
    for (const root of pinned) {
      signal?.throwIfAborted()
      const { pinnedAt } = await ledger.seen(root, now)
      const verdict = judgeRoot(
        byRoot.get(root.toString()) ?? NO_MANIFEST,
        pinnedAt,
        now,
        options.retentionMs(),
      )
      if (!verdict.collect) continue
      const bytes = await freedBytes(root, options, signal)
      due.push({ root, why: verdict.why, since: verdict.since, dueAt: verdict.dueAt, bytes })
    }
    return due
  }

  const collect = async (signal?: AbortSignal): Promise<DueRoot[]> => {
    const collected: DueRoot[] = []
    for (const due of await plan(signal)) {
      if (signal?.aborted) break
      if (await letGo(due, options, signal)) collected.push(due)
    }
    if (collected.length > 0)
      log.info('weights-gc', { roots: collected.length, bytes: collected.reduce((n, d) => n + d.bytes, 0) })
    return collected
  }

  const inTurn = (run: () => Promise<DueRoot[]>) => {
    const turn = last.then(run)
    last = turn.catch(() => {})
    return turn
  }

  return {
    plan: (signal) => inTurn(() => plan(signal)),
    collect: (signal) => inTurn(() => collect(signal)),
  }
}

const NO_MANIFEST: RootStanding = { manifests: [] }

/**
 * Whether `due` is due still, judged on the fold's state as it is now. The plan was judged before
 * `freedBytes` walked every due DAG, and the fold goes on taking records meanwhile: a manifest or a
 * ratification proposal that arrived since keeps the weights (SPEC.md §15.7).
 */
function stillDue(due: DueRoot, options: CleanupOptions): boolean {
  const standing = standings(options.state(), options.manifestOf).get(due.root.toString()) ?? NO_MANIFEST
  const pinnedAt = options.ledger.get(due.root)?.pinnedAt ?? due.since
  const now = options.clock()
  const verdict = judgeRoot(standing, pinnedAt, now, options.retentionMs())
  if (!verdict.collect)
    options.log.info('weights-gc-kept', { root: due.root.toString(), reason: verdict.why })
  return verdict.collect
}

/**
 * Unpins one due root, deleting the blocks it alone held; whether it went. It is judged again
 * last, with no wait between the verdict and the unpin's start, so nothing the fold took since
 * the plan is missed.
 */
async function letGo(due: DueRoot, options: CleanupOptions, signal?: AbortSignal): Promise<boolean> {
  const { root } = due
  if (!(await options.pins.hasPin(root))) return false
  if (!stillDue(due, options)) return false
  let unpinned: { blocks: number; deleted: number }
  try {
    unpinned = await unpinRoot(options.pins, options.blockstore, root, signal)
  } catch (e) {
    options.log.warn('weights-unpin-failed', { root: root.toString(), error: e as Error })
    return false
  }
  await options.ledger.forget(root)
  await options.held?.forget(root)
  options.log.info('weights-unpinned', {
    root: root.toString(),
    reason: due.why,
    blocks: unpinned.blocks,
    deleted: unpinned.deleted,
    bytes: due.bytes,
  })
  return true
}

/**
 * The bytes of the blocks under `root` that no other pinned root holds. Only the DAG's nodes are
 * read; a leaf's size is its parent link's.
 */
async function freedBytes(root: CID, options: CleanupOptions, signal?: AbortSignal): Promise<number> {
  const seen = new Set<string>()
  const stack: { cid: CID; size: number }[] = [{ cid: root, size: 0 }]
  let bytes = 0
  while (stack.length > 0) {
    signal?.throwIfAborted()
    const { cid, size } = stack.pop()!
    if (seen.has(cid.toString()) || cid.multihash.code === IDENTITY_CODE) continue
    seen.add(cid.toString())
    const holders = await options.pins.rootsOf(cid)
    const alone = holders.every((r) => r.equals(root))
    if (cid.code !== DAG_PB_CODE) {
      if (alone) bytes += size
      continue
    }
    const block = await readNode(options.blockstore, cid, signal)
    if (!block) continue
    if (alone) bytes += block.length
    for (const link of linksOf(block)) stack.push({ cid: link.Hash, size: link.Tsize ?? 0 })
  }
  return bytes
}

/** A node's links; none for bytes that do not decode (nothing below them can be counted). */
function linksOf(block: Uint8Array): dagPb.PBLink[] {
  try {
    return dagPb.decode(block).Links
  } catch {
    return []
  }
}

async function readNode(
  blockstore: CleanupBlockstore,
  cid: CID,
  signal?: AbortSignal,
): Promise<Uint8Array | undefined> {
  try {
    const parts: Uint8Array[] = []
    for await (const part of blockstore.get(cid, signal ? { signal } : {})) parts.push(part)
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
  } catch {
    // Not held (a damaged block deleted by the scrub): nothing below it to count.
    return undefined
  }
}
