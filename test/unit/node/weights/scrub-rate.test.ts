/**
 * The scrub's token bucket (node/weights/scrub-rate.ts) on a fake clock: bytes taken over a span
 * never exceed the rate times the span plus the bucket's one second and one block; a rate of 0
 * pauses until it is set again; a rate changed mid-way applies from the next take; an abort ends
 * a wait.
 */
import { describe, expect, it } from 'vitest'
import { type RateClock, TokenBucket } from '../../../../node/weights/scrub-rate.js'

const MiB = 1024 * 1024

/** A clock whose sleeps move it forward at once; the waits are recorded. */
function fakeRateClock(): RateClock & { waits: number[]; at: number } {
  const clock = {
    at: 0,
    waits: [] as number[],
    now: () => clock.at,
    async sleep(ms: number, signal: AbortSignal) {
      signal.throwIfAborted()
      clock.waits.push(ms)
      clock.at += ms
    },
  }
  return clock
}

describe('the scrub token bucket', () => {
  it('keeps a stream of 1 MiB blocks within rate × time + one second + one block', async () => {
    const clock = fakeRateClock()
    const rate = 8 * MiB
    const bucket = new TokenBucket(() => rate, clock)
    const signal = new AbortController().signal
    let taken = 0
    for (let i = 0; i < 200; i++) {
      await bucket.take(MiB, signal)
      taken += MiB
      // At any moment: what was taken ≤ rate × elapsed + the bucket (1 s) + the block just taken.
      expect(taken).toBeLessThanOrEqual((rate * clock.at) / 1000 + rate + MiB)
    }
    // 200 MiB at 8 MiB/s: the first 8 MiB (the full bucket) at once, the rest paced.
    expect(clock.at).toBeGreaterThanOrEqual(((200 - 8 - 1) * 1000) / 8)
    expect(clock.at).toBeLessThanOrEqual((200 * 1000) / 8 + 1)
  })

  it('lets a block larger than the bucket through, then makes the next wait for its bytes', async () => {
    const clock = fakeRateClock()
    const bucket = new TokenBucket(() => MiB, clock)
    const signal = new AbortController().signal
    await bucket.take(3 * MiB, signal)
    expect(clock.at).toBe(0)
    await bucket.take(1, signal)
    // 1 MiB in the bucket paid for the first of 3 MiB; 2 MiB at 1 MiB/s is 2 s.
    expect(clock.at).toBe(2000)
  })

  it('pauses while the rate is 0 and goes on at once when it is set again', async () => {
    const clock = fakeRateClock()
    let rate = 0
    const bucket = new TokenBucket(() => rate, clock)
    expect(bucket.paused).toBe(true)
    const signal = new AbortController().signal
    const wake = clock.sleep
    clock.sleep = async (ms, s) => {
      await wake(ms, s)
      // Set again after three seconds of pause.
      if (clock.at >= 3000) rate = 4 * MiB
    }
    await bucket.take(MiB, signal)
    expect(clock.waits).toEqual([1000, 1000, 1000])
    expect(bucket.paused).toBe(false)
  })

  it('applies a changed rate from the next take', async () => {
    const clock = fakeRateClock()
    let rate = MiB
    const bucket = new TokenBucket(() => rate, clock)
    const signal = new AbortController().signal
    await bucket.take(MiB, signal)
    await bucket.take(MiB, signal)
    expect(clock.at).toBe(0)
    rate = 4 * MiB
    await bucket.take(MiB, signal)
    // 1 MiB owed at 4 MiB/s.
    expect(clock.at).toBe(250)
  })

  it('ends a wait when aborted', async () => {
    const clock = fakeRateClock()
    const bucket = new TokenBucket(() => MiB, clock)
    const abort = new AbortController()
    await bucket.take(2 * MiB, abort.signal)
    abort.abort(new Error('stopped'))
    await expect(bucket.take(MiB, abort.signal)).rejects.toThrow('stopped')
  })
})
