/**
 * The record log (node/record-log.ts): round trips, group commit, recovery
 * from a torn tail, refusal of foreign files, close semantics, and a crash
 * test with real processes killed by SIGKILL.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  appendFileSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs'
import { open as openFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as zlib from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { NodeError as SharedNodeError } from '../../node/errors.js'
import {
  crc32,
  MAX_RECORD_BYTES,
  NodeError,
  openRecordLog,
  portableCrc32,
  RECORD_LOG_MAGIC,
  type RecordLog,
} from '../../node/record-log.js'
import { writerRecord } from '../support/record-log-writer.js'

let dir: string
let n = 0
/** A fresh log path in the test's temp directory. */
const freshPath = () => join(dir, `log-${n++}`, 'records.log')

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'allmende-record-log-'))
})
afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

/** Record i of a test: varied lengths (1 to ~600 bytes), content determined by i. */
function rec(i: number, salt = 0): Uint8Array {
  const bytes = new Uint8Array(1 + ((i * 131 + salt) % 600))
  for (let k = 0; k < bytes.length; k++) bytes[k] = (i + k * 7 + salt) & 0xff
  return bytes
}

/** Same records in the same order (byte comparison; `toEqual` on typed arrays is slow). */
function expectRecords(actual: readonly Uint8Array[], expected: readonly Uint8Array[]): void {
  expect(actual.length).toBe(expected.length)
  const view = (r: Uint8Array) => Buffer.from(r.buffer, r.byteOffset, r.byteLength)
  expect(actual.findIndex((r, i) => !view(r).equals(expected[i]!))).toBe(-1)
}

/** Opens a log and collects its events. */
async function openWithEvents(path: string) {
  const events: Record<string, unknown>[] = []
  const log = await openRecordLog(path, { log: (e) => events.push(e as Record<string, unknown>) })
  return { log, events }
}

async function rejection(p: Promise<unknown>): Promise<NodeError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  )
  expect(e).toBeInstanceOf(NodeError)
  return e as NodeError
}

/** Writes records 0..count-1 and closes; returns the frame sizes in bytes. */
async function writeRecords(path: string, count: number): Promise<number[]> {
  const log = await openRecordLog(path, { log: () => {} })
  for (let i = 0; i < count; i++) await log.append(rec(i))
  await log.close()
  return Array.from({ length: count }, (_, i) => 8 + rec(i).length)
}

describe('CRC-32', () => {
  it('the portable table agrees with node:zlib and the check value', () => {
    const check = new TextEncoder().encode('123456789')
    expect(portableCrc32(check)).toBe(0xcbf43926)
    expect(crc32(check)).toBe(0xcbf43926)
    expect(portableCrc32(new Uint8Array(0))).toBe(0)
    for (let i = 0; i < 50; i++) {
      const data = randomBytes(i * 37)
      expect(portableCrc32(data)).toBe(zlib.crc32(data))
    }
  })
})

describe('record log', () => {
  it('round-trips 1,000 records; a reopen gives the same records in the same order', async () => {
    const path = freshPath()
    const log = await openRecordLog(path, { log: () => {} })
    expect(log.count()).toBe(0)
    expect(log.size()).toBe(8)
    let bytes = 8
    for (let i = 0; i < 1000; i++) {
      await log.append(rec(i))
      bytes += 8 + rec(i).length
    }
    expect(log.count()).toBe(1000)
    expect(log.size()).toBe(bytes)
    expectRecords(
      await log.records(),
      Array.from({ length: 1000 }, (_, i) => rec(i)),
    )
    await log.close()

    expect(statSync(path).size).toBe(bytes)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(readFileSync(path).subarray(0, 8).toString('latin1')).toBe(RECORD_LOG_MAGIC)

    const { log: again, events } = await openWithEvents(path)
    expect(events).toEqual([])
    expect(again.count()).toBe(1000)
    expect(again.size()).toBe(bytes)
    const seen: number[] = []
    const replayed = await again.replay((r, i) => {
      expect(r).toBeInstanceOf(Uint8Array)
      if (Buffer.from(r).equals(rec(i))) seen.push(i)
    })
    expect(replayed).toBe(1000)
    expect(seen).toEqual(Array.from({ length: 1000 }, (_, i) => i))
    await again.close()
  })

  it('keeps its own copy: changing the caller buffer after append changes nothing', async () => {
    const path = freshPath()
    const log = await openRecordLog(path, { log: () => {} })
    const buf = rec(5)
    const pending = log.append(buf)
    buf.fill(0)
    await pending
    expectRecords(await log.records(), [rec(5)])
    await log.close()
  })

  it('group commit: 2,000 concurrent appends all resolve, in fewer flushes, and survive a reopen', async () => {
    const path = freshPath()
    const log = await openRecordLog(path, { log: () => {} })
    const all: Promise<void>[] = []
    for (let i = 0; i < 2000; i++) all.push(log.append(rec(i)))
    await Promise.all(all)
    const stats = log.stats()
    expect(stats.appends).toBe(2000)
    expect(stats.flushes).toBeGreaterThan(0)
    expect(stats.flushes).toBeLessThan(stats.appends)
    await log.close()

    const again = await openRecordLog(path, { log: () => {} })
    expectRecords(
      await again.records(),
      Array.from({ length: 2000 }, (_, i) => rec(i)),
    )
    await again.close()
  })

  it('group commit with a batch window and a batch cap; appendMany keeps the call order', async () => {
    const path = freshPath()
    const log = await openRecordLog(path, { fsyncBatchMs: 2, maxBatch: 100, log: () => {} })
    const all: Promise<void>[] = []
    for (let i = 0; i < 500; i++) all.push(log.append(rec(i)))
    all.push(log.appendMany([rec(500), rec(501), rec(502)]))
    all.push(log.appendMany([]))
    await Promise.all(all)
    expect(log.stats().appends).toBe(503)
    expect(log.stats().flushes).toBeGreaterThanOrEqual(5) // at most 100 records per flush
    expect(log.stats().flushes).toBeLessThan(503)
    await log.close()
    const again = await openRecordLog(path, { log: () => {} })
    expectRecords(
      await again.records(),
      Array.from({ length: 503 }, (_, i) => rec(i)),
    )
    await again.close()
  })

  it('acknowledgements come in file order', async () => {
    const path = freshPath()
    const log = await openRecordLog(path, { log: () => {} })
    const order: number[] = []
    await Promise.all(Array.from({ length: 300 }, (_, i) => log.append(rec(i)).then(() => order.push(i))))
    expect(order).toEqual(Array.from({ length: 300 }, (_, i) => i))
    await log.close()
  })

  it('rejects empty, oversized and non-byte records without poisoning the log', async () => {
    const path = freshPath()
    const log = await openRecordLog(path, { log: () => {} })
    expect((await rejection(log.append(new Uint8Array(0)))).code).toBe('record-log-invalid')
    expect((await rejection(log.append(new Uint8Array(MAX_RECORD_BYTES + 1)))).code).toBe(
      'record-log-invalid',
    )
    expect((await rejection(log.append('text' as unknown as Uint8Array))).code).toBe('record-log-invalid')
    // appendMany is all or nothing
    expect((await rejection(log.appendMany([rec(0), new Uint8Array(0)]))).code).toBe('record-log-invalid')
    const big = new Uint8Array(MAX_RECORD_BYTES).fill(7)
    await log.append(big)
    await log.append(rec(1))
    expect(log.count()).toBe(2)
    await log.close()
    const again = await openRecordLog(path, { log: () => {} })
    expectRecords(await again.records(), [big, rec(1)])
    await again.close()
  })

  it('close is idempotent, flushes pending appends, and later appends reject with record-log-closed', async () => {
    const path = freshPath()
    const log = await openRecordLog(path, { fsyncBatchMs: 50, log: () => {} })
    const pending = [log.append(rec(0)), log.append(rec(1))]
    const closing = log.close()
    const error = await rejection(log.append(rec(2)))
    expect(error.name).toBe('NodeError')
    expect(error.code).toBe('record-log-closed')
    expect(error.status).toBe(503)
    expect(error).toBeInstanceOf(SharedNodeError) // one NodeError root for the node (node/errors.ts)
    expect(error.message).toContain(path)
    await Promise.all(pending)
    await closing
    await log.close()
    expect((await rejection(log.append(rec(3)))).code).toBe('record-log-closed')
    expect((await rejection(log.appendMany([rec(3)]))).code).toBe('record-log-closed')
    expect((await rejection(log.records())).code).toBe('record-log-closed')

    const again = await openRecordLog(path, { log: () => {} })
    expectRecords(await again.records(), [rec(0), rec(1)])
    await again.close()
  })

  it.each([
    ['write', 'write'],
    ['datasync', 'fdatasync'],
  ] as const)('a failed %s rejects with record-log-io and refuses later appends', async (method, step) => {
    const path = freshPath()
    const { log, events } = await openWithEvents(path)
    await log.append(rec(0))
    // Every FileHandle shares one prototype: take it from a handle of our own.
    const probe = await openFile(path, 'r')
    const proto = Object.getPrototypeOf(probe) as Record<typeof method, () => Promise<unknown>>
    await probe.close()
    const spy = vi.spyOn(proto, method).mockRejectedValueOnce(new Error('EIO: simulated'))
    try {
      const failed = [log.append(rec(1)), log.append(rec(2))]
      for (const p of failed) {
        const error = await rejection(p)
        expect(error.name).toBe('NodeError')
        expect(error.code).toBe('record-log-io')
        expect(error.message).toContain(path)
        expect(error.message).toContain(step)
        expect(error.message).toContain('EIO: simulated')
      }
    } finally {
      spy.mockRestore()
    }
    expect((await rejection(log.append(rec(3)))).code).toBe('record-log-io')
    expect(log.count()).toBe(1)
    expect(events).toMatchObject([{ event: 'record-log-io-error', step }])
    await log.close()
    await log.close()
    // Reopening keeps the acknowledged record; unacknowledged ones may or may not be there.
    const again = await openRecordLog(path, { log: () => {} })
    const kept = await again.records()
    expect(kept.length).toBeGreaterThanOrEqual(1)
    expectRecords(kept.slice(0, 1), [rec(0)])
    await again.close()
  })

  it('refuses a second open of the same file in one process', async () => {
    const path = freshPath()
    const log = await openRecordLog(path, { log: () => {} })
    expect((await rejection(openRecordLog(path, { log: () => {} }))).code).toBe('record-log-busy')
    await log.close()
    const again = await openRecordLog(path, { log: () => {} })
    await again.close()
  })
})

describe('record log recovery', () => {
  type Damage = (path: string, frames: number[]) => { keep: number }
  const lastFrameStart = (path: string, frames: number[]) => statSync(path).size - frames.at(-1)!

  const cases: [string, Damage][] = [
    [
      'garbage appended after the last frame',
      (path, frames) => {
        appendFileSync(path, Buffer.from('not a frame, just noise'))
        return { keep: frames.length }
      },
    ],
    [
      'a stray partial frame header',
      (path, frames) => {
        appendFileSync(path, Buffer.from([0, 0, 1]))
        return { keep: frames.length }
      },
    ],
    [
      'a zero-filled tail (what a power cut can leave)',
      (path, frames) => {
        appendFileSync(path, Buffer.alloc(4096))
        return { keep: frames.length }
      },
    ],
    [
      'the last frame cut in half',
      (path, frames) => {
        truncateSync(path, statSync(path).size - Math.floor(frames.at(-1)! / 2))
        return { keep: frames.length - 1 }
      },
    ],
    [
      'the last frame cut inside its header',
      (path, frames) => {
        truncateSync(path, lastFrameStart(path, frames) + 5)
        return { keep: frames.length - 1 }
      },
    ],
    [
      'a flipped byte in the last payload (CRC mismatch)',
      (path, frames) => {
        const bytes = readFileSync(path)
        bytes[bytes.length - 3]! ^= 0x40
        writeFileSync(path, bytes)
        return { keep: frames.length - 1 }
      },
    ],
    [
      'a length beyond the file in the last frame',
      (path, frames) => {
        const bytes = readFileSync(path)
        bytes.writeUInt32BE(frames.at(-1)! + 100, lastFrameStart(path, frames))
        writeFileSync(path, bytes)
        return { keep: frames.length - 1 }
      },
    ],
    [
      'an absurd length (beyond any record) followed by plenty of bytes',
      (path, frames) => {
        const tail = Buffer.alloc(1024, 1)
        tail.writeUInt32BE(0xfffffff0, 0)
        appendFileSync(path, tail)
        return { keep: frames.length }
      },
    ],
  ]

  it.each(cases)(
    '%s: keeps the intact prefix, cuts the tail, says so, and goes on',
    async (_name, damage) => {
      const path = freshPath()
      const frames = await writeRecords(path, 20)
      const { keep } = damage(path, frames)
      const damagedSize = statSync(path).size
      const goodEnd = 8 + frames.slice(0, keep).reduce((a, b) => a + b, 0)

      const { log, events } = await openWithEvents(path)
      expect(log.count()).toBe(keep)
      expect(log.size()).toBe(goodEnd)
      expect(statSync(path).size).toBe(goodEnd)
      expect(events).toHaveLength(1)
      expect(events[0]).toMatchObject({
        event: 'record-log-truncated',
        offset: goodEnd,
        droppedBytes: damagedSize - goodEnd,
      })
      expectRecords(
        await log.records(),
        Array.from({ length: keep }, (_, i) => rec(i)),
      )

      // Appends after the recovery work and survive another reopen, with no further truncation.
      await log.appendMany([rec(100), rec(101)])
      await log.append(rec(102))
      await log.close()
      const { log: again, events: later } = await openWithEvents(path)
      expect(later).toEqual([])
      expectRecords(await again.records(), [
        ...Array.from({ length: keep }, (_, i) => rec(i)),
        rec(100),
        rec(101),
        rec(102),
      ])
      await again.close()
    },
  )

  it('completes a header cut short at creation', async () => {
    const path = freshPath()
    await openRecordLog(path, { log: () => {} }).then((l) => l.close())
    writeFileSync(path, Buffer.from(RECORD_LOG_MAGIC.slice(0, 3), 'latin1'))
    const { log, events } = await openWithEvents(path)
    expect(events).toMatchObject([{ event: 'record-log-truncated', offset: 0, droppedBytes: 3 }])
    expect(log.count()).toBe(0)
    await log.append(rec(1))
    await log.close()
    expect(readFileSync(path).subarray(0, 8).toString('latin1')).toBe(RECORD_LOG_MAGIC)
  })

  it.each([
    ['a text file', Buffer.from('hello, this is somebody else’s file\n')],
    ['a short foreign file', Buffer.from('xyz')],
    ['a later format version', Buffer.concat([Buffer.from('ALMLOG02', 'latin1'), Buffer.alloc(100)])],
  ])('refuses %s with record-log-format and leaves it untouched', async (_name, content) => {
    const path = freshPath()
    await openRecordLog(path, { log: () => {} }).then((l) => l.close())
    writeFileSync(path, content)
    const error = await rejection(openRecordLog(path, { log: () => {} }))
    expect(error.code).toBe('record-log-format')
    expect(error.message).toContain(path)
    expect(readFileSync(path)).toEqual(content)
    // the failed open released the path
    expect((await rejection(openRecordLog(path, { log: () => {} }))).code).toBe('record-log-format')
  })

  it('rejects (never throws) with record-log-io when the file cannot be opened', async () => {
    const blocker = join(dir, 'plain-file')
    writeFileSync(blocker, 'x')
    let p: Promise<RecordLog> | undefined
    expect(() => {
      p = openRecordLog(join(blocker, 'records.log'), { log: () => {} })
    }).not.toThrow()
    const error = await rejection(p!)
    expect(error.code).toBe('record-log-io')
    expect(error.message).toContain(blocker)
    expect(error.cause).toBeDefined()
  })
})

describe('record log crash safety', () => {
  /*
   * A real writer process is killed with SIGKILL at a random point after it
   * has acknowledged some records; the log must then hold records 0..k in
   * order, with k at least the last acknowledged index. SIGKILL leaves the
   * OS page cache intact, so this proves the ordering "write, then
   * acknowledge" (and recovery from whatever the kill left), not fsync itself:
   * it would pass without fsync. Durability across a power cut rests on
   * append resolving only after `fh.datasync()` resolved (code review).
   *
   * Each lane keeps appending to its own log across iterations, so every
   * iteration also starts from a log recovered after the previous kill.
   */
  const root = fileURLToPath(new URL('../..', import.meta.url))
  const script = fileURLToPath(new URL('../support/record-log-writer.ts', import.meta.url))
  const LANES = 3
  const ITERATIONS_PER_LANE = 7

  /** Runs the writer until it has acknowledged something, kills it after a random delay; returns the acknowledged indices. */
  function runAndKill(path: string, delayMs: number): Promise<{ acked: number[]; stderr: string }> {
    return new Promise((resolveRun, rejectRun) => {
      const child = spawn(process.execPath, ['--import', 'tsx', script, path, '8'], {
        cwd: root,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let out = ''
      let stderr = ''
      let killTimer: NodeJS.Timeout | undefined
      const guard = setTimeout(() => child.kill('SIGKILL'), 30_000)
      child.stdout.setEncoding('utf8')
      child.stderr.setEncoding('utf8')
      child.stdout.on('data', (chunk: string) => {
        out += chunk
        if (killTimer === undefined && out.includes('\n')) {
          killTimer = setTimeout(() => child.kill('SIGKILL'), delayMs)
        }
      })
      child.stderr.on('data', (chunk: string) => {
        stderr += chunk
      })
      child.on('error', rejectRun)
      child.on('close', (code, signal) => {
        clearTimeout(guard)
        clearTimeout(killTimer)
        if (signal !== 'SIGKILL') {
          rejectRun(new Error(`writer ended with code ${code}, signal ${signal}: ${stderr}`))
          return
        }
        // Only complete lines count: a line is printed after its append resolved.
        const lines = out.split('\n').slice(0, -1)
        resolveRun({ acked: lines.map(Number), stderr })
      })
    })
  }

  async function lane(laneNo: number): Promise<number> {
    const path = join(dir, `crash-${laneNo}`, 'records.log')
    let expectedStart = 0
    let total = 0
    for (let it = 0; it < ITERATIONS_PER_LANE; it++) {
      const delayMs = Math.floor(Math.random() * 150)
      const { acked, stderr } = await runAndKill(path, delayMs)
      const context = `lane ${laneNo}, iteration ${it}, delay ${delayMs} ms, stderr: ${stderr}`
      expect(acked.length, context).toBeGreaterThan(0)
      // The writer numbers records from the count it found, and acknowledges in order.
      expect(acked[0], context).toBe(expectedStart)
      expect(acked, context).toEqual(Array.from({ length: acked.length }, (_, i) => expectedStart + i))
      const lastAcked = acked.at(-1)!

      const log = await openRecordLog(path, { log: () => {} })
      let bad = -1
      const count = await log.replay((r, i) => {
        if (bad < 0 && !Buffer.from(r).equals(writerRecord(i))) bad = i
      })
      await log.close()
      expect(bad, `record ${bad} differs; ${context}`).toBe(-1)
      expect(count - 1, context).toBeGreaterThanOrEqual(lastAcked)
      expectedStart = count
      total++
    }
    return total
  }

  it(`every acknowledged record survives SIGKILL (${LANES * ITERATIONS_PER_LANE} kills)`, async () => {
    const done = await Promise.all(Array.from({ length: LANES }, (_, i) => lane(i)))
    expect(done.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(20)
  }, 120_000)
})
