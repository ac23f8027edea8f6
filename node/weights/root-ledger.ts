/**
 * When this node first saw each pinned weights root, and when the background scrub last re-hashed
 * it whole (docs/adr/0031-scrubbing-and-clean-up.md). Clean-up (cleanup.ts) counts an unratified
 * upload's retention from `pinnedAt`; the scrub (scrub.ts) picks the root scrubbed longest ago and
 * resumes a pass cut off by a stop from its cursor.
 *
 * Why a ledger of its own rather than a field in the pins: pins are Helia's records (pins.ts keeps
 * their layout), and "first seen pinned" is close enough for a retention counted in days — the
 * clean-up looks at the pins every minute, and a root pinned before this ledger existed is counted
 * from the first look, which only ever keeps it longer.
 *
 * One small entry per root in the node's datastore, loaded once at start; the node is the only
 * writer.
 */
import * as cborg from 'cborg'
import { Key } from 'interface-datastore'
import { CID } from 'multiformats/cid'
import type { HeldDatastore } from './held-versions.js'

const PREFIX = '/allmende/roots/'
const CURSOR_KEY = new Key('/allmende/scrub-cursor')

export interface RootTimes {
  /** When this node first saw the root pinned (ms since epoch, the node's clock). */
  readonly pinnedAt: number
  /** When a scrub last re-hashed every block of it, or null before the first. */
  readonly scrubbedAt: number | null
}

/** Where a scrub pass stopped: the root, and how many blocks of its walk were done. */
export interface ScrubCursor {
  readonly root: CID
  readonly blocks: number
}

export type LedgerDatastore = HeldDatastore & { get(key: Key): Promise<Uint8Array> | Uint8Array }

export class RootLedger {
  private readonly times = new Map<string, RootTimes>()
  private cursorNow: ScrubCursor | undefined

  private constructor(private readonly datastore: LedgerDatastore) {}

  static async open(datastore: LedgerDatastore): Promise<RootLedger> {
    const ledger = new RootLedger(datastore)
    for await (const { key, value } of datastore.query({ prefix: PREFIX })) {
      const root = key.toString().slice(PREFIX.length)
      const times = decodeTimes(value)
      if (times) ledger.times.set(root, times)
    }
    ledger.cursorNow = await readCursor(datastore)
    return ledger
  }

  get(root: CID): RootTimes | undefined {
    return this.times.get(root.toString())
  }

  /** Records `root` as pinned from `at` unless it was seen before; its times. */
  async seen(root: CID, at: number): Promise<RootTimes> {
    const before = this.get(root)
    if (before) return before
    const times = { pinnedAt: at, scrubbedAt: null }
    await this.write(root, times)
    return times
  }

  async scrubbed(root: CID, at: number): Promise<void> {
    const before = this.get(root)
    await this.write(root, { pinnedAt: before?.pinnedAt ?? at, scrubbedAt: at })
  }

  /** `root` is unpinned: its times go (a later pin starts a new retention). */
  async forget(root: CID): Promise<void> {
    if (!this.times.delete(root.toString())) return
    await this.datastore.delete(new Key(PREFIX + root.toString()))
  }

  /**
   * Forgets every root not in `pinned` (let go by retention, or unpinned by hand): a root pinned
   * again later starts a new retention.
   */
  async prune(pinned: readonly CID[]): Promise<void> {
    const keep = new Set(pinned.map(String))
    for (const key of [...this.times.keys()]) {
      if (keep.has(key)) continue
      this.times.delete(key)
      await this.datastore.delete(new Key(PREFIX + key))
    }
  }

  cursor(): ScrubCursor | undefined {
    return this.cursorNow
  }

  /** Where the pass under way has got to; undefined when no pass is under way. */
  async setCursor(cursor: ScrubCursor | undefined): Promise<void> {
    this.cursorNow = cursor
    if (cursor === undefined) await this.datastore.delete(CURSOR_KEY)
    else
      await this.datastore.put(
        CURSOR_KEY,
        cborg.encode({ root: cursor.root.toString(), blocks: cursor.blocks }),
      )
  }

  private async write(root: CID, times: RootTimes): Promise<void> {
    await this.datastore.put(new Key(PREFIX + root.toString()), cborg.encode(times))
    this.times.set(root.toString(), times)
  }
}

/** Times as stored; an entry that cannot be read is skipped (the next look writes it again). */
function decodeTimes(value: Uint8Array): RootTimes | undefined {
  try {
    const v = cborg.decode(value) as { pinnedAt?: unknown; scrubbedAt?: unknown }
    if (typeof v.pinnedAt !== 'number') return undefined
    return { pinnedAt: v.pinnedAt, scrubbedAt: typeof v.scrubbedAt === 'number' ? v.scrubbedAt : null }
  } catch {
    return undefined
  }
}

async function readCursor(datastore: LedgerDatastore): Promise<ScrubCursor | undefined> {
  try {
    const v = cborg.decode(await datastore.get(CURSOR_KEY)) as { root?: unknown; blocks?: unknown }
    if (typeof v.root !== 'string' || !Number.isSafeInteger(v.blocks)) return undefined
    return { root: CID.parse(v.root), blocks: v.blocks as number }
  } catch {
    // None written (NotFoundError), or unreadable: the scrub starts its order afresh.
    return undefined
  }
}
