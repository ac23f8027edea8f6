/**
 * What a sync session keeps of the blocks a peer sends (protocol/SPEC.md
 * §14.5, ADR 0005), in either role: records through the gossip validator,
 * list blocks only where a held seal or checkpoint names them, the rest
 * waiting in the session's holding area (holding.ts) for at most
 * `holdingMs`, then refused and charged as junk (ledger.ts). Ending the
 * session settles its holding area.
 */
import type { CID } from 'multiformats/cid'
import { blockKey, cidFromKey } from '../../protocol/index.js'
import { nativeSha256 as sha256 } from '../sha256.js'
import { type CountedChannel, errorCode } from './channel.js'
import { isRecordBytes, type SessionContext } from './context.js'
import { isSyncError, SyncError } from './errors.js'
import { type Holding, holdingArea } from './holding.js'
import { junkPoints } from './ledger.js'

/** Passes offering the holding area to the store at the end: a block taken can name more (a cascade). */
const SETTLE_PASSES = 4

/** One session's admission of blocks: its holding area and what it refused. */
export interface Admission {
  readonly peer: string
  readonly holding: Holding
  /** The store's naming generation when the holding area was last offered whole. */
  generation: number
  refused: number
  refusedBytes: number
  /** Initiator only: asks for a block again later in the session. */
  readonly askAgain?: (cid: CID) => void
  /** Keys of blocks asked for again after their wait ran out: refused the next time. */
  readonly askedAgain: Set<string>
}

export function newAdmission(ctx: SessionContext, peer: string, askAgain?: (cid: CID) => void): Admission {
  return {
    peer,
    holding: holdingArea(ctx.budget.holdingBytes, ctx.budget.holdingTotalBytes, ctx.holdingTotal),
    generation: ctx.store.namingGeneration(),
    refused: 0,
    refusedBytes: 0,
    ...(askAgain ? { askAgain } : {}),
    askedAgain: new Set(),
  }
}

export function junkError(admission: Admission): SyncError {
  return new SyncError(
    'sync-junk',
    `the peer sent ${admission.refused} list blocks (${admission.refusedBytes} bytes) that no held seal or checkpoint names`,
  )
}

/** Refuses one unnamed block; true when the peer is now past the ban threshold. */
function refuse(
  ctx: SessionContext,
  admission: Admission,
  key: string,
  bytes: number,
  charge: boolean,
): boolean {
  admission.refused++
  admission.refusedBytes += bytes
  ctx.unnamed.add(key)
  return charge && ctx.ledger.charge(admission.peer, junkPoints(bytes))
}

/** Drops from the holding area what the store holds now. */
function prune(ctx: SessionContext, admission: Admission, keys: Iterable<string>): void {
  for (const key of [...keys]) if (ctx.store.hasBlock(key)) admission.holding.delete(key)
}

/**
 * Makes what a peer sent durable: records through the gossip validator, list blocks where a
 * held record names them. Invalid records are declined for good.
 */
export async function take(
  ctx: SessionContext,
  admission: Admission,
  blocks: readonly Uint8Array[],
): Promise<number> {
  const { store } = ctx
  const records: Uint8Array[] = []
  // Blocks of this frame offered to the store without being held.
  const direct = new Map<string, Uint8Array>()
  const fresh: string[] = []
  let crossed = false
  for (const b of blocks) {
    if (isRecordBytes(b)) {
      records.push(b)
      continue
    }
    const key = blockKey(b, sha256)
    if (store.hasBlock(key) || admission.holding.has(key) || direct.has(key)) continue
    // Named by a held record already: straight to the store, so that junk filling the holding
    // areas cannot keep a held seal's lists out.
    if (store.wantsBlock(key)) {
      direct.set(key, b)
      continue
    }
    const room = admission.holding.add(key, b, ctx.now())
    if (room === 'held') fresh.push(key)
    // All holding areas full is no fault of this peer: offered with this frame (a record in it
    // may name the block), else dropped and asked for again later.
    else if (room === 'shared-full') direct.set(key, b)
    else crossed = refuse(ctx, admission, key, b.length, !ctx.stopping?.aborted) || crossed
  }
  if (crossed) throw junkError(admission)
  const { taken: recordsTaken, fromHolding } = await takeRecords(ctx, admission, records)
  let taken = recordsTaken
  // Blocks named by records held before (a seal that came by gossip): what came now, and the
  // whole holding area when something new has been named since it was last offered.
  const generation = store.namingGeneration()
  const whole = generation !== admission.generation
  admission.generation = generation
  const offer = whole
    ? new Map([...admission.holding.blocks, ...direct])
    : pick(admission.holding.blocks, fresh, direct)
  if (offer.size > 0) taken += (await store.ingestBlocks(offer)).taken
  prune(ctx, admission, whole || fromHolding ? admission.holding.blocks.keys() : fresh)
  return taken
}

/** The records of one frame through the gossip validator; `fromHolding` when one took held blocks. */
async function takeRecords(
  ctx: SessionContext,
  admission: Admission,
  records: readonly Uint8Array[],
): Promise<{ taken: number; fromHolding: boolean }> {
  let taken = 0
  let fromHolding = false
  if (records.length === 0) return { taken, fromHolding }
  const { store } = ctx
  const ignoreSet = ctx.ignoredNow()
  let invalid = 0
  const verdicts = await store.checkMany(records)
  const results = await Promise.all(
    records.map(async (bytes, i) => {
      const checked = verdicts[i]!
      if (checked.verdict === 'reject') {
        ctx.declined.add(blockKey(bytes, sha256))
        invalid++
        return 0
      }
      // A seal or checkpoint takes the blocks its lists name from the holding area.
      const outcome = await store.ingest(bytes, admission.holding.blocks, checked)
      if (outcome.verdict === 'ignore' && outcome.record && outcome.code !== 'duplicate')
        ignoreSet.add(outcome.record.key)
      if (outcome.blocksTaken) fromHolding = true
      return (outcome.verdict === 'accept' && !outcome.duplicate ? 1 : 0) + (outcome.blocksTaken ?? 0)
    }),
  )
  for (const count of results) taken += count
  // An honest peer holds only records that passed the same bytes-only checks, so an invalid
  // one means the peer is not honest: end the session (after keeping what was valid).
  if (invalid > 0) throw new SyncError('sync-invalid', `the peer sent ${invalid} invalid records`)
  return { taken, fromHolding }
}

/**
 * Ends the holding area: a last offer, then what is still unnamed is refused and charged.
 * True when the peer is past the ban threshold.
 */
export async function settle(ctx: SessionContext, admission: Admission, charge: boolean): Promise<boolean> {
  const { store } = ctx
  try {
    for (
      let pass = 0;
      pass < SETTLE_PASSES &&
      admission.holding.blocks.size > 0 &&
      store.namingGeneration() !== admission.generation;
      pass++
    ) {
      admission.generation = store.namingGeneration()
      await store.ingestBlocks(admission.holding.blocks).catch(() => {})
      prune(ctx, admission, admission.holding.blocks.keys())
    }
    let points = 0
    const before = admission.refused
    const bytesBefore = admission.refusedBytes
    for (const [key, b] of admission.holding.blocks) {
      refuse(ctx, admission, key, b.length, false)
      points += junkPoints(b.length)
    }
    if (admission.refused > before)
      ctx.log.warn('sync-blocks-refused', {
        peer: admission.peer,
        blocks: admission.refused - before,
        bytes: admission.refusedBytes - bytesBefore,
        reason: 'no held seal or checkpoint names them',
      })
    return charge && points > 0 && ctx.ledger.charge(admission.peer, points)
  } finally {
    admission.holding.release()
  }
}

/**
 * Ends the wait of blocks held longer than `holdingMs`, so that parked junk cannot fill the
 * holding areas until the session times out. A responder refuses them: an honest sender pushes
 * records before lists. An initiator lets go of them and asks once more after what it still has
 * to fetch (its own fetch order can put a list far ahead of its seal); the next time, they are
 * refused. True when the peer is now past the ban threshold.
 */
function expire(ctx: SessionContext, admission: Admission): boolean {
  const { budget } = ctx
  const expired = admission.holding.expire(ctx.now() - budget.holdingMs)
  if (expired.length === 0) return false
  const charge = !ctx.stopping?.aborted
  let crossed = false
  let blocks = 0
  let bytes = 0
  for (const [key, b] of expired) {
    if (admission.askAgain && !admission.askedAgain.has(key)) {
      admission.askedAgain.add(key)
      admission.askAgain(cidFromKey(key))
      continue
    }
    crossed = refuse(ctx, admission, key, b.length, charge) || crossed
    blocks++
    bytes += b.length
  }
  if (blocks > 0)
    ctx.log.warn('sync-blocks-refused', {
      peer: admission.peer,
      blocks,
      bytes,
      reason: `held ${budget.holdingMs} ms and named by no held seal or checkpoint`,
    })
  return crossed
}

/** Reads the next frame; blocks whose wait ran out meanwhile are dealt with first. */
export async function readFrom(ctx: SessionContext, channel: CountedChannel, admission: Admission) {
  const frame = await channel.read()
  if (expire(ctx, admission)) throw junkError(admission)
  return frame
}

/** The outcome of a failed session: the holding area is settled, a crossing becomes `sync-junk`. */
export async function failed(ctx: SessionContext, admission: Admission, e: unknown, session: AbortSignal) {
  const charge = !ctx.stopping?.aborted
  const crossed = await settle(ctx, admission, charge)
  const error = crossed && !isSyncError(e) ? junkError(admission) : e
  return { error, code: isSyncError(error) ? error.code : errorCode(error, session) }
}

/** `keys` of `from`, added to `out` (the blocks that came in one frame). */
function pick(
  from: ReadonlyMap<string, Uint8Array>,
  keys: readonly string[],
  out: Map<string, Uint8Array>,
): Map<string, Uint8Array> {
  for (const k of keys) {
    const b = from.get(k)
    if (b) out.set(k, b)
  }
  return out
}
