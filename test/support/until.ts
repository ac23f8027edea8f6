/** Bounded polling: resolves when `fn` returns a truthy value, rejects after `timeout` ms. Never a fixed sleep. */
export async function until<T>(
  fn: () => T | Promise<T>,
  what: string,
  timeout = 15_000,
  interval = 25,
): Promise<T> {
  const deadline = Date.now() + timeout
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, interval))
  }
}
