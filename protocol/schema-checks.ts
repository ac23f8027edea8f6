/**
 * The building blocks of the record schemas (protocol/schema.ts; SPEC.md §5): one check per
 * shape of a field, each returning `undefined` when the value is good or a Rejection with its
 * stable code and the field's path.
 */
import { CID } from 'multiformats/cid'
import { utf8 } from './bytes.js'
import { isRecordCid, SHA2_256_CODE } from './cid.js'
import { type Rejection, reject } from './result.js'

export type Check = Rejection | undefined
export type Obj = Record<string, unknown>

export function isPlainMap(v: unknown): v is Obj {
  return (
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    !(v instanceof Uint8Array) &&
    CID.asCID(v) === null
  )
}

export function fields(
  v: unknown,
  path: string,
  required: readonly string[],
  optional: readonly string[] = [],
): Check {
  if (!isPlainMap(v)) return reject('schema-type', 'expected a map', path)
  for (const k of required)
    if (!(k in v)) return reject('schema-missing-field', `missing field "${k}"`, join(path, k))
  for (const k of Object.keys(v)) {
    if (!required.includes(k) && !optional.includes(k))
      return reject('schema-unknown-field', `unknown field "${k}"`, join(path, k))
  }
  return undefined
}

export function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`
  return path ? `${path}.${key}` : key
}

export function int(v: unknown, path: string, min: number, max: number = Number.MAX_SAFE_INTEGER): Check {
  if (typeof v !== 'number' || !Number.isSafeInteger(v))
    return reject('schema-type', 'expected an integer', path)
  if (v < min || v > max) return reject('schema-range', `expected an integer from ${min} to ${max}`, path)
  return undefined
}

export function text(v: unknown, path: string, minBytes: number, maxBytes: number): Check {
  if (typeof v !== 'string') return reject('schema-type', 'expected a text string', path)
  const n = utf8.encode(v).length
  if (n < minBytes || n > maxBytes)
    return reject('schema-length', `expected ${minBytes} to ${maxBytes} bytes of text`, path)
  return undefined
}

export function formatted(v: unknown, path: string, test: (s: string) => boolean, what: string): Check {
  if (typeof v !== 'string') return reject('schema-type', 'expected a text string', path)
  if (!test(v)) return reject('schema-format', `not ${what}: "${v.slice(0, 80)}"`, path)
  return undefined
}

export function bytes(v: unknown, path: string, min: number, max: number): Check {
  if (!(v instanceof Uint8Array)) return reject('schema-type', 'expected a byte string', path)
  if (v.length < min || v.length > max) {
    return reject(
      'schema-length',
      min === max ? `expected ${min} bytes` : `expected ${min} to ${max} bytes`,
      path,
    )
  }
  return undefined
}

/** Content (weights, cards, reports): a CIDv1 over a sha2-256 digest; no inline (identity) data. */
export function cid(v: unknown, path: string): Check {
  const c = CID.asCID(v)
  if (c === null) return reject('schema-type', 'expected a CID', path)
  if (c.version !== 1 || c.multihash.code !== SHA2_256_CODE || c.multihash.size !== 32) {
    return reject('schema-format', 'expected a CIDv1 with a sha2-256 multihash', path)
  }
  return undefined
}

/** A link to a record or list block: CIDv1, dag-cbor, sha2-256. */
export function recordCid(v: unknown, path: string): Check {
  const c = CID.asCID(v)
  if (c === null) return reject('schema-type', 'expected a CID', path)
  if (!isRecordCid(c)) return reject('schema-format', 'expected a dag-cbor sha2-256 CIDv1', path)
  return undefined
}

export function oneOf(v: unknown, path: string, allowed: readonly string[]): Check {
  if (typeof v !== 'string') return reject('schema-type', 'expected a text string', path)
  if (!allowed.includes(v)) return reject('schema-format', `expected one of ${allowed.join(', ')}`, path)
  return undefined
}

export function array(
  v: unknown,
  path: string,
  min: number,
  max: number,
  item: (x: unknown, p: string) => Check,
): Check {
  if (!Array.isArray(v)) return reject('schema-type', 'expected an array', path)
  if (v.length < min || v.length > max)
    return reject('schema-length', `expected ${min} to ${max} items`, path)
  for (let i = 0; i < v.length; i++) {
    const bad = item(v[i], join(path, i))
    if (bad) return bad
  }
  return undefined
}

/** Strictly increasing under `compare` (sorted and distinct). */
export function increasing<T>(
  v: readonly T[],
  path: string,
  compare: (a: T, b: T) => number,
  what: string,
): Check {
  for (let i = 1; i < v.length; i++) {
    const c = compare(v[i - 1]!, v[i]!)
    if (c === 0) return reject('schema-duplicate', `${what} listed twice`, join(path, i))
    if (c > 0) return reject('schema-order', `${what} must be sorted`, join(path, i))
  }
  return undefined
}

export function byUtf8(a: string, b: string): number {
  // UTF-16 code unit order differs from UTF-8 byte order only above U+FFFF; compare bytes to be exact.
  const x = utf8.encode(a)
  const y = utf8.encode(b)
  const n = Math.min(x.length, y.length)
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i]! - y[i]!
  return x.length - y.length
}

export function optional(o: Obj, key: string, path: string, check: (v: unknown, p: string) => Check): Check {
  return key in o ? check(o[key], join(path, key)) : undefined
}

export function first(...checks: (() => Check)[]): Check {
  for (const c of checks) {
    const r = c()
    if (r) return r
  }
  return undefined
}
