/**
 * Ingest (ADR 0015): a record is acknowledged only after it, and every list block it needs that
 * was sent with it, is written and fsync'd; then it is folded. List blocks offered on their own
 * (sync) are kept only where a held seal or checkpoint names them (list-blocks.ts). One write per
 * record at a time: a second ingest of the same bytes waits for the first.
 */
import type { AnyVerified } from '../../protocol/index.js'
import { isFutureRecord } from '../../protocol/record.js'
import { NodeError } from '../errors.js'
import { isWitnessed, type WitnessLog } from '../witness.js'
import type { HeldRecords } from './held-records.js'
import { countOf, emptyFill, type ListBlocks, type ListFill, listRoots } from './list-blocks.js'
import type { ListNaming } from './list-naming.js'
import type { BlocksTaken, Checked, IngestResult, KeyedBlocks } from './types.js'
import type { Validator } from './validator.js'
import type { VersionWatch } from './version-watch.js'

export interface Ingest {
  ingest(
    bytes: Uint8Array,
    blocks?: readonly Uint8Array[] | KeyedBlocks,
    checked?: Checked,
  ): Promise<IngestResult>
  ingestBlocks(blocks: readonly Uint8Array[] | KeyedBlocks): Promise<BlocksTaken>
  /** Refuses new work, and waits for the writes under way. */
  close(): Promise<void>
}

function storeClosed(): NodeError {
  return new NodeError('store-closed', 'the node is shutting down', { status: 503 })
}

export function createIngest(parts: {
  records: HeldRecords
  blocks: ListBlocks
  naming: ListNaming
  validator: Validator
  witness: WitnessLog
  versions: VersionWatch
  clock: () => number
}): Ingest {
  const { records, blocks, naming, validator, witness, versions, clock } = parts
  const fold = records.fold
  const inflight = new Map<string, Promise<IngestResult>>()
  let closed = false

  /** After list blocks are durable: hold them, and complete what waited for them. */
  const settle = (fill: ListFill) => {
    blocks.commit(fill)
    records.attachWaiting()
    naming.review()
    versions.review()
  }

  /** The named blocks of a held record's own lists, from `pool`: written, then the record retried. */
  const completeLists = async (v: AnyVerified, pool: KeyedBlocks): Promise<number> => {
    if (naming.isDeferred(v.key)) return 0
    const fill = blocks.follow(listRoots(v), pool)
    if (fill.admitted.size === 0) return 0
    await blocks.write(fill)
    settle(fill)
    return fill.admitted.size
  }

  /** A record admission did not take: a held seal may still come with its lists. */
  const answerIgnored = (
    judged: Checked,
    sentAlong: readonly Uint8Array[] | KeyedBlocks,
  ): Promise<IngestResult> => {
    const v = judged.record!
    const held = fold.has(v.key)
    if (held && records.waitsForLists(v.key) && countOf(sentAlong) > 0)
      return completeLists(v, blocks.keyed(sentAlong)).then((taken) => ({
        ...judged,
        report: fold.report(v.key)!,
        duplicate: true,
        blocksTaken: taken,
      }))
    return Promise.resolve({ ...judged, ...(held ? { report: fold.report(v.key)!, duplicate: true } : {}) })
  }

  /** Writes a taken record after the blocks of its own lists sent along, then holds it. */
  const take = (v: AnyVerified, sentAlong: readonly Uint8Array[] | KeyedBlocks): Promise<IngestResult> => {
    const roots = listRoots(v)
    // A steward's seal or checkpoint keeps the blocks of its own lists sent along; another
    // member's keeps none (naming.place below).
    const named = roots.length > 0 && naming.namesLists(v)
    const fill = named ? blocks.follow(roots, blocks.keyed(sentAlong)) : emptyFill()
    return blocks.write(fill, v.bytes).then(() => {
      blocks.commit(fill)
      if (fill.admitted.size > 0) records.attachWaiting()
      if (!isFutureRecord(v) && isWitnessed(v.record.kind)) witness.note(v.key, clock())
      records.hold(v)
      // Asked again now that v is held (the head may have moved while it was written).
      if (roots.length > 0 && !named) naming.place(v)
      naming.review()
      // Any record held can complete a decision that moves the head (a vote a seal waited for).
      versions.review()
      return {
        verdict: 'accept' as const,
        record: v,
        report: fold.report(v.key)!,
        blocksTaken: fill.admitted.size,
      }
    })
  }

  return {
    ingest(bytes, sentAlong = [], checked) {
      if (closed) return Promise.reject(storeClosed())
      // The gossip validator's verdict on the same bytes: an accepted record is not decoded twice.
      const judged =
        checked?.verdict === 'accept' && checked.record && !fold.has(checked.record.key)
          ? checked
          : validator.check(bytes)
      if (judged.verdict === 'reject') return Promise.resolve(judged)
      if (judged.verdict === 'ignore') return answerIgnored(judged, sentAlong)
      const v = judged.record!
      const running = inflight.get(v.key)
      if (running) return running.then((r) => ({ ...r, duplicate: true }))
      const work = take(v, sentAlong).finally(() => inflight.delete(v.key))
      inflight.set(v.key, work)
      return work
    },
    async ingestBlocks(candidates) {
      if (closed) throw storeClosed()
      const { fill, duplicates, refused, refusedBytes } = blocks.offer(candidates)
      if (fill.admitted.size > 0) {
        await blocks.write(fill)
        settle(fill)
      }
      return { taken: fill.admitted.size, duplicates, refused, refusedBytes }
    },
    async close() {
      closed = true
      await Promise.allSettled([...inflight.values()])
    },
  }
}
