/**
 * Start-up: the record log read back into the held records and list blocks (ADR 0015). The log
 * holds only bytes that passed `decodeRecord`, and list blocks a held seal or checkpoint named, so
 * replay trusts its own file: it decodes and hashes each record but checks neither canonical
 * form, schema nor signature again (that would make start-up far slower than the 5 s budget for
 * 100,000 records; the file is 0600 and every frame is CRC'd).
 */
import type { CID } from 'multiformats/cid'
import { type AnyVerified, blockKey } from '../../protocol/index.js'
import { decodeOwnRecord } from '../../protocol/record.js'
import type { Logger } from '../log.js'
import type { RecordLog } from '../record-log.js'
import { nativeSha256 } from '../sha256.js'
import type { HeldRecords } from './held-records.js'
import { type ListBlocks, listRoots, NO_BLOCKS } from './list-blocks.js'
import type { ListNaming } from './list-naming.js'
import type { VersionWatch } from './version-watch.js'

/** Replays `recordLog` into the store's parts, and logs what it found. */
export async function replayLog(
  recordLog: RecordLog,
  parts: {
    federation: CID
    records: HeldRecords
    blocks: ListBlocks
    naming: ListNaming
    versions: VersionWatch
    log: Logger
  },
): Promise<void> {
  const { federation, records, blocks, naming, versions, log } = parts
  const started = Date.now()
  let replayed = 0
  let skipped = 0
  // Seals and checkpoints replayed: after the whole log, they tell which list blocks are named.
  const listed: AnyVerified[] = []
  await recordLog.replay((bytes) => {
    // Records are CBOR maps (major type 5), list blocks arrays (major type 4): one byte tells.
    if (bytes[0]! >> 5 === 4) {
      blocks.restore(blockKey(bytes, nativeSha256), bytes)
      return
    }
    const v = decodeOwnRecord(bytes, nativeSha256)
    if (!v || v.record.kind === 'genesis' || !v.record.federation?.equals(federation)) {
      skipped++
      return
    }
    records.hold(v)
    if (v.record.kind === 'seal' || v.record.kind === 'checkpoint') listed.push(v)
    replayed++
  })
  records.attachWaiting()
  // Only a steward's seals and checkpoints name blocks; the others wait for a decision.
  dropUnnamed(naming.sortReplayed(listed), blocks, log)
  records.fold.state()
  versions.review()
  log.info('record-log-replayed', {
    records: replayed,
    blocks: blocks.size,
    skipped,
    ms: Date.now() - started,
    ...(recordLog.recovery ? { recovery: recordLog.recovery } : {}),
  })
}

/**
 * Keeps, of the list blocks replayed, those a held seal or checkpoint names, and drops the rest
 * from memory: an older version stored any well-formed list block a peer sent. The file keeps
 * their bytes (skipped at every start) until it is compacted.
 */
function dropUnnamed(holders: readonly AnyVerified[], blocks: ListBlocks, log: Logger): void {
  const reached = new Set<string>()
  blocks.commit(blocks.follow(holders.flatMap(listRoots), NO_BLOCKS, reached))
  const { dropped, bytes } = blocks.keepOnly(reached)
  if (dropped > 0) log.warn('record-log-junk-dropped', { blocks: dropped, bytes })
}
