/**
 * The record log (node/record-log.ts): round trips, group commit, recovery
 * from a torn tail, repair of damage before the tail (one flipped bit, a
 * broken header, several places, a property test over random corruptions),
 * refusal of foreign files, close semantics, the lock against a second
 * process, and a crash test with real processes killed by SIGKILL.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs'
import { open as openFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as zlib from 'node:zlib'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { NodeError as SharedNodeError } from '../../../node/errors.js'
import {
  crc32,
  MAX_RECORD_BYTES,
  NodeError,
  openRecordLog,
  portableCrc32,
  RECORD_LOG_MAGIC,
  type RecordLog,
  type ResyncMethod,
} from '../../../node/record-log.js'
import { writerRecord } from '../../support/record-log-writer.js'

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

/** The damaged copies beside a log (`records.log.damaged-<n>`), by name. */
function damagedCopies(path: string): string[] {
  const prefix = `${basename(path)}.damaged-`
  return readdirSync(dirname(path))
    .filter((name) => name.startsWith(prefix))
    .sort()
}

/** Start offsets of frames of the given sizes, laid out after the 8-byte header. */
function frameStarts(sizes: readonly number[]): number[] {
  let at = 8
  return sizes.map((size) => {
    const start = at
    at += size
    return start
  })
}

/** A whole log file holding `records`, framed by hand (length, CRC, payload). */
function logFile(records: readonly Uint8Array[]): Buffer {
  const frames = records.map((r) => {
    const frame = Buffer.alloc(8 + r.length)
    frame.writeUInt32BE(r.length, 0)
    frame.writeUInt32BE(crc32(r), 4)
    frame.set(r, 8)
    return frame
  })
  return Buffer.concat([Buffer.from(RECORD_LOG_MAGIC, 'latin1'), ...frames])
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
      // A torn tail is only cut: no copy, no repair, and the count said in the result too.
      expect(damagedCopies(path)).toEqual([])
      expect(log.recovery).toEqual({
        regions: [],
        framesLost: 0,
        bytesSkipped: 0,
        tailBytes: damagedSize - goodEnd,
        recordsKept: keep,
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

describe('record log repair: damage before the tail', () => {
  const N = 20
  const sizes = Array.from({ length: N }, (_, i) => 8 + rec(i).length)
  const starts = frameStarts(sizes)
  const flipBit = (bytes: Buffer, at: number, mask: number) => {
    bytes[at] = bytes[at]! ^ mask
  }
  const payloadMiddle = (i: number) => starts[i]! + 8 + Math.floor((sizes[i]! - 8) / 2)

  interface Expected {
    /** Frames that must be gone; every other one must be there, in order. */
    lost: number[]
    framesLost: number
    bytesSkipped: number
    resync: ResyncMethod[]
  }
  const cases: [string, (bytes: Buffer) => Expected][] = [
    [
      'one flipped bit in an early frame’s payload',
      (bytes) => {
        flipBit(bytes, payloadMiddle(2), 0x10)
        return { lost: [2], framesLost: 1, bytesSkipped: 0, resync: ['length'] }
      },
    ],
    [
      'one flipped bit in the first frame’s payload',
      (bytes) => {
        flipBit(bytes, starts[0]! + 8, 0x01)
        return { lost: [0], framesLost: 1, bytesSkipped: 0, resync: ['length'] }
      },
    ],
    [
      'the lowest bit of a frame’s length field',
      (bytes) => {
        flipBit(bytes, starts[3]! + 3, 0x01)
        return { lost: [], framesLost: 0, bytesSkipped: 0, resync: ['length-bit'] }
      },
    ],
    [
      'the highest bit of a frame’s length field (an absurd length)',
      (bytes) => {
        flipBit(bytes, starts[3]!, 0x80)
        return { lost: [], framesLost: 0, bytesSkipped: 0, resync: ['length-bit'] }
      },
    ],
    [
      'one flipped bit in a frame’s CRC field',
      (bytes) => {
        flipBit(bytes, starts[4]! + 5, 0x04)
        return { lost: [4], framesLost: 1, bytesSkipped: 0, resync: ['length'] }
      },
    ],
    [
      'a whole frame header overwritten',
      (bytes) => {
        bytes.fill(0xa5, starts[5]!, starts[5]! + 8)
        return { lost: [5], framesLost: 0, bytesSkipped: sizes[5]!, resync: ['scan'] }
      },
    ],
    [
      'a zeroed stretch across three frames',
      (bytes) => {
        bytes.fill(0, starts[7]! + 3, starts[10]! - 2)
        return { lost: [7, 8, 9], framesLost: 0, bytesSkipped: starts[10]! - starts[7]!, resync: ['scan'] }
      },
    ],
    [
      'several places at once (a good frame between two damaged ones kept)',
      (bytes) => {
        flipBit(bytes, payloadMiddle(1), 0x02)
        flipBit(bytes, starts[6]! + 7, 0x80)
        flipBit(bytes, starts[9]! + 2, 0x08)
        bytes.fill(0xff, starts[13]!, starts[13]! + 8)
        flipBit(bytes, payloadMiddle(15), 0x40)
        return {
          lost: [1, 6, 13, 15],
          framesLost: 3,
          bytesSkipped: sizes[13]!,
          resync: ['length', 'length', 'length-bit', 'scan', 'length'],
        }
      },
    ],
    [
      'one flipped bit in the last frame’s length field',
      (bytes) => {
        flipBit(bytes, starts[N - 1]! + 3, 0x02)
        return { lost: [], framesLost: 0, bytesSkipped: 0, resync: ['length-bit'] }
      },
    ],
  ]

  it.each(cases)(
    '%s: every intact frame kept, the file copied aside first, the loss reported, the next start clean',
    async (_name, damage) => {
      const path = freshPath()
      expect(await writeRecords(path, N)).toEqual(sizes)
      const bytes = readFileSync(path)
      const expected = damage(bytes)
      writeFileSync(path, bytes)
      const kept = Array.from({ length: N }, (_, i) => i).filter((i) => !expected.lost.includes(i))

      const { log, events } = await openWithEvents(path)
      expectRecords(
        await log.records(),
        kept.map((i) => rec(i)),
      )
      expect(log.count()).toBe(kept.length)
      const wholeSize = 8 + kept.reduce((sum, i) => sum + sizes[i]!, 0)
      expect(log.size()).toBe(wholeSize)
      expect(statSync(path).size).toBe(wholeSize)

      // The file as found, byte for byte, beside the log; no temp file left.
      const copies = damagedCopies(path)
      expect(copies).toEqual([`${basename(path)}.damaged-1`])
      const copy = join(dirname(path), copies[0]!)
      expect(readFileSync(copy).equals(bytes)).toBe(true)
      expect(statSync(copy).mode & 0o777).toBe(0o600)
      expect(existsSync(`${path}.repair`)).toBe(false)

      // The loss, in the result and in one event an operator can act on.
      expect(log.recovery).toMatchObject({
        damagedCopy: copy,
        framesLost: expected.framesLost,
        bytesSkipped: expected.bytesSkipped,
        tailBytes: 0,
        recordsKept: kept.length,
      })
      expect(log.recovery?.regions.map((r) => r.resync)).toEqual(expected.resync)
      expect(events).toHaveLength(1)
      expect(events[0]).toMatchObject({
        event: 'record-log-repaired',
        path,
        damagedCopy: copy,
        framesLost: expected.framesLost,
        bytesSkipped: expected.bytesSkipped,
        regionCount: expected.resync.length,
      })
      expect(String(events[0]!.action)).toContain('fetched back from peers by the next sync')
      expect(String(events[0]!.action)).toContain(copy)

      // Appends go on; the next start finds a whole file and says nothing.
      await log.append(rec(100))
      await log.close()
      const { log: again, events: later } = await openWithEvents(path)
      expect(later).toEqual([])
      expect(again.recovery).toBeUndefined()
      expectRecords(await again.records(), [...kept.map((i) => rec(i)), rec(100)])
      await again.close()
      expect(damagedCopies(path)).toEqual(copies)
    },
  )

  it('a second repair keeps the first damaged copy and makes another', async () => {
    const path = freshPath()
    await writeRecords(path, N)
    const first = readFileSync(path)
    flipBit(first, payloadMiddle(3), 0x01)
    writeFileSync(path, first)
    await (await openRecordLog(path, { log: () => {} })).close()
    // Frame 4 now sits where frame 5 was before the repair: damage the new frame 4.
    const second = readFileSync(path)
    const shift = sizes[3]!
    flipBit(second, payloadMiddle(5) - shift, 0x01)
    writeFileSync(path, second)
    const { log, events } = await openWithEvents(path)
    expect(damagedCopies(path)).toEqual([`${basename(path)}.damaged-1`, `${basename(path)}.damaged-2`])
    expect(readFileSync(`${path}.damaged-1`).equals(first)).toBe(true)
    expect(readFileSync(`${path}.damaged-2`).equals(second)).toBe(true)
    expect(events).toMatchObject([{ event: 'record-log-repaired', damagedCopy: `${path}.damaged-2` }])
    expectRecords(
      await log.records(),
      Array.from({ length: N }, (_, i) => i)
        .filter((i) => i !== 3 && i !== 5)
        .map((i) => rec(i)),
    )
    await log.close()
  })

  it('damage before a torn tail: the damage is repaired, the tail cut, both counted', async () => {
    const path = freshPath()
    await writeRecords(path, N)
    const bytes = readFileSync(path)
    flipBit(bytes, payloadMiddle(2), 0x20)
    const noise = Buffer.from('half a frame and then the power went')
    writeFileSync(path, Buffer.concat([bytes, noise]))
    const { log, events } = await openWithEvents(path)
    expect(log.count()).toBe(N - 1)
    expect(log.recovery).toMatchObject({ framesLost: 1, bytesSkipped: 0, tailBytes: noise.length })
    expect(events).toMatchObject([{ event: 'record-log-repaired', framesLost: 1, tailBytes: noise.length }])
    await log.close()
  })

  it('property: a random corruption of one frame (not the last) loses at most that frame', async () => {
    const corruption = fc.oneof(
      fc.record({ kind: fc.constant('bit' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
      fc.record({
        kind: fc.constant('bytes' as const),
        at: fc.nat(),
        with: fc.uint8Array({ minLength: 1, maxLength: 24 }),
      }),
      fc.record({
        kind: fc.constant('zero' as const),
        at: fc.nat(),
        length: fc.integer({ min: 1, max: 64 }),
      }),
    )
    await fc.assert(
      fc.asyncProperty(
        // Small records too, so that a damaged length often lands on a later frame boundary.
        fc.array(
          fc.oneof(
            fc.uint8Array({ minLength: 1, maxLength: 24 }),
            fc.uint8Array({ minLength: 1, maxLength: 300 }),
          ),
          { minLength: 2, maxLength: 40 },
        ),
        fc.nat(),
        corruption,
        async (records, pick, damage) => {
          const bytes = logFile(records)
          const victim = pick % (records.length - 1)
          const from = frameStarts(records.map((r) => 8 + r.length))[victim]!
          const frameBytes = 8 + records[victim]!.length
          // Every change stays inside the victim frame.
          const at = from + (damage.at % frameBytes)
          const room = from + frameBytes - at
          if (damage.kind === 'bit') bytes[at] = bytes[at]! ^ (1 << damage.bit)
          else if (damage.kind === 'bytes') bytes.set(damage.with.subarray(0, room), at)
          else bytes.fill(0, at, at + Math.min(damage.length, room))
          const path = freshPath()
          mkdirSync(dirname(path), { recursive: true })
          writeFileSync(path, bytes)

          const log = await openRecordLog(path, { log: () => {} })
          try {
            const kept = await log.records()
            const others = records.filter((_, i) => i !== victim)
            if (kept.length === records.length) expectRecords(kept, records)
            else expectRecords(kept, others)
            if (log.recovery !== undefined) expect(damagedCopies(path)).toHaveLength(1)
          } finally {
            await log.close()
            rmSync(dirname(path), { recursive: true, force: true })
          }
        },
      ),
      { numRuns: 300 },
    )
  }, 120_000)
})

describe('record log lock', () => {
  const root = fileURLToPath(new URL('../../..', import.meta.url))
  const script = fileURLToPath(new URL('../../support/record-log-writer.ts', import.meta.url))

  /** Opens the log from another process (record-log-writer.ts --probe) and returns what it printed. */
  function probe(path: string): { ok: boolean; code?: string; message?: string; count?: number } {
    const out = execFileSync(process.execPath, ['--import', 'tsx', script, '--probe', path], {
      cwd: root,
      encoding: 'utf8',
      timeout: 60_000,
    })
    return JSON.parse(out.trim()) as { ok: boolean; code?: string; message?: string }
  }

  /** Starts a writer process and resolves once it has acknowledged its first append. */
  function startWriter(path: string): Promise<ChildProcess> {
    return new Promise((resolveStart, rejectStart) => {
      const child = spawn(process.execPath, ['--import', 'tsx', script, path, '1'], {
        cwd: root,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let stderr = ''
      const guard = setTimeout(() => child.kill('SIGKILL'), 60_000)
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk
      })
      child.stdout.setEncoding('utf8').on('data', () => {
        clearTimeout(guard)
        resolveStart(child)
      })
      child.on('error', rejectStart)
      child.on('close', (code) =>
        rejectStart(new Error(`writer ended (${code}) before its first append: ${stderr}`)),
      )
    })
  }

  const exited = (child: ChildProcess) =>
    new Promise<void>((r) => {
      if (child.exitCode !== null || child.signalCode !== null) r()
      else child.once('close', () => r())
    })

  const lockOf = (path: string) => JSON.parse(readFileSync(`${path}.lock`, 'utf8')) as { pid: number }

  it('a second process is refused with record-log-locked, naming the pid, until the owner closes', async () => {
    const path = freshPath()
    const log = await openRecordLog(path, { log: () => {} })
    await log.append(rec(1))
    expect(lockOf(path).pid).toBe(process.pid)
    const refused = probe(path)
    expect(refused).toMatchObject({ ok: false, code: 'record-log-locked' })
    expect(refused.message).toContain(`process ${process.pid}`)
    expect(refused.message).toContain(`${path}.lock`)
    expect(refused.message).toContain('Stop that process first')
    await log.close()
    expect(existsSync(`${path}.lock`)).toBe(false)
    expect(probe(path)).toEqual({ ok: true, count: 1 })
  }, 120_000)

  it('the lock of a writer killed with SIGKILL is taken over at once', async () => {
    const path = freshPath()
    const writer = await startWriter(path)
    try {
      const held = await rejection(openRecordLog(path, { log: () => {} }))
      expect(held.code).toBe('record-log-locked')
      expect(held.message).toContain(`process ${writer.pid}`)
    } finally {
      writer.kill('SIGKILL')
      await exited(writer)
    }
    const { log, events } = await openWithEvents(path)
    expect(log.count()).toBeGreaterThan(0)
    expect(events.filter((e) => e.event === 'record-log-lock-taken-over')).toMatchObject([
      { path, lock: `${path}.lock`, previousOwner: { pid: writer.pid } },
    ])
    expect(lockOf(path).pid).toBe(process.pid)
    await log.close()
    expect(existsSync(`${path}.lock`)).toBe(false)
  }, 120_000)

  const linux = existsSync('/proc/self/stat') && existsSync('/proc/sys/kernel/random/boot_id')
  const ourStart = () => {
    const stat = readFileSync('/proc/self/stat', 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!
  }
  const bootId = () => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()

  it('a lock of a process that has exited, or that is unreadable, is taken over', async () => {
    const gone = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
    await exited(gone)
    for (const content of [`${JSON.stringify({ pid: gone.pid })}\n`, '', 'not json']) {
      const path = freshPath()
      await (await openRecordLog(path, { log: () => {} })).close()
      writeFileSync(`${path}.lock`, content)
      const { log, events } = await openWithEvents(path)
      expect(events).toMatchObject([{ event: 'record-log-lock-taken-over' }])
      await log.close()
    }
  })

  it.runIf(linux)(
    'Linux: a lock from another boot, or of a pid now held by another process, is taken over',
    async () => {
      const otherStart = String(Number(ourStart()) + 1)
      const stale = [
        { pid: process.ppid, boot: 'a-boot-before-this-one' },
        { pid: process.ppid, boot: bootId(), start: '1' },
        { pid: process.pid, boot: bootId(), start: otherStart }, // our pid, before a container restart
      ]
      for (const owner of stale) {
        const path = freshPath()
        await (await openRecordLog(path, { log: () => {} })).close()
        writeFileSync(`${path}.lock`, JSON.stringify(owner))
        const { log, events } = await openWithEvents(path)
        expect(events).toMatchObject([{ event: 'record-log-lock-taken-over', previousOwner: owner }])
        await log.close()
      }
    },
  )

  it('one file is one log whatever the path: a second open through a symbolic link is refused', async () => {
    const path = freshPath()
    const log = await openRecordLog(path, { log: () => {} })
    const alias = join(dir, `alias-${n++}`)
    symlinkSync(dirname(path), alias)
    const error = await rejection(
      openRecordLog(join(alias, '..', basename(alias), basename(path)), { log: () => {} }),
    )
    expect(error.code).toBe('record-log-busy')
    await log.close()
    await (await openRecordLog(join(alias, basename(path)), { log: () => {} })).close()
  })

  it('a lock of a live process is never taken over, and a failed open releases its own lock', async () => {
    const path = freshPath()
    await (await openRecordLog(path, { log: () => {} })).close()
    const live = JSON.stringify({ pid: process.ppid })
    writeFileSync(`${path}.lock`, live)
    const error = await rejection(openRecordLog(path, { log: () => {} }))
    expect(error.code).toBe('record-log-locked')
    expect(error.message).toContain(`process ${process.ppid}`)
    expect(readFileSync(`${path}.lock`, 'utf8')).toBe(live)

    const foreign = freshPath()
    mkdirSync(dirname(foreign), { recursive: true })
    writeFileSync(foreign, 'not a record log')
    expect((await rejection(openRecordLog(foreign, { log: () => {} }))).code).toBe('record-log-format')
    expect(existsSync(`${foreign}.lock`)).toBe(false)
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
  const root = fileURLToPath(new URL('../../..', import.meta.url))
  const script = fileURLToPath(new URL('../../support/record-log-writer.ts', import.meta.url))
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
