/**
 * CARv1 framing (ipld.io/specs/transport/car/carv1): writing a header and section prefixes (the
 * gateway's CAR responses, `model publish`'s upload), and the one reader of CAR streams, for a
 * gateway fetch (gateway-fetch.ts) and an upload (upload-car.ts) alike: each block's bytes are
 * copied straight from the network's chunks into a place the caller chooses, with one copy and no
 * allocation (docs/adr/0012-weights-transfer-speed.md says why not @ipld/car's reader).
 *
 * Bounded: the stream, the header and every section have a size limit, checked before anything is
 * placed. Malformed input ends with `NodeError('car-invalid')`, a stream that stops inside a
 * section with `car-truncated` (what came before it is whole), unless the caller maps each fault
 * to errors of its own (`faults`).
 */
import { decode as decodeCbor, encode as encodeCbor } from '@ipld/dag-cbor'
import { varint } from 'multiformats'
import { CID } from 'multiformats/cid'
import { NodeError } from '../errors.js'

export const MAX_CAR_HEADER_BYTES = 64 * 1024
/** A CID's bytes are read from at most this much of the start of a section. */
export const CID_PREFIX_BYTES = 128
/**
 * The longest length varint read: eight bytes, past any length a section can have (the value of
 * one of eight bytes is then refused by the limits, as too large).
 */
const MAX_VARINT_BYTES = 8

/** The header of a CARv1 naming `roots`: `varint(len) ‖ dag-cbor {version: 1, roots}`. */
export function carHeader(roots: readonly CID[]): Uint8Array {
  const body = encodeCbor({ version: 1, roots })
  const out = new Uint8Array(varint.encodingLength(body.length) + body.length)
  varint.encodeTo(body.length, out, 0)
  out.set(body, out.length - body.length)
  return out
}

/** Bytes of a section's prefix, `varint(len(cid) + length) ‖ cid`, for a block of `length`. */
export function sectionPrefixLength(cid: CID, length: number): number {
  return varint.encodingLength(cid.bytes.length + length) + cid.bytes.length
}

/** Writes a section's prefix at the start of `into` (the block's bytes may follow it there). */
export function writeSectionPrefix(cid: CID, length: number, into: Uint8Array): void {
  varint.encodeTo(cid.bytes.length + length, into, 0)
  into.set(cid.bytes, varint.encodingLength(cid.bytes.length + length))
}

/** A section's prefix on its own; the block's bytes follow as another chunk. */
export function sectionPrefix(cid: CID, length: number): Uint8Array {
  const out = new Uint8Array(sectionPrefixLength(cid, length))
  writeSectionPrefix(cid, length, out)
  return out
}

export interface CarSection {
  readonly cid: CID
  /** The block's bytes, where `place` put them. */
  readonly bytes: Uint8Array
}

/** What is wrong with a CAR stream, for `faults` to say in the caller's words. */
export type CarFault =
  | { readonly kind: 'empty' }
  | { readonly kind: 'too-many-bytes'; readonly maxBytes: number }
  | { readonly kind: 'length-too-long' }
  | { readonly kind: 'ends-in-length' }
  | { readonly kind: 'ends-in-section' }
  | { readonly kind: 'header-length'; readonly length: number }
  | { readonly kind: 'header-not-cbor'; readonly reason: string }
  | { readonly kind: 'version'; readonly version: unknown }
  | { readonly kind: 'roots' }
  | { readonly kind: 'section-length'; readonly length: number; readonly maxLength: number }
  | { readonly kind: 'not-a-cid'; readonly reason: string }
  | {
      readonly kind: 'block-too-large'
      readonly cid: CID
      readonly length: number
      readonly maxBytes: number
    }

export interface CarReaderOptions {
  /** The largest block accepted. */
  readonly maxBlockBytes: number
  /** Where a block of `length` bytes goes: a view of exactly `length` bytes (may wait for room). */
  readonly place: (cid: CID, length: number) => Uint8Array | Promise<Uint8Array>
  /**
   * Checks a section's CID and its block's length before a byte of the block is placed; by
   * default a block over `maxBlockBytes` is refused (`block-too-large`), which `admit` then does.
   */
  readonly admit?: (cid: CID, length: number) => void
  /**
   * A CID that does not decode from the first `CID_PREFIX_BYTES` of a section is looked for in the
   * whole section, read first (so a cut section is told before a bad CID); by default it is refused.
   */
  readonly longCids?: boolean
  /** The most bytes read from the stream, in all (by default no bound but the sections'). */
  readonly maxBytes?: number
  /** The error each fault ends the read with (by default `car-invalid` and `car-truncated`). */
  readonly faults?: (fault: CarFault) => Error
}

/** The header's roots, read first, then each section as it is asked for. */
export class CarReader {
  private readonly input: ChunkReader
  private readonly admit: (cid: CID, length: number) => void
  private readonly fail: (fault: CarFault) => Error

  constructor(
    chunks: AsyncIterable<Uint8Array>,
    private readonly options: CarReaderOptions,
  ) {
    this.fail = options.faults ?? carError
    this.input = new ChunkReader(chunks[Symbol.asyncIterator](), options.maxBytes ?? Infinity, this.fail)
    this.admit =
      options.admit ??
      ((cid, length) => {
        if (length > options.maxBlockBytes)
          throw this.fail({ kind: 'block-too-large', cid, length, maxBytes: options.maxBlockBytes })
      })
  }

  /** Bytes read from the stream so far. */
  get bytesRead(): number {
    return this.input.total
  }

  /** The roots the header names (any number of them); first, before any section. */
  async header(): Promise<CID[]> {
    const length = await this.input.varint(true)
    if (length === undefined) throw this.fail({ kind: 'empty' })
    if (length === 0 || length > MAX_CAR_HEADER_BYTES) throw this.fail({ kind: 'header-length', length })
    const header = await this.input.take(length)
    let decoded: unknown
    try {
      decoded = decodeCbor(header)
    } catch (e) {
      throw this.fail({ kind: 'header-not-cbor', reason: (e as Error).message })
    }
    const { version, roots } = (decoded ?? {}) as { version?: unknown; roots?: unknown }
    if (version !== 1) throw this.fail({ kind: 'version', version })
    if (!Array.isArray(roots) || !roots.every((r) => CID.asCID(r) !== null))
      throw this.fail({ kind: 'roots' })
    return roots.map((r) => CID.asCID(r)!)
  }

  /** The next section, its block where `place` put it; undefined at a clean end of the stream. */
  async next(): Promise<CarSection | undefined> {
    const maxLength = this.options.maxBlockBytes + CID_PREFIX_BYTES
    const length = await this.input.varint(true)
    if (length === undefined) return undefined
    if (length === 0 || length > maxLength) throw this.fail({ kind: 'section-length', length, maxLength })
    const { cid, head, rest } = await this.sectionCid(length)
    const blockLength = length - (head.length - rest.length)
    this.admit(cid, blockLength)
    const bytes = await this.options.place(cid, blockLength)
    bytes.set(rest, 0)
    await this.input.copyInto(bytes, rest.length)
    return { cid, bytes }
  }

  /**
   * The CID at the start of a section of `length`: `head`, the bytes of the section read to find
   * it, and `rest`, those of them past it.
   */
  private async sectionCid(length: number): Promise<{ cid: CID; head: Uint8Array; rest: Uint8Array }> {
    const prefix = await this.input.take(Math.min(length, CID_PREFIX_BYTES))
    try {
      const [cid, rest] = CID.decodeFirst(prefix)
      return { cid, head: prefix, rest }
    } catch (e) {
      if (!this.options.longCids || prefix.length === length)
        throw this.fail({ kind: 'not-a-cid', reason: (e as Error).message })
    }
    const whole = new Uint8Array(length)
    whole.set(prefix, 0)
    await this.input.copyInto(whole, prefix.length)
    try {
      const [cid, rest] = CID.decodeFirst(whole)
      return { cid, head: whole, rest }
    } catch (e) {
      throw this.fail({ kind: 'not-a-cid', reason: (e as Error).message })
    }
  }

  /** Lets go of the stream (a generator's `finally` runs); the reader is not used after. */
  close(): void {
    this.input.close()
  }
}

/** Each section of the CAR read from `chunks`, after its header. */
export async function* carSections(
  chunks: AsyncIterable<Uint8Array>,
  options: CarReaderOptions,
): AsyncGenerator<CarSection, void, undefined> {
  const reader = new CarReader(chunks, options)
  await reader.header()
  for (let section = await reader.next(); section !== undefined; section = await reader.next()) yield section
}

/** Reads exact amounts from a stream of chunks, holding on to one chunk at a time. */
class ChunkReader {
  private chunk: Uint8Array = new Uint8Array(0)
  private at = 0
  total = 0

  constructor(
    private readonly source: AsyncIterator<Uint8Array>,
    private readonly maxBytes: number,
    private readonly fail: (fault: CarFault) => Error,
  ) {}

  /** The next chunk with bytes left; false at the end of the stream. */
  private async fill(): Promise<boolean> {
    while (this.at >= this.chunk.length) {
      const next = await this.source.next()
      if (next.done) return false
      this.chunk = next.value
      this.at = 0
      this.total += next.value.length
      if (this.total > this.maxBytes) throw this.fail({ kind: 'too-many-bytes', maxBytes: this.maxBytes })
    }
    return true
  }

  /** An unsigned varint; undefined at a clean end when `endOk`. */
  async varint(endOk: boolean): Promise<number | undefined> {
    let value = 0
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      if (!(await this.fill())) {
        if (i === 0 && endOk) return undefined
        throw this.fail({ kind: 'ends-in-length' })
      }
      const byte = this.chunk[this.at++]!
      value += (byte & 0x7f) * 2 ** (7 * i)
      if (byte < 0x80) return value
    }
    throw this.fail({ kind: 'length-too-long' })
  }

  /** The next `n` bytes, as a copy (small amounts: headers and CID prefixes). */
  async take(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n)
    await this.copyInto(out, 0)
    return out
  }

  /** Fills `target` from `offset` to its end with the next bytes of the stream. */
  async copyInto(target: Uint8Array, offset: number): Promise<void> {
    let filled = offset
    while (filled < target.length) {
      if (!(await this.fill())) throw this.fail({ kind: 'ends-in-section' })
      const n = Math.min(target.length - filled, this.chunk.length - this.at)
      target.set(this.chunk.subarray(this.at, this.at + n), filled)
      this.at += n
      filled += n
    }
  }

  close(): void {
    this.source.return?.()?.catch(() => {})
  }
}

/** The reader's own errors: `car-invalid` for malformed input, `car-truncated` for a cut stream. */
function carError(fault: CarFault): NodeError {
  switch (fault.kind) {
    case 'ends-in-length':
      return truncated('a length')
    case 'ends-in-section':
      return truncated('a section')
    case 'empty':
      return invalid('the stream is empty')
    case 'too-many-bytes':
      return invalid(`a stream of over ${fault.maxBytes} bytes`)
    case 'length-too-long':
      return invalid(`a length over ${MAX_VARINT_BYTES} bytes`)
    case 'header-length':
      return invalid(`a header of ${fault.length} bytes (at most ${MAX_CAR_HEADER_BYTES})`)
    case 'header-not-cbor':
      return invalid(`the header is not dag-cbor: ${fault.reason}`)
    case 'version':
      return invalid(`version ${String(fault.version)}, not 1`)
    case 'roots':
      return invalid('the header has no list of root CIDs')
    case 'section-length':
      return invalid(`a section of ${fault.length} bytes (at most ${fault.maxLength})`)
    case 'not-a-cid':
      return invalid(`a section does not start with a CID: ${fault.reason}`)
    case 'block-too-large':
      return invalid(`block ${fault.cid} has ${fault.length} bytes (at most ${fault.maxBytes})`)
  }
}

function invalid(message: string): NodeError {
  return new NodeError('car-invalid', `not a valid CAR: ${message}`, { status: 502 })
}

function truncated(where: string): NodeError {
  return new NodeError('car-truncated', `the CAR stream ends inside ${where}`, { status: 502 })
}
