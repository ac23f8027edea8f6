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
  query(q: {
    prefix: string
  }): AsyncIterable<{ key: Key; value: Uint8Array }> | Iterable<{ key: Key; value: Uint8Array }>
}

/** Takes every kept binding through the intake; returns how many were taken. */
export async function loadBindings(datastore: BindingsDatastore, intake: Intake): Promise<number> {
  let taken = 0
  for await (const { value } of datastore.query({ prefix: PREFIX }))
    if (intake.take(value, 'binding').verdict === 'accept') taken++
  return taken
}

/** Writes each binding stored, one write at a time (a later one of a member lands last). */
export function bindingWriter(
  datastore: BindingsDatastore,
  log: Logger,
): (member: Did, bytes: Uint8Array) => void {
  let queue: Promise<unknown> = Promise.resolve()
  return (member, bytes) => {
    queue = queue
      .then(() => datastore.put(new Key(PREFIX + member), bytes))
      .catch((e) => log.warn('holdings-binding-not-kept', { member, error: e as Error }))
  }
}
