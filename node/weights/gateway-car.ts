/**
 * A gateway's CAR answer (gateway.ts): the depth-first walk of the DAG under a path's end, each
 * block sent once, read ahead of the socket, and written with backpressure from it.
 */
import type { ServerResponse } from 'node:http'
import { decode as decodeCbor } from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import { DAG_CBOR_CODE } from '../../protocol/cbor.js'
import { DAG_PB_CODE, IDENTITY_CODE } from '../../protocol/cid.js'
import { carHeader, sectionPrefix } from './car-sections.js'
import { type Part, readBlock, readServable, type Source, servable, unixfsOf } from './gateway-blocks.js'
import { WalkError } from './gateway-errors.js'
import { type ByteSpan, linksInSpan } from './gateway-range.js'
import type { DagScope } from './gateway-request.js'

/** dag-cbor map keys in their canonical order (length first, then bytes), as they were encoded. */
function cborKeyOrder(a: string, b: string): number {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length - y.length || Buffer.compare(x, y)
}

function cborLinks(value: unknown): CID[] {
  const out: CID[] = []
  const stack: unknown[] = [value]
  while (stack.length > 0) {
    const v = stack.pop()
    const cid = CID.asCID(v)
    if (cid) {
      out.push(cid)
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push(v[i])
    } else if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) {
      const o = v as Record<string, unknown>
      const keys = Object.keys(o).sort(cborKeyOrder)
      for (let i = keys.length - 1; i >= 0; i--) stack.push(o[keys[i]!])
    }
  }
  return out
}

interface Step {
  cid: CID
  scope: DagScope
  /** Only on the edges of an `entity-bytes` range: where this block's bytes begin in the file. */
  at?: number
}

/** A step's key in the set of those walked: a block on a range's edge is walked for its offset. */
function stepKey(step: Step): string {
  return step.at === undefined ? `${step.scope}:${step.cid}` : `${step.scope}:${step.cid}@${step.at}`
}

/** The links to follow from one block under a scope (and a range's `span`), in link order. */
function children(step: Step, bytes: Uint8Array, span: ByteSpan | undefined): Step[] {
  const { cid, scope } = step
  if (scope === 'block') return []
  try {
    if (cid.code === DAG_PB_CODE) {
      const node = dagPb.decode(bytes)
      const fs = unixfsOf(node)
      if (span !== undefined && step.at !== undefined && (fs?.type === 'file' || fs?.type === 'raw'))
        return linksInSpan(cid, node, fs, step.at, span).map((l) => ({ ...l, scope: 'all' }))
      if (scope === 'all') return node.Links.map((l) => ({ cid: l.Hash, scope: 'all' }))
      // entity: a file's blocks, or a sharded directory's shards (not its entries); nothing else.
      if (fs?.type === 'file' || fs?.type === 'raw')
        return node.Links.map((l) => ({ cid: l.Hash, scope: 'all' }))
      if (fs?.type === 'hamt-sharded-directory' && fs.fanout !== undefined && fs.fanout > 1n) {
        const pad = (fs.fanout - 1n).toString(16).length
        return node.Links.filter((l) => (l.Name ?? '').length === pad).map((l) => ({ cid: l.Hash, scope }))
      }
      return []
    }
    if (cid.code === DAG_CBOR_CODE && scope === 'all') {
      return cborLinks(decodeCbor(bytes)).map((c) => ({ cid: c, scope: 'all' }))
    }
  } catch (e) {
    if (e instanceof WalkError) throw e
    throw new WalkError(
      'block-invalid',
      cid,
      `block ${cid} does not decode as its codec: ${(e as Error).message}`,
    )
  }
  return []
}

/** Blocks read ahead of the one being sent (1 MiB leaves: a few MiB of memory per stream). */
export const READ_AHEAD = 8

export interface CarPlan {
  root: CID
  /** Blocks of the directories on the path, in path order (already read, pins checked). */
  pathBlocks: { cid: CID; bytes: Uint8Array }[]
  /** The CID at the end of the path and its bytes (pin checked). */
  terminal: { cid: CID; bytes: Uint8Array }
  scope: DagScope
  /** `entity-bytes` resolved against the terminal file: only the blocks that hold these bytes. */
  bytes?: ByteSpan
}

/** The walk's first step: the terminal, on the range's edge (at byte 0) when a range is asked. */
function firstStep(plan: CarPlan): Step {
  const step: Step = { cid: plan.terminal.cid, scope: plan.scope }
  return plan.bytes === undefined ? step : { ...step, at: 0 }
}

/**
 * The CAR body: header, the path's blocks, then the terminal DAG depth-first (under a range, only
 * the blocks that hold its bytes), each block once (`dups=n`; `dups=y` is only ever labelled so
 * for a DAG without repeats, where the two are the same stream). Throws `WalkError` at the first
 * block it cannot read, decode or may not send.
 */
export async function* carBody(source: Source, plan: CarPlan): AsyncGenerator<Part> {
  yield { bytes: carHeader([plan.root]) }
  const sent = new Set<string>()
  const expanded = new Set<string>()
  const send = function* (cid: CID, part: Part) {
    const key = cid.toString()
    if (cid.multihash.code === IDENTITY_CODE || sent.has(key)) {
      part.release?.()
      return
    }
    sent.add(key)
    yield { bytes: sectionPrefix(cid, part.bytes.byteLength) }
    if (part.bytes.byteLength > 0) yield part
    else part.release?.()
  }
  for (const b of plan.pathBlocks) yield* send(b.cid, { bytes: b.bytes })

  const stack: Step[] = [firstStep(plan)]
  let first: Part | null = { bytes: plan.terminal.bytes }
  // Read-ahead: the next blocks on the stack are read while this one is being sent, so the
  // socket never waits on the disk (at most READ_AHEAD blocks in memory).
  const reads = new Map<string, Promise<Part | 'not-held' | 'not-pinned'>>()
  const readAhead = () => {
    for (let i = stack.length - 1, n = 0; i >= 0 && n < READ_AHEAD; i--, n++) {
      const cid = stack[i]!.cid
      const k = cid.toString()
      if (reads.has(k) || sent.has(k)) continue
      const read = readServable(source, cid)
      read.catch(() => {}) // observed when it is its turn; never unhandled if the walk ends first
      reads.set(k, read)
    }
  }
  try {
    while (stack.length > 0) {
      const step = stack.pop()!
      const key = stepKey(step)
      // A block is sent once and its subtree walked once per scope (identity blocks too: they
      // are never sent, but walking one again would only find blocks already sent).
      if (expanded.has(key)) continue
      let got: Part | 'not-held' | 'not-pinned'
      if (first !== null) got = first
      else {
        const k = step.cid.toString()
        const pending = reads.get(k)
        reads.delete(k)
        readAhead()
        got = await (pending ?? readServable(source, step.cid))
      }
      first = null
      if (got === 'not-held')
        throw new WalkError('block-not-found', step.cid, `block ${step.cid} is not held here`)
      if (got === 'not-pinned')
        throw new WalkError('block-not-pinned', step.cid, `block ${step.cid} is not under a pinned root`)
      // Its links are taken before it is sent: once written, its buffer may be reused.
      let next: Step[]
      try {
        next = children(step, got.bytes, plan.bytes)
      } catch (e) {
        got.release?.()
        throw e
      }
      yield* send(step.cid, got)
      expanded.add(key)
      for (let i = next.length - 1; i >= 0; i--) stack.push(next[i]!)
      if (next.length > 0) readAhead()
    }
  } finally {
    // Reads ahead that were never sent give their buffers back.
    for (const read of reads.values())
      void read.then(
        (p) => (typeof p === 'object' ? p.release?.() : undefined),
        () => {},
      )
  }
}

/**
 * Whether a `dups=y` stream of `plan` would carry some block twice: the same walk as `carBody`'s,
 * stopping at the first CID met again. Only blocks whose links it follows are read (dag-pb and
 * dag-cbor nodes, a small part of the bytes); raw leaves are not. A block it cannot read or may
 * not send counts as a repeat: the answer is then `dups=n`, and the walk cuts the stream there.
 */
export async function repeatsBlocks(source: Source, plan: CarPlan): Promise<boolean> {
  const seen = new Set<string>(plan.pathBlocks.map((b) => b.cid.toString()))
  const stack: Step[] = [firstStep(plan)]
  let first: Uint8Array | null = plan.terminal.bytes
  while (stack.length > 0) {
    const step = stack.pop()!
    const key = step.cid.toString()
    if (seen.has(key)) return true
    seen.add(key)
    const linked = step.cid.code === DAG_PB_CODE || step.cid.code === DAG_CBOR_CODE
    if (!linked || step.scope === 'block') {
      first = null
      continue
    }
    let bytes = first
    first = null
    if (bytes === null) {
      if (!(await servable(source.pins, step.cid, source.signal))) return true
      bytes = await readBlock(source.store, step.cid, source.signal)
      if (bytes === null) return true
    }
    let next: Step[]
    try {
      next = children(step, bytes, plan.bytes)
    } catch (e) {
      if (e instanceof WalkError) return true
      throw e
    }
    for (let i = next.length - 1; i >= 0; i--) stack.push(next[i]!)
  }
  return false
}

/**
 * Writes a CAR body to the socket, each part's buffer given back once the socket has taken it;
 * waits for the socket to drain when it is full. A failing walk cuts the response (the client
 * sees a truncated CAR, as the spec asks) and is rethrown.
 */
export async function pump(res: ServerResponse, parts: AsyncIterable<Part>): Promise<void> {
  for await (const part of parts) {
    if (res.destroyed) {
      part.release?.()
      break
    }
    const release = part.release
    const room = res.write(part.bytes, release ? () => release() : undefined)
    if (!room && !res.destroyed)
      await new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done)
          res.off('close', done)
          resolve()
        }
        res.once('drain', done)
        res.once('close', done)
      })
  }
  if (!res.destroyed) res.end()
}
