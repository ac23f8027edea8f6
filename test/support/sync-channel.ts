/**
 * Frame channels for driving sync sessions (node/sync/session.ts) without a
 * network: the peer's frames are given in advance, what the session sends is
 * decoded and kept. Also the record store such a test file runs its sessions
 * against.
 */

import { join } from 'node:path'
import { afterAll, beforeAll } from 'vitest'
import { silentLogger } from '../../node/log.js'
import { openStore, type RecordStore } from '../../node/store.js'
import { decodeMessage, encodeMessage, type SyncMessage } from '../../node/sync/messages.js'
import type { FrameChannel } from '../../node/sync/session.js'
import type { Simulator } from './simulator.js'
import { tempDirForFile } from './temp-dir.js'

export interface ScriptedChannel extends FrameChannel {
  /** What the session sent, decoded. */
  readonly sent: SyncMessage[]
  /** How many frames of the script the session read. */
  readonly consumed: () => number
}

/**
 * A peer that sends `frames` (payloads; messages are encoded first), one per read, whatever the
 * session sent; after the last one the stream ends (a read rejects, as a closed stream's does).
 */
export function scripted(frames: readonly (Uint8Array | SyncMessage)[]): ScriptedChannel {
  const payloads = frames.map((f) => (f instanceof Uint8Array ? f : encodeMessage(f)))
  const sent: SyncMessage[] = []
  let next = 0
  return {
    sent,
    consumed: () => next,
    async read({ signal }) {
      signal.throwIfAborted()
      const frame = payloads[next]
      if (frame === undefined)
        throw Object.assign(new Error('the stream ended'), { name: 'StreamEndedError' })
      next++
      return frame
    },
    async write(payload, { signal }) {
      signal.throwIfAborted()
      sent.push(decodeMessage(payload))
    },
  }
}

/** Frame bytes a session counts for a message: the payload and its varint length prefix. */
export function frameBytes(m: SyncMessage): number {
  const n = encodeMessage(m).length
  let prefix = 1
  for (let v = n; v >= 128; v = Math.floor(v / 128)) prefix++
  return n + prefix
}

/**
 * Registers the file's beforeAll (a record store on `sim`'s genesis in a temp dir named after
 * `prefix`, its clock stopped at `sim.base`) and afterAll (closing it); call it at the top level
 * of a test file. The returned function gives the store, in tests and hooks.
 */
export function storeForFile(sim: Pick<Simulator, 'genesis' | 'base'>, prefix: string): () => RecordStore {
  const tmp = tempDirForFile(prefix)
  let store: RecordStore | undefined
  beforeAll(async () => {
    store = await openStore({
      path: join(tmp(), 'records.log'),
      genesis: sim.genesis,
      clock: () => sim.base,
      log: silentLogger,
    })
  })
  afterAll(async () => {
    await store?.close()
  })
  return () => {
    if (store === undefined) throw new Error(`${prefix}: the store is open only while the tests run`)
    return store
  }
}
