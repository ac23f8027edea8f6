/**
 * A budget of failed signature checks per client address, for the HTTP routes that check
 * signatures a stranger sends (`POST /records`, `POST /weights`, `POST /holdings/bindings`).
 *
 * Why: a signature OpenSSL refuses goes to the ZIP-215 reference, some thirty times slower, so a
 * stranger's forged signatures would make the node do the slow check every time; an honest client
 * never sends one (docs/adr/0019, with the measurement).
 *
 * A token bucket per address: `burst` failures at once, `perSecond` more each second. While an
 * address has no token left, its requests to those routes are answered 429 before any signature
 * is checked. At most `maxAddresses` buckets are kept; past that the one touched longest ago is
 * forgotten (forgetting only ever gives an address its budget back).
 */

export interface AuthThrottleOptions {
  /** Failures an address may have at once (default 20). */
  readonly burst?: number
  /** Failures an address earns back each second (default 10). */
  readonly perSecond?: number
  /** Addresses remembered (default 10,000). */
  readonly maxAddresses?: number
  readonly clock?: () => number
}

export interface AuthThrottle {
  /** Whether a request from `key` may have its signatures checked now. */
  allows(key: string): boolean
  /** A signature from `key` did not verify. */
  failed(key: string): void
  /** Addresses currently remembered (tests). */
  size(): number
}

interface Bucket {
  tokens: number
  at: number
}

export function createAuthThrottle(options: AuthThrottleOptions = {}): AuthThrottle {
  const burst = options.burst ?? 20
  const perSecond = options.perSecond ?? 10
  const maxAddresses = options.maxAddresses ?? 10_000
  const clock = options.clock ?? Date.now
  // Insertion-ordered: a bucket is moved to the end whenever it is touched.
  const buckets = new Map<string, Bucket>()

  /** The bucket of `key` with its tokens brought up to now, or undefined when it is full. */
  const current = (key: string): Bucket | undefined => {
    const b = buckets.get(key)
    if (!b) return undefined
    const now = clock()
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * perSecond)
    b.at = now
    if (b.tokens >= burst) {
      buckets.delete(key)
      return undefined
    }
    return b
  }

  return {
    allows(key) {
      const b = current(key)
      return b === undefined || b.tokens >= 1
    },
    failed(key) {
      const b = current(key) ?? { tokens: burst, at: clock() }
      b.tokens = Math.max(0, b.tokens - 1)
      buckets.delete(key)
      buckets.set(key, b)
      if (buckets.size > maxAddresses) buckets.delete(buckets.keys().next().value!)
    },
    size: () => buckets.size,
  }
}
