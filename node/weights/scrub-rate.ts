/**
 * The scrub's rate limit (docs/adr/0031-scrubbing-and-clean-up.md): a token bucket of bytes,
 * filled at `scrubBytesPerSecond`, holding at most one second of them. A block's bytes are taken
 * before it is read; when the bucket is empty, the scrub waits until it has refilled. So over any
 * span of T seconds the scrub reads at most rate × T, plus the bucket's one second, plus one
 * block.
 *
 * The rate is read at every take, so a changed setting applies from the next block; 0 stops the
 * scrub until it is set again (the caller checks `paused`). The clock and the wait are passed in,
 * so tests run it on a fake clock.
 */

export interface RateClock {
  /** Milliseconds, monotonic. */
  now(): number
  /** Resolves after `ms`, or rejects when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>
}

export class TokenBucket {
  private tokens: number
  private last: number

  constructor(
    private readonly rate: () => number,
    private readonly clock: RateClock,
  ) {
    // Starts full: the first second's bytes go at once, as after any pause.
    this.tokens = Math.max(0, rate())
    this.last = clock.now()
  }

  /** Whether scrubbing is off (a rate of 0). */
  get paused(): boolean {
    return this.rate() <= 0
  }

  /** Waits until `bytes` may be read at the rate, then takes them. */
  async take(bytes: number, signal: AbortSignal): Promise<void> {
    this.refill()
    while (this.tokens < 0 || this.paused) {
      signal.throwIfAborted()
      const rate = this.rate()
      // Paused: look again in a second (a live change of the setting ends the pause).
      const waitMs = rate <= 0 ? 1000 : Math.ceil((-this.tokens * 1000) / rate)
      await this.clock.sleep(Math.max(1, waitMs), signal)
      this.refill()
    }
    // Taken even when it drives the bucket below zero: a block larger than the bucket still goes,
    // and the next one waits until its bytes are paid for.
    this.tokens -= bytes
  }

  private refill(): void {
    const now = this.clock.now()
    const rate = Math.max(0, this.rate())
    this.tokens = Math.min(rate, this.tokens + ((now - this.last) * rate) / 1000)
    this.last = now
  }
}

/** The real clock: `performance.now()` and a timer (the node's stop signal ends a wait). */
export const realRateClock: RateClock = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(done, ms)
      function done() {
        signal.removeEventListener('abort', abort)
        resolve()
      }
      function abort() {
        clearTimeout(timer)
        reject(signal.reason)
      }
      signal.addEventListener('abort', abort, { once: true })
    }),
}
