/**
 * Hashing blocks and files' bytes on a worker thread (node/weights/leaf-hasher.ts and
 * leaf-hash-worker.ts): each block's sha256; each file's sha256 over the blocks given to it, in
 * order, interleaved with other files and with blocks of no file; blocks larger than a 1 MiB slot
 * (posted as copies); more blocks in flight than slots; the caller's bytes free to reuse as soon as
 * `block()` returns; and `stop()`, which refuses answers still due and every later call. Every
 * hasher made here is stopped (each owns a worker thread).
 */
import { createHash } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { LeafHasher } from '../../../../node/weights/leaf-hasher.js'
import { seededBytes } from '../../../support/prng.js'

const MiB = 1024 * 1024

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex')
const sha256 = (...parts: Uint8Array[]) => {
  const h = createHash('sha256')
  for (const p of parts) h.update(p)
  return h.digest('hex')
}

describe('LeafHasher', () => {
  const started: LeafHasher[] = []
  const hasher = (slots: number) => {
    const h = new LeafHasher(slots)
    started.push(h)
    return h
  }
  afterEach(async () => {
    for (const h of started.splice(0)) await h.stop()
  })

  it('gives each block its sha256, whatever its size (empty, small, a whole slot, larger)', async () => {
    const h = hasher(2)
    const sizes = [0, 1, 4095, MiB - 1, MiB, MiB + 1, 3 * MiB + 7]
    for (const [i, size] of sizes.entries()) {
      const bytes = seededBytes(size, i + 1)
      expect(hex(await h.block(bytes)), `${size} bytes`).toBe(sha256(bytes))
    }
  })

  it('gives a file the sha256 of the blocks given to it, in order, beside other files and loose blocks', async () => {
    const h = hasher(4)
    // Leaves of mixed sizes: some fit a slot, some are larger and are posted as copies.
    const aParts = [
      seededBytes(MiB, 11),
      seededBytes(2 * MiB + 3, 12),
      seededBytes(MiB, 13),
      seededBytes(17, 14),
    ]
    const bParts = [seededBytes(MiB, 21), seededBytes(5, 22)]
    const loose = seededBytes(MiB, 31)
    const a = h.openFile()
    const b = h.openFile()
    expect(a).not.toBe(b)
    const blocks = [
      h.block(aParts[0]!, a),
      h.block(bParts[0]!, b),
      h.block(loose),
      h.block(aParts[1]!, a),
      h.block(aParts[2]!, a),
      h.block(bParts[1]!, b),
      h.block(aParts[3]!, a),
    ]
    // Closed before the blocks' answers are awaited: the worker answers in order.
    const aDigest = h.closeFile(a)
    const bDigest = h.closeFile(b)
    const digests = await Promise.all(blocks)
    expect(digests.map(hex)).toEqual(
      [aParts[0]!, bParts[0]!, loose, aParts[1]!, aParts[2]!, bParts[1]!, aParts[3]!].map((x) => sha256(x)),
    )
    expect(hex(await aDigest)).toBe(sha256(...aParts))
    expect(hex(await bDigest)).toBe(sha256(...bParts))
  })

  it('gives a file with no blocks the sha256 of nothing, and ids of files are distinct', async () => {
    const h = hasher(1)
    const f = h.openFile()
    expect(hex(await h.closeFile(f))).toBe(sha256())
    const g = h.openFile()
    expect(g).not.toBe(f)
    const part = seededBytes(100, 5)
    await h.block(part, g)
    expect(hex(await h.closeFile(g))).toBe(sha256(part))
  })

  it('handles more blocks in flight than slots, each answer the right one', async () => {
    const h = hasher(2)
    const file = h.openFile()
    const parts = Array.from({ length: 24 }, (_, i) => seededBytes(i % 3 === 2 ? MiB + 1 : MiB, 100 + i))
    const answers = parts.map((p) => h.block(p, file))
    const whole = h.closeFile(file)
    expect((await Promise.all(answers)).map(hex)).toEqual(parts.map((p) => sha256(p)))
    expect(hex(await whole)).toBe(sha256(...parts))
    // The slots are free again afterwards: another round in flight at once.
    const again = parts.slice(0, 6).map((p) => h.block(p))
    expect((await Promise.all(again)).map(hex)).toEqual(parts.slice(0, 6).map((p) => sha256(p)))
  })

  it('takes its own copy: the caller may reuse its buffer as soon as block() returns', async () => {
    const h = hasher(2)
    const file = h.openFile()
    const expected: string[] = []
    const whole = createHash('sha256')
    const answers: Promise<Uint8Array>[] = []
    // One buffer for a slot-sized block and one larger than a slot, each overwritten after use.
    for (const size of [MiB, 2 * MiB]) {
      const buffer = new Uint8Array(size)
      for (let i = 0; i < 4; i++) {
        buffer.set(seededBytes(size, 200 + i + size))
        expected.push(sha256(buffer))
        whole.update(buffer)
        answers.push(h.block(buffer, file))
        buffer.fill(0xee) // before the worker has answered
      }
    }
    const closing = h.closeFile(file)
    expect((await Promise.all(answers)).map(hex)).toEqual(expected)
    expect(hex(await closing)).toBe(whole.digest('hex'))
  })

  it('stop() refuses the answers still due and every later call', async () => {
    const h = hasher(2)
    const file = h.openFile()
    const parts = Array.from({ length: 32 }, (_, i) => seededBytes(MiB, 300 + i))
    const due = parts.map((p) => h.block(p, file))
    const closing = h.closeFile(file)
    // Observed before stopping, so that no refusal goes unhandled meanwhile.
    const outcomes = Promise.allSettled([...due, closing])
    await h.stop()
    const settled = await outcomes
    // Any answer that came before the worker ended is right; the rest are refused, none hangs.
    const refused = settled.filter((s) => s.status === 'rejected')
    expect(refused.length).toBeGreaterThan(0)
    for (const s of refused) expect(String((s as PromiseRejectedResult).reason)).toMatch(/stopped/)
    for (const [i, s] of settled.slice(0, parts.length).entries())
      if (s.status === 'fulfilled') expect(hex(s.value)).toBe(sha256(parts[i]!))
    const closed = settled.at(-1)!
    if (closed.status === 'fulfilled') expect(hex(closed.value)).toBe(sha256(...parts))

    await expect(h.block(seededBytes(10, 1))).rejects.toThrow(/stopped/)
    await expect(h.block(seededBytes(2 * MiB, 1))).rejects.toThrow(/stopped/)
    await expect(h.closeFile(h.openFile())).rejects.toThrow(/stopped/)
    // Stopping again is harmless.
    await h.stop()
  })

  it('stop() with nothing due ends the worker; later calls are refused', async () => {
    const h = hasher(1)
    expect(hex(await h.block(seededBytes(3, 3)))).toBe(sha256(seededBytes(3, 3)))
    await h.stop()
    await expect(h.block(seededBytes(3, 3))).rejects.toThrow(/stopped/)
  })
})
