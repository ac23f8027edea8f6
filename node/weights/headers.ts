/**
 * What a model is, from its tensor file headers (SPEC.md §5.2 manifest `format`,
 * `parameters`).
 *
 * Why headers only: the format, the dtypes and the parameter count are all in the headers, so
 * `model publish` can fill them in without reading tensor data. The files come from users and,
 * via fetched models, from strangers, so every read is bounded and every defect is a typed
 * `NodeError` — never a RangeError from a Buffer or a SyntaxError from JSON.
 *
 * - safetensors: u64 LE header length, JSON header, data. Refused: a header over 100 MiB, a
 *   file shorter than its header, JSON that is not UTF-8 or not an object, entries without a
 *   dtype / shape / data_offsets, offsets past the end of the data, holes or overlaps between
 *   tensors, a byte range that does not match shape × dtype size (for known dtypes; unknown
 *   dtypes are counted but not sized, so a new dtype does not block publishing).
 * - GGUF v2/v3 (little-endian): magic, version, tensor count, metadata (skipped, except
 *   `general.architecture`), tensor infos (dims and ggml type). Parameters = Σ Π dims. At most
 *   100 MiB of header is read (large vocabularies take a few MiB). GGUF v1 and big-endian files are
 *   recognised by their magic but give no parameter count.
 */
import { constants } from 'node:fs'
import { type FileHandle, open } from 'node:fs/promises'
import { join } from 'node:path'
import { utf8Strict } from '../../protocol/bytes.js'
import { NodeError } from '../errors.js'
import { pathProblem } from './local-files.js'

/** Largest header read from one file, safetensors JSON or GGUF metadata plus tensor infos. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024

export interface TensorHeader {
  readonly format: 'safetensors' | 'gguf'
  /** Dtypes used, sorted (safetensors names, or ggml type names for GGUF). */
  readonly dtypes: readonly string[]
  readonly tensors: number
  /** Σ over tensors of the product of their dimensions; absent when the layout is unknown. */
  readonly parameters?: number
}

export interface SafetensorsHeader extends TensorHeader {
  readonly format: 'safetensors'
  readonly parameters: number
  /** The optional `__metadata__` map of strings. */
  readonly metadata: Readonly<Record<string, string>>
}

export interface GgufHeader extends TensorHeader {
  readonly format: 'gguf'
  readonly version: number
  readonly littleEndian: boolean
  readonly architecture?: string
}

/** Bits per element of the safetensors dtypes (safetensors 0.6). */
const SAFETENSORS_BITS: Readonly<Record<string, number>> = {
  BOOL: 8,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  I64: 64,
  U64: 64,
  F64: 64,
}

function bad(code: string, path: string, message: string): NodeError {
  return new NodeError(code, `${path}: ${message}`, { status: 400 })
}

async function openRegular(path: string, display: string): Promise<{ fh: FileHandle; size: number }> {
  let fh: FileHandle
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (e) {
    throw bad('unreadable', display, `cannot open: ${(e as NodeJS.ErrnoException)?.code ?? e}`)
  }
  const st = await fh.stat().catch(() => undefined)
  if (!st?.isFile()) {
    await fh.close()
    throw bad('special-file', display, 'not a regular file')
  }
  return { fh, size: st.size }
}

/** Reads exactly `length` bytes at `position`, or fewer at the end of the file. */
async function readAt(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length)
  let n = 0
  while (n < length) {
    const { bytesRead } = await fh.read(buf, n, length - n, position + n)
    if (bytesRead === 0) break
    n += bytesRead
  }
  return buf.subarray(0, n)
}

/** Parses a safetensors header. `display` names the file in error messages (default `path`). */
export async function readSafetensorsHeader(path: string, display = path): Promise<SafetensorsHeader> {
  const { fh, size } = await openRegular(path, display)
  try {
    if (size < 8) throw bad('safetensors-truncated', display, `${size} bytes, shorter than the 8-byte length`)
    const prefix = await readAt(fh, 0, 8)
    if (prefix.length < 8)
      throw bad('safetensors-truncated', display, 'the file ended inside the header length')
    const length = prefix.readBigUInt64LE(0)
    if (length > BigInt(MAX_HEADER_BYTES)) {
      throw bad(
        'safetensors-header-too-large',
        display,
        `a ${length}-byte header (at most ${MAX_HEADER_BYTES})`,
      )
    }
    const n = Number(length)
    if (8 + n > size) throw bad('safetensors-truncated', display, `a ${n}-byte header in a ${size}-byte file`)
    const bytes = await readAt(fh, 8, n)
    if (bytes.length < n) throw bad('safetensors-truncated', display, 'the file ended inside the header')
    return parseSafetensorsHeader(bytes, size - 8 - n, display)
  } finally {
    await fh.close()
  }
}

/** Checks a safetensors JSON header against `dataBytes`, the bytes that follow it. Pure. */
export function parseSafetensorsHeader(
  header: Uint8Array,
  dataBytes: number,
  display = 'header',
): SafetensorsHeader {
  let json: unknown
  try {
    json = JSON.parse(utf8Strict.decode(header))
  } catch (e) {
    throw bad('safetensors-header-json', display, `the header is not UTF-8 JSON (${(e as Error).message})`)
  }
  if (!isPlainObject(json))
    throw bad('safetensors-header-invalid', display, 'the header is not a JSON object')
  let metadata: Record<string, string> = {}
  const ranges: { name: string; begin: number; end: number }[] = []
  const dtypes = new Set<string>()
  let parameters = 0
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
        throw bad('safetensors-header-invalid', display, '__metadata__ is not a map of strings')
      }
      metadata = entry as Record<string, string>
      continue
    }
    const where = `tensor "${name.slice(0, 200)}"`
    if (!isPlainObject(entry)) throw bad('safetensors-header-invalid', display, `${where} is not an object`)
    const { dtype, shape, data_offsets: offsets } = entry
    if (typeof dtype !== 'string' || !/^[A-Z0-9_]{1,32}$/.test(dtype)) {
      throw bad('safetensors-header-invalid', display, `${where} has no valid dtype`)
    }
    if (!Array.isArray(shape) || shape.length > 64 || !shape.every(isSafeCount)) {
      throw bad('safetensors-header-invalid', display, `${where} has no valid shape`)
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isSafeCount)) {
      throw bad('safetensors-header-invalid', display, `${where} has no valid data_offsets`)
    }
    const [begin, end] = offsets as [number, number]
    if (begin > end) throw bad('safetensors-offsets', display, `${where} ends before it begins`)
    if (end > dataBytes) {
      throw bad('safetensors-offsets', display, `${where} ends at ${end}, past the ${dataBytes} data bytes`)
    }
    const count = product(shape as number[])
    if (count === undefined)
      throw bad('safetensors-header-invalid', display, `${where} has too many elements`)
    const bits = SAFETENSORS_BITS[dtype]
    if (bits !== undefined && count * bits !== (end - begin) * 8) {
      throw bad(
        'safetensors-offsets',
        display,
        `${where} holds ${end - begin} bytes, not ${count} × ${dtype}`,
      )
    }
    parameters += count
    if (!Number.isSafeInteger(parameters))
      throw bad('safetensors-header-invalid', display, 'too many parameters')
    dtypes.add(dtype)
    ranges.push({ name: where, begin, end })
  }
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end)
  let at = 0
  for (const r of ranges) {
    if (r.begin !== at) {
      const what = r.begin > at ? `a gap before ${r.name}` : `${r.name} overlaps the tensor before it`
      throw bad('safetensors-offsets', display, what)
    }
    at = r.end
  }
  if (at !== dataBytes)
    throw bad('safetensors-offsets', display, `${dataBytes - at} data bytes belong to no tensor`)
  return { format: 'safetensors', dtypes: [...dtypes].sort(), tensors: ranges.length, parameters, metadata }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function isSafeCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

function product(dims: readonly number[]): number | undefined {
  let p = 1
  for (const d of dims) {
    p *= d
    if (!Number.isSafeInteger(p)) return undefined
  }
  return p
}

/** ggml type ids (ggml.h); removed ids stay unnamed and show as `type-<id>`. */
// biome-ignore format: a table, ten ids a line
const GGML_TYPES: readonly (string | undefined)[] = [
  'F32', 'F16', 'Q4_0', 'Q4_1', undefined, undefined, 'Q5_0', 'Q5_1', 'Q8_0', 'Q8_1',
  'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'Q8_K', 'IQ2_XXS', 'IQ2_XS', 'IQ3_XXS', 'IQ1_S',
  'IQ4_NL', 'IQ3_S', 'IQ2_S', 'IQ4_XS', 'I8', 'I16', 'I32', 'I64', 'F64', 'IQ1_M',
  'BF16', undefined, undefined, undefined, 'TQ1_0', 'TQ2_0', undefined, undefined, undefined, 'MXFP4',
]

/** Byte sizes of GGUF metadata scalar types 0–12 (8 string and 9 array are variable). */
const GGUF_SCALAR_BYTES: readonly number[] = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8]
const GGUF_STRING = 8
const GGUF_ARRAY = 9
const GGUF_MAGIC = 0x46554747 // "GGUF" read as a little-endian u32
const GGUF_MAX_DIMS = 8
const GGUF_MAX_NESTING = 4

/** A forward-only reader over a file, buffered in windows, that never reads past `limit`. */
class Cursor {
  private buf: Buffer = Buffer.alloc(0)
  private start = 0
  pos = 0

  constructor(
    private readonly fh: FileHandle,
    private readonly size: number,
    private readonly limit: number,
    private readonly display: string,
  ) {}

  /** Refuses a read ending at `end`: past the file, or past the header limit. */
  private check(end: number): void {
    if (end > this.size) throw bad('gguf-truncated', this.display, 'the header runs past the end of the file')
    if (end > this.limit)
      throw bad('gguf-header-too-large', this.display, `the header is over ${this.limit} bytes`)
  }

  private async need(n: number): Promise<Buffer> {
    const end = this.pos + n
    this.check(end)
    if (end > this.start + this.buf.length) {
      const want = Math.min(Math.max(n, 1024 * 1024), this.size - this.pos)
      this.buf = await readAt(this.fh, this.pos, want)
      this.start = this.pos
      if (this.buf.length < n) throw bad('gguf-truncated', this.display, 'the file ended inside the header')
    }
    const at = this.pos - this.start
    this.pos = end
    return this.buf.subarray(at, at + n)
  }

  async skip(n: number): Promise<void> {
    this.check(this.pos + n)
    this.pos += n
  }

  async u32(): Promise<number> {
    return (await this.need(4)).readUInt32LE(0)
  }

  async u64(what: string): Promise<number> {
    const v = (await this.need(8)).readBigUInt64LE(0)
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw bad('gguf-invalid', this.display, `${what} is too large (${v})`)
    return Number(v)
  }

  async string(what: string): Promise<Buffer> {
    return this.need(await this.u64(`the length of ${what}`))
  }

  async skipString(what: string): Promise<void> {
    await this.skip(await this.u64(`the length of ${what}`))
  }
}

/** Parses a GGUF header. `display` names the file in error messages (default `path`). */
export async function readGgufHeader(path: string, display = path): Promise<GgufHeader> {
  const { fh, size } = await openRegular(path, display)
  try {
    const c = new Cursor(fh, size, MAX_HEADER_BYTES, display)
    if (size < 8) throw bad('gguf-truncated', display, `${size} bytes, too short for a GGUF header`)
    if ((await c.u32()) !== GGUF_MAGIC) throw bad('gguf-bad-magic', display, 'does not start with "GGUF"')
    const version = await c.u32()
    if (version === 2 || version === 3) return await ggufBody(c, version, display)
    const swapped =
      ((version & 0xff) << 24) | ((version & 0xff00) << 8) | ((version >>> 8) & 0xff00) | (version >>> 24)
    if (swapped === 2 || swapped === 3) {
      return { format: 'gguf', version: swapped, littleEndian: false, dtypes: [], tensors: 0 }
    }
    if (version === 1) return { format: 'gguf', version, littleEndian: true, dtypes: [], tensors: 0 }
    throw bad('gguf-invalid', display, `unknown GGUF version ${version}`)
  } finally {
    await fh.close()
  }
}

async function ggufBody(c: Cursor, version: number, display: string): Promise<GgufHeader> {
  const tensors = await c.u64('the tensor count')
  const kvs = await c.u64('the metadata count')
  let architecture: string | undefined
  for (let i = 0; i < kvs; i++) {
    const key = await c.string('a metadata key')
    const type = await c.u32()
    if (type === GGUF_STRING && key.toString('latin1') === 'general.architecture') {
      const value = await c.string('general.architecture')
      try {
        architecture = utf8Strict.decode(value).slice(0, 256)
      } catch {
        throw bad('gguf-invalid', display, 'general.architecture is not UTF-8')
      }
    } else await skipValue(c, type, 0, display)
  }
  const dtypes = new Set<string>()
  let parameters = 0
  for (let i = 0; i < tensors; i++) {
    await c.skipString('a tensor name')
    const dims = await c.u32()
    if (dims > GGUF_MAX_DIMS) throw bad('gguf-invalid', display, `a tensor with ${dims} dimensions`)
    let count = 1
    for (let d = 0; d < dims; d++) {
      count *= await c.u64('a tensor dimension')
      if (!Number.isSafeInteger(count)) throw bad('gguf-invalid', display, 'a tensor with too many elements')
    }
    const type = await c.u32()
    dtypes.add(GGML_TYPES[type] ?? `type-${type}`)
    await c.skip(8) // offset into the data section
    parameters += count
    if (!Number.isSafeInteger(parameters)) throw bad('gguf-invalid', display, 'too many parameters')
  }
  const header: GgufHeader = {
    format: 'gguf',
    version,
    littleEndian: true,
    dtypes: [...dtypes].sort(),
    tensors,
    parameters,
  }
  return architecture === undefined ? header : { ...header, architecture }
}

async function skipValue(c: Cursor, type: number, depth: number, display: string): Promise<void> {
  if (type === GGUF_STRING) return c.skipString('a metadata string')
  if (type === GGUF_ARRAY) {
    if (depth >= GGUF_MAX_NESTING) throw bad('gguf-invalid', display, 'metadata arrays nested too deeply')
    const itemType = await c.u32()
    const count = await c.u64('a metadata array length')
    const fixed = GGUF_SCALAR_BYTES[itemType]
    if (fixed !== undefined && fixed > 0) return c.skip(count * fixed)
    for (let i = 0; i < count; i++) await skipValue(c, itemType, depth + 1, display)
    return
  }
  const fixed = GGUF_SCALAR_BYTES[type]
  if (fixed === undefined || fixed === 0) throw bad('gguf-invalid', display, `unknown metadata type ${type}`)
  return c.skip(fixed)
}

export type ModelFormat = 'safetensors' | 'gguf' | 'other'

export interface ModelDescription {
  readonly format: ModelFormat
  readonly dtypes: readonly string[]
  /** Present when every tensor file of the format gave a count. */
  readonly parameters?: number
}

/**
 * The format, dtypes and parameter count of a model directory, from its `*.safetensors` files
 * (preferred when present) or its `*.gguf` files; 'other' when it has neither. Counts add up over
 * all files of the format: a repository that ships the same weights twice (a `consolidated`
 * file beside the shards) is counted twice. Throws the header's `NodeError` for a malformed file.
 */
export async function describeModel(
  dir: string,
  files: readonly { readonly path: string }[],
): Promise<ModelDescription> {
  const pick = (ext: string) => files.filter((f) => f.path.toLowerCase().endsWith(ext)).map((f) => f.path)
  const safetensors = pick('.safetensors')
  const gguf = safetensors.length > 0 ? [] : pick('.gguf')
  const chosen = safetensors.length > 0 ? safetensors : gguf
  if (chosen.length === 0) return { format: 'other', dtypes: [] }
  const dtypes = new Set<string>()
  let parameters: number | undefined = 0
  for (const path of chosen) {
    const problem = pathProblem(path)
    if (problem !== undefined) throw bad('path-invalid', path, problem)
    const header =
      safetensors.length > 0
        ? await readSafetensorsHeader(join(dir, path), path)
        : await readGgufHeader(join(dir, path), path)
    for (const d of header.dtypes) dtypes.add(d)
    parameters =
      parameters === undefined || header.parameters === undefined ? undefined : parameters + header.parameters
  }
  const format = safetensors.length > 0 ? 'safetensors' : 'gguf'
  const description = { format, dtypes: [...dtypes].sort() } as const
  return parameters === undefined || !Number.isSafeInteger(parameters)
    ? description
    : { ...description, parameters }
}
