/**
 * Record log throughput (node/record-log.ts): N records of 300 bytes appended
 * by 64 concurrent writers (each awaits its append before the next), so group
 * commit can put up to 64 appends behind one fdatasync. Printed next to two
 * references measured in the same run and the same directory:
 *
 * - `writeSync, one fsync`: the same frames written with one `fs.writeSync`
 *   each and a single `fsyncSync` at the end: the ceiling, with no durability
 *   until the very end;
 * - `fdatasync per record`: one write + `fdatasyncSync` per record, no
 *   batching (on a sample of 2,000 records): what group commit saves.
 *
 * Then reopens the log and times the open (full scan) and a replay of every
 * record. Not part of `npm test`:
 *
 *     npx tsx bench/record-log.ts [records] [directory]
 */
import '../node/polyfill.js'
import { closeSync, fdatasyncSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { crc32, openRecordLog } from '../node/record-log.js'

const N = Number(process.argv[2] ?? 100_000)
const WRITERS = 64
const RECORD_BYTES = 300
const PER_RECORD_SAMPLE = Math.min(N, 2_000)
const dir = mkdtempSync(join(process.argv[3] ?? tmpdir(), 'allmende-bench-log-'))

function record(i: number): Uint8Array {
  const bytes = new Uint8Array(RECORD_BYTES)
  new DataView(bytes.buffer).setUint32(0, i)
  for (let k = 4; k < RECORD_BYTES; k++) bytes[k] = (i + k) & 0xff
  return bytes
}

function frame(payload: Uint8Array): Buffer {
  const f = Buffer.allocUnsafe(8 + payload.length)
  f.writeUInt32BE(payload.length, 0)
  f.writeUInt32BE(crc32(payload), 4)
  f.set(payload, 8)
  return f
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US')
const rows: [string, string, string, string][] = []
const records = Array.from({ length: N }, (_, i) => record(i))

try {
  // The record log, 64 writers.
  const path = join(dir, 'records.log')
  const log = await openRecordLog(path)
  let next = 0
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      while (next < N) await log.append(records[next++]!)
    }),
  )
  const logSeconds = (performance.now() - t0) / 1000
  const { appends, flushes } = log.stats()
  const fileBytes = log.size()
  await log.close()
  rows.push([
    `record log, ${WRITERS} writers`,
    fmt(appends / logSeconds),
    fmt(flushes / logSeconds),
    `${logSeconds.toFixed(2)} s, ${(appends / flushes).toFixed(1)} appends per fsync`,
  ])

  // Reference: plain writes, one fsync at the end.
  const frames = records.map(frame)
  const plain = openSync(join(dir, 'plain.log'), 'w', 0o600)
  const t1 = performance.now()
  for (const f of frames) writeSync(plain, f)
  fsyncSync(plain)
  const plainSeconds = (performance.now() - t1) / 1000
  closeSync(plain)
  rows.push([
    'writeSync, one fsync (ref.)',
    fmt(N / plainSeconds),
    fmt(1 / plainSeconds),
    `${plainSeconds.toFixed(2)} s`,
  ])

  // Reference: one fdatasync per record, no batching.
  const single = openSync(join(dir, 'single.log'), 'w', 0o600)
  const t2 = performance.now()
  for (let i = 0; i < PER_RECORD_SAMPLE; i++) {
    writeSync(single, frames[i]!)
    fdatasyncSync(single)
  }
  const singleSeconds = (performance.now() - t2) / 1000
  closeSync(single)
  rows.push([
    'fdatasync per record (ref.)',
    fmt(PER_RECORD_SAMPLE / singleSeconds),
    fmt(PER_RECORD_SAMPLE / singleSeconds),
    `${PER_RECORD_SAMPLE} records, ${singleSeconds.toFixed(2)} s`,
  ])

  // Reopen: the open scans every frame, the replay reads them all again.
  const t3 = performance.now()
  const reopened = await openRecordLog(path)
  const openMs = performance.now() - t3
  const t4 = performance.now()
  let bytes = 0
  const replayed = await reopened.replay((r) => {
    bytes += r.length
  })
  const replayMs = performance.now() - t4
  await reopened.close()
  if (replayed !== N || bytes !== N * RECORD_BYTES)
    throw new Error(`replayed ${replayed} records, ${bytes} bytes`)

  console.log(
    `${fmt(N)} records of ${RECORD_BYTES} bytes, ${(fileBytes / 2 ** 20).toFixed(1)} MiB, in ${dir}`,
  )
  console.log('')
  const head: [string, string, string, string] = ['', 'appends/s', 'fsyncs/s', '']
  const widths = [0, 1, 2, 3].map((c) => Math.max(...[head, ...rows].map((r) => r[c]!.length)))
  for (const r of [head, ...rows]) {
    console.log(
      [r[0].padEnd(widths[0]!), r[1].padStart(widths[1]!), r[2].padStart(widths[2]!), r[3]]
        .join('  ')
        .trimEnd(),
    )
  }
  console.log('')
  console.log(`open (scan + CRC of ${fmt(N)} frames): ${openMs.toFixed(0)} ms`)
  console.log(`replay of ${fmt(replayed)} records: ${replayMs.toFixed(0)} ms`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
