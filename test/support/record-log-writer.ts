/**
 * Child process for the record log's crash test (test/unit/node/record-log.test.ts):
 *
 *     node --import tsx test/support/record-log-writer.ts <log path> [writers]
 *
 * Opens the log, then `writers` concurrent loops append `writerRecord(i)` for
 * i = count(), count()+1, …, and print `i` on stdout only after that append
 * resolved. The parent kills it with SIGKILL at a random point and checks that
 * every printed index is in the log. Stops by itself after MAX_RECORDS, or
 * when stdout goes away.
 *
 *     node --import tsx test/support/record-log-writer.ts --probe <log path>
 *
 * Tries to open the log from another process (for the lock tests), prints one
 * JSON line, `{"ok":true,"count":n}` or `{"ok":false,"code":…,"message":…}`,
 * closes it again and exits 0.
 */
import { pathToFileURL } from 'node:url'
import { isNodeError } from '../../node/errors.js'
import { openRecordLog } from '../../node/record-log.js'

const MAX_RECORDS = 1_000_000

/** Record `i` of the crash test: 40 to 400 bytes, starting with i (u32be), the rest a pattern of i. */
export function writerRecord(i: number): Uint8Array {
  const bytes = new Uint8Array(40 + ((i * 7919) % 361))
  new DataView(bytes.buffer).setUint32(0, i)
  for (let k = 4; k < bytes.length; k++) bytes[k] = (i * 31 + k) & 0xff
  return bytes
}

async function main(path: string, writers: number): Promise<void> {
  process.stdout.on('error', () => process.exit(0))
  const log = await openRecordLog(path, {
    log: (event) => process.stderr.write(`${JSON.stringify(event)}\n`),
  })
  let next = log.count()
  const end = next + MAX_RECORDS
  const writer = async () => {
    while (next < end) {
      const i = next++
      await log.append(writerRecord(i))
      process.stdout.write(`${i}\n`)
    }
  }
  await Promise.all(Array.from({ length: writers }, writer))
  await log.close()
}

async function probe(path: string): Promise<void> {
  try {
    const log = await openRecordLog(path, { log: () => {} })
    process.stdout.write(`${JSON.stringify({ ok: true, count: log.count() })}\n`)
    await log.close()
  } catch (e) {
    const code = isNodeError(e) ? e.code : 'unexpected'
    process.stdout.write(`${JSON.stringify({ ok: false, code, message: (e as Error).message })}\n`)
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2)
  const [path, writers = '8'] = args
  if (args[0] === '--probe' && args[1] !== undefined) {
    await probe(args[1])
  } else if (path === undefined) {
    process.stderr.write('usage: record-log-writer.ts <log path> [writers] | --probe <log path>\n')
    process.exit(2)
  } else {
    main(path, Number(writers)).catch((e: unknown) => {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
      process.exit(1)
    })
  }
}
