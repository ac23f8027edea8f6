/**
 * Sync framing (node/sync/frames.ts): frames survive any chunking, an
 * announced length above the limit is refused before its payload is waited
 * for, and the library's errors arrive as SyncErrors while the transport's
 * own errors pass through.
 */
import fc from 'fast-check'
import { Uint8ArrayList } from 'uint8arraylist'
import { describe, expect, it } from 'vitest'
import { isSyncError, type SyncErrorCode } from '../../node/sync/errors.js'
import { decodeFrames, encodeFrame, MAX_FRAME_BYTES } from '../../node/sync/frames.js'

async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for await (const frame of source) out.push(frame)
  return out
}

async function codeOf(p: Promise<unknown>): Promise<SyncErrorCode | 'ok'> {
  try {
    await p
    return 'ok'
  } catch (e) {
    if (isSyncError(e)) return e.code
    throw e
  }
}

/** Cuts `bytes` into chunks at the given positions. */
function chunked(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
  const out: Uint8Array[] = []
  let prev = 0
  for (const p of [...points, bytes.length]) {
    out.push(bytes.subarray(prev, p))
    prev = p
  }
  return out
}

describe('frames', () => {
  it('round-trips any payloads under any chunking, as Uint8Array or Uint8ArrayList chunks', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.boolean(),
        async (payloads, cuts, asLists) => {
          const wire = new Uint8ArrayList(
            ...payloads.map((p) => encodeFrame(p, { maxFrameBytes: 1000 })),
          ).subarray()
          const chunks = chunked(wire, cuts)
          async function* source() {
            for (const c of chunks) yield asLists ? new Uint8ArrayList(c) : c
          }
          const frames = await collect(decodeFrames(source(), { maxFrameBytes: 1000 }))
          expect(frames.map((f) => [...f])).toEqual(payloads.map((p) => [...p]))
        },
      ),
    )
  })

  it('accepts a synchronous iterable of chunks', async () => {
    const wire = encodeFrame(Uint8Array.of(1, 2, 3)).subarray()
    expect(await collect(decodeFrames([wire]))).toEqual([Uint8Array.of(1, 2, 3)])
  })

  it('refuses an announced length above the limit before the payload arrives', async () => {
    let pulledPayload = false
    async function* source() {
      yield Uint8Array.of(0x80, 0x80, 0x40) // varint 1 MiB, the payload never comes
      pulledPayload = true
      yield new Uint8Array(1024)
    }
    expect(await codeOf(collect(decodeFrames(source(), { maxFrameBytes: 64 * 1024 })))).toBe('sync-oversize')
    expect(pulledPayload).toBe(false)
  })

  it('refuses a length prefix longer than the limit can need', async () => {
    const prefix = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
    expect(await codeOf(collect(decodeFrames([prefix], { maxFrameBytes: 1000 })))).toBe('sync-oversize')
  })

  it('takes a frame of exactly the limit and refuses one byte more', async () => {
    const limit = { maxFrameBytes: 100 }
    const exact = encodeFrame(new Uint8Array(100), limit).subarray()
    expect((await collect(decodeFrames([exact], limit)))[0]!.length).toBe(100)
    expect(() => encodeFrame(new Uint8Array(101), limit)).toThrow(
      expect.objectContaining({ code: 'sync-oversize' }),
    )
    const over = Uint8Array.of(101, ...new Array(101).fill(0))
    expect(await codeOf(collect(decodeFrames([over], limit)))).toBe('sync-oversize')
  })

  it('reports a stream that ends inside a frame as sync-malformed', async () => {
    const wire = encodeFrame(new Uint8Array(10)).subarray()
    expect(await codeOf(collect(decodeFrames([wire.subarray(0, 5)])))).toBe('sync-malformed')
    expect(await codeOf(collect(decodeFrames([Uint8Array.of(0x80)])))).toBe('sync-malformed')
  })

  it('lets the transport’s own errors through unchanged', async () => {
    const reset = new Error('stream reset')
    async function* source() {
      yield encodeFrame(Uint8Array.of(7)).subarray()
      throw reset
    }
    await expect(collect(decodeFrames(source()))).rejects.toBe(reset)
  })

  it('defaults to a limit that holds the largest list block, and refuses a nonsensical one', async () => {
    expect(MAX_FRAME_BYTES).toBeGreaterThan(1024 * 1024)
    await expect(collect(decodeFrames([], { maxFrameBytes: 0 }))).rejects.toThrow(RangeError)
  })
})
