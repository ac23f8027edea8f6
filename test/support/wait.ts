/**
 * Bounded polling for tests: wait until a condition holds, never sleep a
 * fixed time (STYLE.md 13). Fails with the last error or a plain timeout.
 */
export interface WaitForOptions {
  /** Give up after this many ms. Default 5,000. */
  timeout?: number
  /** Poll every this many ms. Default 25. */
  interval?: number
  /** Names the condition in the timeout error. */
  message?: string
}

/**
 * Calls `fn` until it returns a truthy value (which is returned) or the
 * timeout passes. A throw from `fn` counts as "not yet"; the last one is
 * reported as the cause of the timeout error.
 */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const timeout = options.timeout ?? 5_000
  const interval = options.interval ?? 25
  const deadline = Date.now() + timeout
  let lastError: unknown
  for (;;) {
    try {
      const value = await fn()
      if (value) return value as NonNullable<T>
      lastError = undefined
    } catch (err) {
      lastError = err
    }
    if (Date.now() >= deadline) {
      const what = options.message ?? 'condition'
      throw new Error(`waitFor: ${what} not met within ${timeout} ms`, { cause: lastError })
    }
    await new Promise((resolve) => setTimeout(resolve, interval))
  }
}
