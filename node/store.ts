/**
 * The record store: the durable record log, the list blocks, and the fold over everything held
 * (ADR 0015). This file assembles the parts in node/store/ and is what the node imports:
 *
 * - held-records.ts: the fold and the indexes beside it (the ingest limits' tally, the
 *   governance proposals, the seals waiting for their lists), interned (intern.ts);
 * - list-blocks.ts and list-naming.ts: which list blocks are kept, and whose seals name them;
 * - validator.ts: the gossip validator, with protocol/admission.ts as its policy;
 * - ingest.ts: records and blocks made durable, then held; replay.ts: the log read back at start.
 *
 * Invariants: a record is acknowledged only once it (and the list blocks sent with it that it
 * needs) is fsync'd; the log holds only bytes that passed `decodeRecord` and list blocks a held
 * seal or checkpoint names, so replay trusts its own file.
 */

import { dirname, join } from 'node:path'
import type { CID } from 'multiformats/cid'
import { cidKey, createFold, type Ed25519Backend, federationIdOf, type Verified } from '../protocol/index.js'
import { fastEd25519 } from './ed25519-native.js'
import type { Logger } from './log.js'
import { openRecordLog, type RecordLog } from './record-log.js'
import { createHeldIds } from './store/held-ids.js'
import { createHeldRecords } from './store/held-records.js'
import { createIngest } from './store/ingest.js'
import { createListBlocks } from './store/list-blocks.js'
import { createListNaming } from './store/list-naming.js'
import { replayLog } from './store/replay.js'
import type { RecordStore } from './store/types.js'
import { createValidator } from './store/validator.js'
import { createVersionWatch } from './store/version-watch.js'
import { openWitnessLog } from './witness.js'

export { MAX_VOTES_PER_VOTER_AND_PROPOSAL } from '../protocol/index.js'
export type {
  BlocksTaken,
  Checked,
  IngestResult,
  KeyedBlocks,
  RecordStore,
  StoreCounters,
  Verdict,
} from './store/types.js'

export async function openStore(options: {
  path: string
  genesis: Verified<'genesis'>
  clock: () => number
  log: Logger
  ed25519?: Ed25519Backend
}): Promise<RecordStore> {
  const { genesis, clock, log } = options
  const federation = federationIdOf(genesis.record)
  const recordLog = await openStoreLog(options.path, log)
  const witness = await openWitnessLog(join(dirname(options.path), 'witness.log'), (event) =>
    log.warn(String((event as { event?: string }).event ?? 'witness-log'), event as Record<string, unknown>),
  )
  const fold = createFold(genesis)
  const ids = createHeldIds()
  const blocks = createListBlocks({ ids, append: (frames) => recordLog.appendMany(frames) })
  const getBlock = (cid: CID) => blocks.get(cidKey(cid))
  const records = createHeldRecords({ fold, federation, ids, blocks: getBlock })
  const naming = createListNaming({ records, blocks })
  const validator = createValidator({
    federation,
    ed25519: options.ed25519 ?? fastEd25519,
    admission: { fold, tally: records.tally },
    clock,
    log,
  })
  const versions = createVersionWatch(fold, log)
  const ingest = createIngest({ records, blocks, naming, validator, witness, versions, clock })
  await replayLog(recordLog, { federation, records, blocks, naming, versions, log })

  return {
    fold,
    federation,
    counters: { verdicts: validator.verdicts },
    check: validator.check,
    checkMany: validator.checkMany,
    ingest: ingest.ingest,
    ingestBlocks: ingest.ingestBlocks,
    getBlock,
    hasBlock: (key) => blocks.has(key),
    wantsBlock: (key) => blocks.wants(key),
    namingGeneration: () => blocks.namingGeneration(),
    bytesOf(cid) {
      if (cid.equals(federation)) return genesis.bytes
      return blocks.get(cidKey(cid)) ?? fold.get(cid)?.bytes
    },
    ids: ids.ids,
    witnessedAt: (key) => witness.at(key),
    logBytes: () => recordLog.size(),
    requiredVersion: versions.required,
    async close() {
      await ingest.close()
      await validator.close()
      await recordLog.close()
      await witness.close()
    },
  }
}

/** The store's record log, its events logged at the level an operator should see them. */
function openStoreLog(path: string, log: Logger): Promise<RecordLog> {
  return openRecordLog(path, {
    log: (event) => {
      const name = String((event as { event?: string }).event ?? 'record-log')
      // A repair means acknowledged records were lost to damage (sync fetches them back): an
      // operator should look at the disk. A torn tail or a stale lock is routine after a crash.
      log.log(name === 'record-log-repaired' ? 'error' : 'warn', name, event as Record<string, unknown>)
    },
  })
}
