/**
 * Bindings kept in the node's datastore (docs/adr/0029-holding-announcements.md): a member binds
 * its nodes once, so a federation whose nodes all restart must not forget who bound what.
 * Each stored binding's exact bytes are written under its member; at start they go through the
 * intake again (signature, federation, membership now), so the datastore is never trusted.
 * Announcements are not kept: each node renews its own at start, and sync brings the rest.
 */
import { Key } from 'interface-datastore'
import type { Did } from '../../protocol/index.js'
import type { Logger } from '../log.js'
import type { Intake } from './intake.js'

const PREFIX = '/allmende/holdings/binding/'

/** The slice of a datastore used (the node's LevelDatastore). */
export interface BindingsDatastore {
  put(key: Key, value: Uint8Array): Promise<unknown>
  delete(key: Key): Promise<unknown>
  query(q: {
    prefix: string
  }): AsyncIterable<{ key: Key; value: Uint8Array }> | Iterable<{ key: Key; value: Uint8Array }>
}

/**
 * Takes every kept binding through the intake; one whose member is no longer a member is
 * forgotten through `writer`. Returns how many were taken.
 */
export async function loadBindings(
  datastore: BindingsDatastore,
  intake: Intake,
  writer?: BindingWriter,
): Promise<number> {
  let taken = 0
  for await (const { key, value } of datastore.query({ prefix: PREFIX })) {
    const result = intake.take(value, 'binding')
    if (result.verdict === 'accept') taken++
    else if (result.reason === 'not-member') writer?.dropped(key.toString().slice(PREFIX.length))
  }
  return taken
}

export interface BindingWriter {
  /** Keeps a stored binding of `member`. */
  stored(member: Did, bytes: Uint8Array): void
  /** Forgets the binding of one who is no longer a member (SPEC §15.3). */
  dropped(member: Did): void
  /** Resolves once every write asked for so far is done. */
  settled(): Promise<unknown>
}

/** Writes and deletes bindings one at a time, in the order asked (a later one of a member lands last). */
export function bindingWriter(datastore: BindingsDatastore, log: Logger): BindingWriter {
  let queue: Promise<unknown> = Promise.resolve()
  const enqueue = (member: Did, write: () => Promise<unknown>) => {
    queue = queue
      .then(write)
      .catch((e) => log.warn('holdings-binding-not-kept', { member, error: e as Error }))
  }
  return {
    stored: (member, bytes) => enqueue(member, () => datastore.put(new Key(PREFIX + member), bytes)),
    dropped: (member) => enqueue(member, () => datastore.delete(new Key(PREFIX + member))),
    settled: () => queue,
  }
}
