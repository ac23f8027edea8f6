/**
 * The node's pins: which weights it keeps, and which blocks the gateway may serve (ADR 0008).
 *
 * Why not `helia.pins` itself: Helia 7.1.15 (node_modules/helia/src/pins.ts) keeps a record per
 * block, `/pinned-block/<multihash>` = `{pinCount, pinnedBy}`, and has two defects in it. Every
 * change is a read, an await and a write with no lock, so two pins added at the same time lose a
 * count; and `rm` keeps in `pinnedBy` only the root being removed (its filter is the wrong way
 * round), so a root pinned again after a removal is not counted and a later removal writes -1.
 * Either way a block another pin holds can read as unpinned (retention deletes it, the gateway
 * answers 404), and after -1 one no pin holds reads as pinned.
 *
 * What this does instead, on the same records (Helia's keys and encoding: pins written before
 * keep working, and `helia.pins.ls`/`isPinned` still read what is written here):
 * - `pinnedBy` is the truth: the pinned roots whose DAG holds the block, each once; `pinCount` is
 *   written as its length and a record with no name left is deleted. Adding a pin names the root
 *   where it is missing; removing takes the name away. Both are idempotent, so a run repeated, or
 *   one cut off and run again, lands where one clean run would.
 * - One change at a time: every `add` and `rm` takes a turn (`Turns`), in the order asked, from
 *   its first block to its last, the caller's loop over the yielded blocks included. So a caller
 *   must not start another change inside that loop (it would wait for ever), and iterates to the
 *   end or leaves with `break`/`throw` (which end the turn), never drops the iterator half-way.
 *   Reads (`isPinned`, `hasPin`) take no turn: each reads one record, written whole.
 * - Once per home, the records Helia wrote are rebuilt from the pins themselves (`repair`).
 *
 * The walk reads the node's own blockstore (never the network) with the node's walker
 * (pin-walker.ts). A pin is added only over blocks held: one missing fails the add, which then
 * takes back the names it gave, so no pin ever covers a hole a delete made meanwhile.
 */
import * as cborg from 'cborg'
import { type Datastore, Key } from 'interface-datastore'
import { base36 } from 'multiformats/bases/base36'
import { CID } from 'multiformats/cid'
import { equalBytes } from '../../protocol/bytes.js'
import { IDENTITY_CODE } from '../../protocol/cid.js'
import { NodeError } from '../errors.js'
import { type Logger, silentLogger } from '../log.js'
import { type PinWalker, unixfsPinWalker } from './pin-walker.js'

// Helia 7.1.15's layout (src/pins.ts): a pin per root, a record per block, both cborg.
const PIN_PREFIX = '/pin/'
const BLOCK_PREFIX = '/pinned-block/'
/** Set once the records of this datastore have been rebuilt (`repair`). */
const REPAIRED_KEY = new Key('/allmende/pins-repaired')
/** A recursive pin, as Helia writes it (`depth` Infinity, no metadata). */
const PIN_RECORD = cborg.encode({ depth: Number.POSITIVE_INFINITY, metadata: {} })
/** Records rewritten per batch while repairing. */
const REPAIR_BATCH = 1024

/** What the walk and the presence check read: the node's own blockstore. */
export interface PinBlockstore {
  has(cid: CID): Promise<boolean>
  get(cid: CID, options?: { signal?: AbortSignal }): AsyncIterable<Uint8Array> | Promise<Uint8Array>
}

/** Helia's pin options, as the node's callers pass them; the walk never leaves the node. */
export interface PinOptions {
  signal?: AbortSignal
  /** Always true here (the walk reads the node's blockstore); accepted for Helia's callers. */
  offline?: boolean
  /** Default the node's walker (pin-walker.ts). */
  walker?: PinWalker
}

export interface UnpinOptions extends PinOptions {
  /**
   * Called for each block no pin holds any more, once the pin is gone and still in this turn:
   * no pin can be added between the call and what it does (retention deletes the block). It
   * should not throw; a block it fails on is left as it is.
   */
  onReleased?: (cid: CID) => Promise<void>
}

export interface RepairReport {
  /** Pinned roots found. */
  readonly roots: number
  /** Roots whose DAG could not be walked whole (a block missing); their names were kept. */
  readonly incomplete: readonly string[]
  /** Per-block records found. */
  readonly records: number
  /** Records given back the name of a pinned root that holds their block (lost counts). */
  readonly named: number
  /** Records that kept only the names of pinned roots, or were written again with the right count. */
  readonly rewritten: number
  /** Records deleted: no pinned root holds their block. */
  readonly dropped: number
}

interface BlockRecord {
  readonly names: Uint8Array[]
  readonly count: number
}

/** One change at a time, in the order asked; giving up a wait (its signal) keeps the others' order. */
class Turns {
  private last: Promise<void> = Promise.resolve()

  /** Waits for the turns asked before this one to end; returns this turn's end (call it once). */
  async take(signal?: AbortSignal): Promise<() => void> {
    let end!: () => void
    const ended = new Promise<void>((resolve) => {
      end = resolve
    })
    const before = this.last
    this.last = before.then(() => ended)
    try {
      await waitFor(before, signal)
    } catch (e) {
      end()
      throw e
    }
    return end
  }
}

function waitFor(turn: Promise<void>, signal?: AbortSignal): Promise<void> {
  if (!signal) return turn
  signal.throwIfAborted()
  return new Promise((resolve, reject) => {
    const abort = () => reject(signal.reason)
    signal.addEventListener('abort', abort, { once: true })
    void turn.then(() => {
      signal.removeEventListener('abort', abort)
      resolve()
    })
  })
}

function pinKey(root: CID): Key {
  return new Key(`${PIN_PREFIX}${root.toV1().toString(base36)}`)
}

function blockKey(cid: CID): Key {
  return new Key(`${BLOCK_PREFIX}${base36.encode(cid.multihash.bytes)}`)
}

/** The name a root gets in `pinnedBy` (its CIDv1's bytes; Helia keys pins by CIDv1 too). */
function nameOf(root: CID): Uint8Array {
  return root.toV1().bytes
}

function nameKey(name: Uint8Array): string {
  return Buffer.from(name).toString('hex')
}

function rootOfPinKey(key: Key): CID | undefined {
  try {
    return CID.parse(key.toString().slice(PIN_PREFIX.length), base36)
  } catch {
    return undefined
  }
}

/** A record as stored; one that cannot be read names no root (the repair then decides). */
function decodeRecord(bytes: Uint8Array): BlockRecord {
  try {
    const value = cborg.decode(bytes) as { pinCount?: unknown; pinnedBy?: unknown }
    const names = Array.isArray(value?.pinnedBy)
      ? value.pinnedBy.filter((n): n is Uint8Array => n instanceof Uint8Array)
      : []
    return { names, count: typeof value?.pinCount === 'number' ? value.pinCount : Number.NaN }
  } catch {
    return { names: [], count: Number.NaN }
  }
}

function encodeRecord(names: readonly Uint8Array[]): Uint8Array {
  return cborg.encode({ pinCount: names.length, pinnedBy: names })
}

function isNotFound(e: unknown): boolean {
  return (e as Error)?.name === 'NotFoundError'
}

export class WeightsPins {
  private readonly turns = new Turns()

  constructor(
    private readonly datastore: Datastore,
    private readonly blockstore: PinBlockstore,
    private readonly log: Logger = silentLogger,
  ) {}

  /**
   * Pins `root`: every block under it (all held here) names it. Yields each block as it is
   * named. Pinning a root already pinned walks it again and gives back any name it lacks.
   */
  async *add(root: CID, options: PinOptions = {}): AsyncGenerator<CID, void, undefined> {
    const end = await this.turns.take(options.signal)
    try {
      yield* this.addInTurn(root, options)
    } finally {
      end()
    }
  }

  /**
   * Unpins `root`: every block under it loses its name, a block no other root names loses its
   * record (and is passed to `onReleased`). The pin itself goes last, so a removal cut off is
   * finished by the next one. Yields each block walked.
   */
  async *rm(root: CID, options: UnpinOptions = {}): AsyncGenerator<CID, void, undefined> {
    const end = await this.turns.take(options.signal)
    try {
      const name = nameOf(root)
      const released: CID[] = []
      for await (const cid of this.walk(root, options)) {
        if ((await this.unname(cid, name)) === 0) released.push(cid)
        yield cid
      }
      await this.datastore.delete(pinKey(root))
      if (options.onReleased) for (const cid of released) await options.onReleased(cid)
    } finally {
      end()
    }
  }

  /** Whether some pinned root holds the block `cid` (the gateway serves only those). */
  async isPinned(cid: CID, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    const record = await this.read(blockKey(cid), options.signal)
    return record !== undefined && record.names.length > 0
  }

  /**
   * The pinned roots whose DAG holds the block `cid` (its record's names; none when no pin
   * reaches it): the gateway serves a block only under a root that is not withheld.
   */
  async rootsOf(cid: CID, options: { signal?: AbortSignal } = {}): Promise<CID[]> {
    const record = await this.read(blockKey(cid), options.signal)
    const roots: CID[] = []
    for (const name of record?.names ?? []) {
      try {
        roots.push(CID.decode(name))
      } catch {
        // A name that is no CID names no root (repair drops it).
      }
    }
    return roots
  }

  /** Whether `root` has a pin of its own (not only a block under another pin). */
  async hasPin(root: CID): Promise<boolean> {
    return await this.datastore.has(pinKey(root))
  }

  /** Waits for the changes asked so far to end (before the datastore closes). */
  async drain(): Promise<void> {
    const end = await this.turns.take()
    end()
  }

  /**
   * Rebuilds the per-block records from the pins, in one turn. Two passes, so that nothing but
   * the set of pinned roots is held in memory: each pinned root's DAG is walked and every block
   * given the root's name where it lacks it (what Helia's lost counts took away); then every
   * record keeps only the names of pinned roots, each once, with its count (what Helia's `rm`
   * left behind), and a record with none left goes. A name is only ever written by a walk of
   * that root, and DAGs do not change, so a name kept is a root that holds the block. A root
   * whose walk stops at a missing block keeps the names it had below that point.
   */
  async repair(): Promise<RepairReport> {
    const end = await this.turns.take()
    try {
      const roots = new Map<string, CID>()
      for await (const key of this.datastore.queryKeys({ prefix: PIN_PREFIX })) {
        const root = rootOfPinKey(key)
        if (root) roots.set(nameKey(nameOf(root)), root)
      }
      const incomplete: string[] = []
      let named = 0
      for (const root of roots.values()) {
        try {
          const name = nameOf(root)
          for await (const cid of this.walk(root, {})) if (await this.name(cid, name)) named++
        } catch {
          incomplete.push(root.toString())
        }
      }
      let records = 0
      let rewritten = 0
      let dropped = 0
      let batch = this.datastore.batch()
      let pending = 0
      for await (const { key, value } of this.datastore.query({ prefix: BLOCK_PREFIX })) {
        records++
        const record = decodeRecord(value)
        const kept = new Map<string, Uint8Array>()
        for (const name of record.names) if (roots.has(nameKey(name))) kept.set(nameKey(name), name)
        if (kept.size === 0) {
          batch.delete(key)
          dropped++
        } else if (kept.size !== record.names.length || record.count !== kept.size) {
          batch.put(key, encodeRecord([...kept.values()]))
          rewritten++
        } else continue
        if (++pending === REPAIR_BATCH) {
          await batch.commit()
          batch = this.datastore.batch()
          pending = 0
        }
      }
      if (pending > 0) await batch.commit()
      return { roots: roots.size, incomplete, records, named, rewritten, dropped }
    } finally {
      end()
    }
  }

  /** `repair`, once per datastore: the first time the node runs this code on its home. */
  async repairOnce(): Promise<RepairReport | undefined> {
    if (await this.datastore.has(REPAIRED_KEY)) return undefined
    const report = await this.repair()
    await this.datastore.put(REPAIRED_KEY, cborg.encode(1))
    this.log.info('pins-repaired', {
      roots: report.roots,
      records: report.records,
      named: report.named,
      rewritten: report.rewritten,
      dropped: report.dropped,
    })
    if (report.incomplete.length > 0)
      this.log.warn('pins-repair-incomplete', {
        roots: report.incomplete.slice(0, 10),
        count: report.incomplete.length,
        why: 'a block under these pinned roots is missing; pinning them again once fetched restores their records',
      })
    return report
  }

  private async *addInTurn(root: CID, options: PinOptions): AsyncGenerator<CID, void, undefined> {
    const name = nameOf(root)
    const pinnedBefore = await this.hasPin(root)
    let walked = 0
    let done = false
    try {
      for await (const cid of this.walk(root, options)) {
        walked++
        if (cid.multihash.code !== IDENTITY_CODE && !(await this.blockstore.has(cid)))
          throw new NodeError('pin-block-missing', `cannot pin ${root}: its block ${cid} is not held here`)
        await this.name(cid, name)
        yield cid
      }
      if (!pinnedBefore) await this.datastore.put(pinKey(root), PIN_RECORD)
      done = true
    } finally {
      // A first pin that did not finish (failed, aborted, or left by its caller) takes back the
      // names it gave, so its blocks read as pinned only under a pin that exists.
      if (!done && !pinnedBefore) await this.unnameFirst(root, name, walked)
    }
  }

  /** Takes `name` from the first `count` blocks of the walk of `root` (the same blocks, in order). */
  private async unnameFirst(root: CID, name: Uint8Array, count: number): Promise<void> {
    let left = count
    try {
      for await (const cid of this.walk(root, {})) {
        if (left-- === 0) break
        await this.unname(cid, name)
      }
    } catch (e) {
      // The walk stops where the first one stopped (a block missing): nothing was named past it.
      this.log.debug('pin-undo-stopped', { root: root.toString(), error: e as Error })
    }
  }

  private async *walk(root: CID, options: PinOptions): AsyncGenerator<CID, void, undefined> {
    const walker = (options.walker ?? unixfsPinWalker)({ blockstore: this.blockstore } as never)
    const walkOptions = { offline: true, ...(options.signal ? { signal: options.signal } : {}) }
    for await (const node of walker.walk(root, walkOptions)) {
      // The walker reads only nodes with links; a run of leaves would not see an abort.
      options.signal?.throwIfAborted()
      yield node.block.cid
    }
  }

  private async read(key: Key, signal?: AbortSignal): Promise<BlockRecord | undefined> {
    try {
      return decodeRecord(await this.datastore.get(key, signal ? { signal } : {}))
    } catch (e) {
      if (isNotFound(e)) return undefined
      throw e
    }
  }

  /**
   * Gives the block `cid` the name `name` (once), writing its count as the number of names;
   * true when the name was missing.
   */
  private async name(cid: CID, name: Uint8Array): Promise<boolean> {
    const key = blockKey(cid)
    const record = await this.read(key)
    const names = record?.names ?? []
    const named = names.some((n) => equalBytes(n, name))
    if (named && record?.count === names.length) return false
    await this.datastore.put(key, encodeRecord(named ? names : [...names, name]))
    return !named
  }

  /** Takes `name` from the block `cid`; returns how many names it has left (0: its record is gone). */
  private async unname(cid: CID, name: Uint8Array): Promise<number> {
    const key = blockKey(cid)
    const record = await this.read(key)
    if (record === undefined) return 0
    const left = record.names.filter((n) => !equalBytes(n, name))
    if (left.length === 0) await this.datastore.delete(key)
    else if (left.length !== record.names.length || record.count !== left.length)
      await this.datastore.put(key, encodeRecord(left))
    return left.length
  }
}

/**
 * The node's pins over its datastore and blockstore, with the records Helia wrote before this
 * version repaired (once; it takes a walk of every pinned DAG's nodes).
 */
export async function openPins(options: {
  datastore: Datastore
  blockstore: PinBlockstore
  log?: Logger
}): Promise<WeightsPins> {
  const pins = new WeightsPins(options.datastore, options.blockstore, options.log)
  await pins.repairOnce()
  return pins
}
