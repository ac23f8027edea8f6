/**
 * What the benchmarks that time records across several real nodes (bench/propagation.ts,
 * bench/abuse.ts) share: small statistics and waiting helpers, the honest records they submit,
 * `POST /records`, a hook on each node's fold that tells when the last node holds a record, and
 * the wait for an attacker process's next message.
 */
import type { ChildProcess } from 'node:child_process'
import { loadavg } from 'node:os'
import type { AllmendeNode } from '../node/node.js'
import { type AnyVerified, cidKey } from '../protocol/index.js'
import type { SimMember, Simulator } from '../test/support/simulator.js'

/** Nearest-rank percentile. */
export function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.max(0, Math.ceil(p * s.length) - 1)] ?? Number.NaN
}

export const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : String(x))
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
export const load = () =>
  `load ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`

export async function until(fn: () => boolean, what: string, timeout: number, interval = 25): Promise<void> {
  const deadline = Date.now() + timeout
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`)
    await sleep(interval)
  }
}

/** Voters enough that a batch never passes the ingest limit of 10 votes per voter and proposal. */
export const VOTERS = 40

/** A publisher-steward and VOTERS voters; `extra` members go in between (more stewards). */
export function benchMembers(extra: readonly SimMember[] = []): SimMember[] {
  return [
    { name: 'a', roles: ['publisher', 'steward', 'voter'], weight: 1 },
    ...extra,
    ...Array.from({ length: VOTERS }, (_, i) => ({ name: `v${i}`, roles: ['voter' as const], weight: 1 })),
  ]
}

export class Records {
  private n = 0
  constructor(readonly sim: Simulator) {}

  /** A manifest and a proposal to vote on (`setup`), then `count` records alternating manifests and votes. */
  batch(count: number): { setup: AnyVerified[]; measured: AnyVerified[] } {
    const tag = this.n++
    const anchor = this.sim.manifest('a', tag * 10_000, {
      id: `anchor-${tag}`,
      name: 'anchor',
      version: `${tag}.0.0`,
    })
    const p = this.sim.proposal('a', tag * 10_000 + 1, {
      closesAt: 24 * 3_600_000,
      action: { type: 'ratify-model', manifest: anchor.cid },
      basis: this.sim.federation,
    })
    const measured: AnyVerified[] = []
    for (let i = 0; i < count; i++) {
      const at = tag * 10_000 + 2 + i
      measured.push(
        i % 2 === 0
          ? this.sim.manifest('a', at, { id: `m-${tag}-${i}`, name: `model-${tag}`, version: `1.0.${i}` })
          : this.sim.vote(`v${(i >> 1) % VOTERS}`, at, {
              proposal: p.cid,
              choice: i % 3 === 0 ? 'no' : 'yes',
            }),
      )
    }
    return { setup: [anchor, p], measured }
  }
}

/** `POST /records` of one record; the HTTP status. */
export async function post(node: AllmendeNode, r: AnyVerified): Promise<number> {
  const res = await fetch(`${node.apiUrl}/records`, {
    method: 'POST',
    headers: { 'content-type': 'application/cbor' },
    body: Buffer.from(r.bytes),
  })
  await res.arrayBuffer()
  return res.status
}

/**
 * Hooks each node's fold as it is added: the first add of a record is the moment that node holds
 * it (after its fsync). `arrival(r)` resolves with the time (performance.now) at which the last
 * of `total` nodes took `r`.
 */
export function arrivals(total: number) {
  const held = new Map<string, { count: number; last: number; done?: (t: number) => void }>()
  const entry = (key: string) => {
    let e = held.get(key)
    if (!e) held.set(key, (e = { count: 0, last: 0 }))
    return e
  }
  return {
    watch(node: AllmendeNode): void {
      const fold = node.store.fold
      const add = fold.add.bind(fold)
      fold.add = (r) => {
        const fresh = !fold.has(r.cid)
        const out = add(r)
        if (fresh && fold.has(r.cid)) {
          const e = entry(cidKey(r.cid))
          e.count++
          e.last = performance.now()
          if (e.count === total) e.done?.(e.last)
        }
        return out
      }
    },
    arrival(r: AnyVerified): Promise<number> {
      const e = entry(cidKey(r.cid))
      if (e.count === total) return Promise.resolve(e.last)
      return new Promise((resolve) => {
        e.done = resolve
      })
    },
  }
}

/**
 * The next message `child` sends whose `msg` is `what`; rejects if the child exits first or says
 * nothing of the kind within `timeoutMs`.
 */
export function nextMessage<T extends { msg: string }, M extends T['msg']>(
  child: ChildProcess,
  what: M,
  timeoutMs: number,
): Promise<Extract<T, { msg: M }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the child process did not answer '${what}'`)), timeoutMs)
    const onExit = (code: number | null) => reject(new Error(`the child process exited (${code})`))
    const onMessage = (m: T) => {
      if (m.msg !== what) return
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
      resolve(m as Extract<T, { msg: M }>)
    }
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}
