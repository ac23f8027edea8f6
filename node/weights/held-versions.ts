/**
 * What this node holds whole and has checked, by weights root: when the weights were last verified
 * against a manifest (a steward's check, a mirror's fetch, an upload ratified here) and when the
 * background scrub last re-hashed every block (scrub.ts). Holding announcements are signed only
 * for roots that are complete here and whose last scrub, if any, passed; a scrub that finds a
 * block damaged marks the root incomplete until it is repaired and verified again.
 *
 * Kept in the node's datastore (one small entry per root), loaded once at start; the node is the
 * only writer. Listeners hear every change (the announcer renews or withdraws at once).
 */
import * as cborg from 'cborg'
import { Key } from 'interface-datastore'
import { CID } from 'multiformats/cid'

const PREFIX = '/allmende/held/'

export interface HeldEntry {
  readonly root: CID
  /** When the whole DAG was last checked against a manifest here (ms since epoch). */
  readonly verifiedAt: number
  /** When a scrub last re-hashed every block of it, or null before the first. */
  readonly scrubbedAt: number | null
  /** False from a failed scrub (a block damaged or missing) until it is verified again. */
  readonly complete: boolean
}

/** The slice of a datastore used (the node's LevelDatastore; a MemoryDatastore in tests). */
export interface HeldDatastore {
  put(key: Key, value: Uint8Array): unknown
  delete(key: Key): unknown
  query(q: {
    prefix: string
  }): AsyncIterable<{ key: Key; value: Uint8Array }> | Iterable<{ key: Key; value: Uint8Array }>
}

export type HeldListener = (root: CID, entry: HeldEntry | undefined) => void

export class HeldVersions {
  private readonly entries = new Map<string, HeldEntry>()
  private readonly listeners = new Set<HeldListener>()

  private constructor(private readonly datastore: HeldDatastore) {}

  static async open(datastore: HeldDatastore): Promise<HeldVersions> {
    const held = new HeldVersions(datastore)
    for await (const { key, value } of datastore.query({ prefix: PREFIX })) {
      const entry = decodeEntry(key, value)
      if (entry) held.entries.set(entry.root.toString(), entry)
    }
    return held
  }

  /** The whole DAG under `root` is held and was just checked against a manifest. */
  async verified(root: CID, at: number): Promise<void> {
    const before = this.get(root)
    await this.write({ root, verifiedAt: at, scrubbedAt: before?.scrubbedAt ?? null, complete: true })
  }

  /** A scrub re-hashed every block of `root`: `passed` when each matched its CID and none was missing. */
  async scrubbed(root: CID, at: number, passed: boolean): Promise<void> {
    const before = this.get(root)
    if (!before) return
    await this.write({ ...before, scrubbedAt: at, complete: before.complete && passed })
  }

  /** `root` is no longer held (unpinned). */
  async forget(root: CID): Promise<void> {
    const key = root.toString()
    if (!this.entries.has(key)) return
    await this.datastore.delete(new Key(PREFIX + key))
    this.entries.delete(key)
    this.tell(root, undefined)
  }

  get(root: CID): HeldEntry | undefined {
    return this.entries.get(root.toString())
  }

  /** Complete and, if scrubbed, scrubbed clean: what a holding announcement may be signed for. */
  announceable(root: CID): boolean {
    return this.get(root)?.complete === true
  }

  list(): HeldEntry[] {
    return [...this.entries.values()]
  }

  /** Calls `listener` on every change; returns what stops it. */
  onChange(listener: HeldListener): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private async write(entry: HeldEntry): Promise<void> {
    const key = entry.root.toString()
    await this.datastore.put(
      new Key(PREFIX + key),
      cborg.encode({ verifiedAt: entry.verifiedAt, scrubbedAt: entry.scrubbedAt, complete: entry.complete }),
    )
    this.entries.set(key, entry)
    this.tell(entry.root, entry)
  }

  private tell(root: CID, entry: HeldEntry | undefined): void {
    for (const listener of this.listeners) listener(root, entry)
  }
}

/** An entry as stored; one that cannot be read is skipped (the next verification writes it again). */
function decodeEntry(key: Key, value: Uint8Array): HeldEntry | undefined {
  try {
    const root = CID.parse(key.toString().slice(PREFIX.length))
    const v = cborg.decode(value) as { verifiedAt?: unknown; scrubbedAt?: unknown; complete?: unknown }
    if (typeof v.verifiedAt !== 'number' || typeof v.complete !== 'boolean') return undefined
    const scrubbedAt = typeof v.scrubbedAt === 'number' ? v.scrubbedAt : null
    return { root, verifiedAt: v.verifiedAt, scrubbedAt, complete: v.complete }
  } catch {
    return undefined
  }
}
