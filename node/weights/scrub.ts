/**
 * The background scrub of held weights (docs/adr/0031-scrubbing-and-clean-up.md): every pinned
 * root's blocks read back and hashed against their CIDs at `scrubBytesPerSecond`, one root at a
 * time, each again `intervalMs` after its last pass. A block that does not hash to its CID, or is
 * gone, is deleted; the root is marked incomplete (`held.scrubbed(root, at, false)`: no holding
 * announcement is signed for it) and repaired at once from peers (scrub-repair.ts), then checked
 * against its manifest again (`held.verified`). A clean pass is `held.scrubbed(root, at, true)`.
 *
 * The order, one step at a time (`step`): a root whose repair is due (incomplete, or a repair that
 * failed a while ago), then the pass a stop cut off (its cursor), then the root scrubbed longest
 * ago (never first, in the order they were pinned). A root unpinned while it is being scrubbed
 * (retention, clean-up) is dropped, never "repaired".
 */
import type { CID } from 'multiformats/cid'
import type { Logger } from '../log.js'
import type { HeldVersions } from './held-versions.js'
import type { RootLedger, RootTimes, ScrubCursor } from './root-ledger.js'
import type { ScrubMetrics } from './scrub-metrics.js'
import { type PassBlocks, type PassResult, scrubPass } from './scrub-pass.js'
import type { TokenBucket } from './scrub-rate.js'
import type { RepairOutcome } from './scrub-repair.js'

/** A root is scrubbed again this long after its last pass (as Ceph's deep scrub, weekly). */
export const SCRUB_INTERVAL_MS = 7 * 24 * 60 * 60 * 1000
/** A repair that failed is tried again after this long. */
export const REPAIR_RETRY_MS = 5 * 60 * 1000
/** The cursor is written after this many blocks (a few seconds of reading at the default rate). */
const CURSOR_EVERY_BLOCKS = 256

export interface ScrubberOptions {
  readonly pinnedRoots: () => Promise<CID[]>
  readonly hasPin: (root: CID) => Promise<boolean>
  readonly ledger: RootLedger
  readonly held: HeldVersions
  readonly blocks: PassBlocks
  readonly deleteBlock: (cid: CID) => Promise<void>
  readonly bucket: TokenBucket
  readonly repair: (root: CID, damaged: readonly CID[], signal: AbortSignal) => Promise<RepairOutcome>
  /** The node's clock: when passes happened, when roots are due. */
  readonly clock: () => number
  readonly intervalMs?: number
  readonly repairRetryMs?: number
  /** How often a pass writes its cursor, in blocks (default 256). */
  readonly cursorEveryBlocks?: number
  readonly log: Logger
  readonly metrics?: ScrubMetrics
}

/** The next thing to do: a repair, a pass (from `skip` blocks on), or nothing. */
export type ScrubWork =
  | { readonly kind: 'repair'; readonly root: CID }
  | { readonly kind: 'scrub'; readonly root: CID; readonly skip: number }

export interface ScrubPlanInput {
  readonly pinned: readonly CID[]
  readonly times: (root: CID) => RootTimes | undefined
  readonly cursor: ScrubCursor | undefined
  /** Whether the root is held but incomplete (a scrub found it damaged, not yet verified again). */
  readonly incomplete: (root: CID) => boolean
  /** Failed repairs: when each may be tried again. */
  readonly retryAt: ReadonlyMap<string, number>
  readonly now: number
  readonly intervalMs: number
}

/** What to do next, and how many roots are due for a pass (see the header for the order). */
export function planScrub(input: ScrubPlanInput): { work: ScrubWork | undefined; due: number } {
  const { pinned, times, now, intervalMs } = input
  const repairDue = (root: CID) => {
    const retry = input.retryAt.get(root.toString())
    return (retry !== undefined || input.incomplete(root)) && (retry ?? 0) <= now
  }
  const due = pinned.filter((root) => {
    const scrubbedAt = times(root)?.scrubbedAt ?? null
    return scrubbedAt === null || now - scrubbedAt >= intervalMs
  })
  const toRepair = pinned.find(repairDue)
  if (toRepair) return { work: { kind: 'repair', root: toRepair }, due: due.length }
  const cursor = input.cursor
  if (cursor && pinned.some((r) => r.equals(cursor.root)))
    return { work: { kind: 'scrub', root: cursor.root, skip: cursor.blocks }, due: due.length }
  const order = (root: CID) => {
    const t = times(root)
    return [t?.scrubbedAt ?? Number.NEGATIVE_INFINITY, t?.pinnedAt ?? now] as const
  }
  const [first] = [...due].sort((a, b) => {
    const [sa, pa] = order(a)
    const [sb, pb] = order(b)
    return sa - sb || pa - pb || (a.toString() < b.toString() ? -1 : 1)
  })
  return { work: first ? { kind: 'scrub', root: first, skip: 0 } : undefined, due: due.length }
}

export interface Scrubber {
  /** Does the next thing (a repair or a pass); what it did, or 'idle'. Throws the signal's reason on abort. */
  step(signal: AbortSignal): Promise<'repaired' | 'scrubbed' | 'idle'>
}

/** What the steps of a scrubber share: its parts, and the failed repairs' retry times. */
interface Scrubbing {
  readonly options: ScrubberOptions
  readonly retryAt: Map<string, number>
}

export function createScrubber(options: ScrubberOptions): Scrubber {
  const scrubbing: Scrubbing = { options, retryAt: new Map() }
  const { ledger, held, clock, metrics } = options
  return {
    async step(signal) {
      const pinned = await options.pinnedRoots()
      const now = clock()
      for (const root of pinned) await ledger.seen(root, now)
      const { work, due } = planScrub({
        pinned,
        times: (root) => ledger.get(root),
        cursor: ledger.cursor(),
        incomplete: (root) => held.get(root)?.complete === false,
        retryAt: scrubbing.retryAt,
        now,
        intervalMs: options.intervalMs ?? SCRUB_INTERVAL_MS,
      })
      metrics?.dueRoots.set(due)
      if (!work) return 'idle'
      if (work.kind === 'repair') {
        await repair(scrubbing, work.root, [], signal)
        return 'repaired'
      }
      await runPass(scrubbing, work.root, work.skip, signal)
      return 'scrubbed'
    },
  }
}

/** One pass over `root` from `skip` blocks on, its cursor written as it goes, then its findings acted on. */
async function runPass(scrubbing: Scrubbing, root: CID, skip: number, signal: AbortSignal): Promise<void> {
  const { options } = scrubbing
  const { ledger, metrics } = options
  const cursorEvery = options.cursorEveryBlocks ?? CURSOR_EVERY_BLOCKS
  metrics?.passBytes.set(0)
  let passBytes = 0
  let sinceCursor = 0
  // One write after another: a late one landing after the pass's clear would make the next start
  // skip blocks this pass never read.
  let cursorWrites = Promise.resolve()
  const result = await scrubPass({
    root,
    blocks: options.blocks,
    bucket: options.bucket,
    signal,
    skip,
    onProgress: (blocksDone, bytes) => {
      passBytes += bytes
      metrics?.bytes.inc(bytes)
      metrics?.passBytes.set(passBytes)
      if (++sinceCursor < cursorEvery) return
      sinceCursor = 0
      cursorWrites = cursorWrites.then(() => ledger.setCursor({ root, blocks: blocksDone })).catch(() => {})
    },
  })
  await cursorWrites
  metrics?.passBytes.set(0)
  // Unpinned while it was read (retention, clean-up): its blocks going is no damage.
  if (await options.hasPin(root)) await afterPass(scrubbing, root, result, signal)
  await ledger.setCursor(undefined)
}

/** A clean pass marks the root scrubbed; a damaged one deletes the bad blocks, marks it incomplete and repairs it. */
async function afterPass(
  scrubbing: Scrubbing,
  root: CID,
  result: PassResult,
  signal: AbortSignal,
): Promise<void> {
  const { ledger, held, clock, log, metrics } = scrubbing.options
  const now = clock()
  const bad = [...result.damaged, ...result.missing]
  metrics?.roots.inc({ result: bad.length === 0 ? 'clean' : 'damaged' })
  metrics?.lastPass.set(now / 1000)
  await ledger.scrubbed(root, now)
  if (bad.length === 0) {
    await held.scrubbed(root, now, true)
    log.info('weights-scrubbed', { root: root.toString(), blocks: result.blocks, bytes: result.bytes })
    return
  }
  for (const cid of result.damaged) await scrubbing.options.deleteBlock(cid).catch(() => {})
  metrics?.damagedBlocks.inc({ kind: 'corrupt' }, result.damaged.length)
  metrics?.damagedBlocks.inc({ kind: 'missing' }, result.missing.length)
  await held.scrubbed(root, now, false)
  log.warn('weights-scrub-damaged', {
    root: root.toString(),
    corrupt: result.damaged.length,
    missing: result.missing.length,
    blocks: bad.slice(0, 10).map(String),
  })
  await repair(scrubbing, root, bad, signal)
}

/** Repairs `root`: verified again on success; on failure, tried again after the retry time. */
async function repair(
  scrubbing: Scrubbing,
  root: CID,
  damaged: readonly CID[],
  signal: AbortSignal,
): Promise<void> {
  const { held, clock, log, metrics } = scrubbing.options
  const outcome = await scrubbing.options.repair(root, damaged, signal)
  if (!outcome.ok) {
    scrubbing.retryAt.set(root.toString(), clock() + retryMsOf(scrubbing))
    metrics?.repairs.inc({ result: 'failed' })
    log.warn('weights-scrub-repair-failed', { root: root.toString(), error: outcome.error })
    return
  }
  scrubbing.retryAt.delete(root.toString())
  if (outcome.checked && held.get(root)) await held.verified(root, clock())
  // Whole again, but no manifest here to check it against: it stays incomplete, looked at later.
  else if (held.get(root)) scrubbing.retryAt.set(root.toString(), clock() + retryMsOf(scrubbing))
  metrics?.repairs.inc({ result: 'repaired' })
  log.info('weights-scrub-repaired', {
    root: root.toString(),
    blocks: damaged.length,
    fromSources: outcome.fromSources,
    fetched: outcome.fetched,
    checked: outcome.checked,
  })
}

function retryMsOf(scrubbing: Scrubbing): number {
  return scrubbing.options.repairRetryMs ?? REPAIR_RETRY_MS
}
