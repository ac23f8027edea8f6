/**
 * What a gateway request asks for (specs.ipfs.tech http-gateways/trustless-gateway): the CID, the
 * format from `?format=` or `Accept`, the CAR's parameters and `dag-scope`, and the entity tags
 * an answer carries and `If-None-Match` may name.
 */
import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { GatewayError } from './gateway-errors.js'
import type { EntityBytes } from './gateway-range.js'
import { CAR_TYPE, RAW_TYPE } from './http-contract.js'

export type DagScope = 'all' | 'entity' | 'block'

const MAX_CID_TEXT = 256

export type Negotiated =
  | { format: 'raw'; viaAccept: boolean }
  | { format: 'car'; viaAccept: boolean; dups: 'n' | 'y' }

interface MediaRange {
  type: string
  params: Map<string, string>
  q: number
}

/** `Accept` as media ranges, best first (stable for equal q); q=0 entries dropped. */
export function parseAccept(header: string | undefined): MediaRange[] {
  if (!header) return []
  const out: MediaRange[] = []
  for (const part of header.split(',')) {
    const [type, ...rest] = part.split(';')
    const params = new Map<string, string>()
    let q = 1
    for (const p of rest) {
      const eq = p.indexOf('=')
      if (eq < 0) continue
      const key = p.slice(0, eq).trim().toLowerCase()
      const value = p
        .slice(eq + 1)
        .trim()
        .replace(/^"(.*)"$/, '$1')
      if (key === 'q') q = Number.isFinite(Number(value)) ? Number(value) : 0
      else params.set(key, value.toLowerCase())
    }
    const t = (type ?? '').trim().toLowerCase()
    if (t && q > 0) out.push({ type: t, params, q })
  }
  return out
    .map((m, i) => ({ m, i }))
    .sort((a, b) => b.m.q - a.m.q || a.i - b.i)
    .map(({ m }) => m)
}

/** CAR parameters we can honour, or null: version 1, order dfs (or unknown), dups n or y. */
function carParams(get: (key: string) => string | undefined): { dups: 'n' | 'y' } | null {
  const version = get('version')
  const order = get('order')
  const dups = get('dups')
  if (version !== undefined && version !== '1') return null
  if (order !== undefined && order !== 'dfs' && order !== 'unk') return null
  if (dups !== undefined && dups !== 'n' && dups !== 'y') return null
  return { dups: dups === 'y' ? 'y' : 'n' }
}

/** Query parameters only a CAR answer takes: with one of them, a wildcard `Accept` means a CAR. */
const CAR_ONLY_QUERY = ['dag-scope', 'entity-bytes', 'car-version', 'car-order', 'car-dups'] as const

function isWildcard(range: MediaRange): boolean {
  return range.type === '*/*' || range.type === 'application/*'
}

/**
 * What a wildcard `Accept` (`*\/*` is curl's, wget's and fetch's default) gets: a raw block for a
 * bare CID, the one format every trustless gateway serves and never more than one block; a CAR
 * where only a CAR answers (a path, or a CAR-only parameter). Content-Location names the choice.
 */
function wildcardDefault(query: Record<string, string | undefined>, hasPath: boolean): Negotiated {
  if (!hasPath && !CAR_ONLY_QUERY.some((k) => query[k] !== undefined))
    return { format: 'raw', viaAccept: true }
  const p = carParams((k) => query[`car-${k}`])
  if (!p) throw notAcceptable()
  return { format: 'car', viaAccept: true, ...p }
}

/**
 * The answer's format: `?format=` first (the spec's SHOULD), then `Accept` by q, where a raw or CAR
 * type beats a wildcard of equal q; no `Accept` at all is a 400 (the spec's SHOULD for a gateway
 * that serves nothing deserialized).
 */
export function negotiate(
  query: Record<string, string | undefined>,
  accept: string | undefined,
  hasPath = false,
): Negotiated {
  const ranges = parseAccept(accept)
  const fromAccept = ranges.find((r) => r.type === CAR_TYPE && carParams((k) => r.params.get(k)))
  const carQuery = (fallback: MediaRange | undefined) =>
    carParams((k) => query[`car-${k}`] ?? fallback?.params.get(k))

  const format = query.format
  if (format !== undefined) {
    if (format === 'raw') return { format: 'raw', viaAccept: false }
    if (format === 'car') {
      const p = carQuery(fromAccept)
      if (!p) throw notAcceptable()
      return { format: 'car', viaAccept: false, ...p }
    }
    throw new GatewayError(
      406,
      'not-acceptable',
      `format=${format.slice(0, 40)} is not served here: this trustless gateway serves format=raw and format=car`,
    )
  }
  const wildcard = ranges.find(isWildcard)
  for (const r of ranges) {
    if (wildcard !== undefined && r.q < wildcard.q) break
    if (r.type === RAW_TYPE) return { format: 'raw', viaAccept: true }
    if (r.type === CAR_TYPE) {
      const p = carQuery(r)
      if (p) return { format: 'car', viaAccept: true, ...p }
    }
  }
  if (wildcard !== undefined) return wildcardDefault(query, hasPath)
  if (ranges.length === 0) {
    throw new GatewayError(
      400,
      'format-required',
      `this is a trustless gateway: send Accept: ${RAW_TYPE} or ${CAR_TYPE}, or add ?format=raw or ?format=car`,
    )
  }
  throw notAcceptable()
}

function notAcceptable(): GatewayError {
  return new GatewayError(
    406,
    'not-acceptable',
    `this trustless gateway serves ${RAW_TYPE} (one block) and ${CAR_TYPE}; version=1; order=dfs; dups=n|y: send one of them (or */*) in Accept, or add ?format=raw or ?format=car`,
  )
}

export function parseCid(text: string): CID {
  if (text.length > MAX_CID_TEXT) throw new GatewayError(400, 'bad-cid', 'the CID is too long')
  try {
    return CID.parse(text)
  } catch (e) {
    throw new GatewayError(400, 'bad-cid', `not a CID: ${text.slice(0, 80)} (${(e as Error).message})`)
  }
}

/** `dag-scope`, or `fallback` when absent (`entity` under `entity-bytes`, which implies it; else `all`). */
export function parseScope(value: string | undefined, fallback: DagScope = 'all'): DagScope {
  if (value === undefined || value === 'all' || value === 'entity' || value === 'block')
    return value ?? fallback
  throw new GatewayError(
    400,
    'bad-dag-scope',
    `dag-scope must be all, entity or block, not ${value.slice(0, 40)}`,
  )
}

/** Query parameters, the first value of each repeated one. */
export function firstValues(query: unknown): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {}
  for (const [k, v] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    const first = Array.isArray(v) ? v[0] : v
    if (typeof first === 'string') out[k] = first
  }
  return out
}

export function rawEtag(cid: CID): string {
  return `"${cid}.raw"`
}

/** What shapes a CAR beyond its root: the path, the scope, and the `entity-bytes` range asked. */
export interface CarShape {
  readonly scope: DagScope
  readonly path: string[]
  readonly range?: EntityBytes | undefined
}

export function carEtag(cid: CID, dups: 'n' | 'y', shape: CarShape): string {
  const { scope, path, range } = shape
  const p =
    path.length > 0 ? `.${createHash('sha256').update(path.join('/')).digest('hex').slice(0, 16)}` : ''
  // The range as parsed, so 0:* and 00:* share a tag, and a tag differs from the unranged one's.
  const r = range === undefined ? '' : `.bytes.${range.from}_${range.to === '*' ? 'end' : range.to}`
  // The stream is deterministic (dfs, one traversal), so the tag is strong.
  return `"${cid}.car.${scope}.dfs.${dups}${p}${r}"`
}

/**
 * The tags this URL's response may carry. A `dups=y` request is answered with `dups=n` for a DAG
 * that repeats blocks, which is known only after a walk; the content never changes, so a client
 * holding either tag for this URL holds what it would get again.
 */
export function etagsFor(cid: CID, negotiated: Negotiated, shape: CarShape): string[] {
  if (negotiated.format === 'raw') return [rawEtag(cid)]
  const asked = carEtag(cid, negotiated.dups, shape)
  return negotiated.dups === 'y' ? [asked, carEtag(cid, 'n', shape)] : [asked]
}

/** The tag of `etags` that `If-None-Match` names (the first one for `*`), or undefined. */
export function matchingEtag(header: string | undefined, etags: string[]): string | undefined {
  if (!header) return undefined
  for (const t of header.split(',')) {
    const tag = t.trim()
    if (tag === '*') return etags[0]
    const found = etags.find((etag) => tag === etag || tag === `W/${etag}`)
    if (found) return found
  }
  return undefined
}
