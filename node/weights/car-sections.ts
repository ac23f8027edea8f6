/**
 * CARv1 framing: writing a header and section prefixes (the gateway's CAR responses, `model
 * publish`'s upload), and reading a stream section by section, each block's bytes copied straight
 * from the network's chunks into a place the caller chooses (gateway-fetch.ts).
 *
 * Why not @ipld/car's `CarBlockIterator`: it joins the chunks of every block into a fresh buffer,
 * so a 256 MiB fetch allocated 256 MiB more than it received, and the garbage collector (whose
 * full collections the allocation of that much outside memory sets off) took more of the main
 * thread than any other part of the fetch (bench/fetch.ts). Here a block lands where the caller
 * says — for a weights leaf, a slot of the buffer the hashing workers read — with one copy and no
 * allocation. The format is small: a varint-prefixed dag-cbor header `{version: 1, roots}`, then
 * sections `varint(len) ‖ CID ‖ block` (ipld.io/specs/transport/car/carv1).
 *
 * Bounded: the header and every section have a size limit, checked before anything is placed.
 * Malformed input ends with `NodeError('car-invalid')`; a stream that stops inside a section, with
 * `car-truncated` (what came before it is whole).
 */
import { decode as decodeCbor, encode as encodeCbor } from '@ipld/dag-cbor'
import { varint } from 'multiformats'
import { CID } from 'multiformats/cid'
import { NodeError } from '../errors.js'

const MAX_HEADER_BYTES = 64 * 1024
/** A CID's bytes are read from at most this much of the start of a section. */
const CID_PREFIX_BYTES = 128

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

export interface CarSectionsOptions {
  /** The largest block accepted. */
  readonly maxBlockBytes: number
  /** Where a block of `length` bytes goes: a view of exactly `length` bytes (may wait for room). */
  readonly place: (cid: CID, length: number) => Uint8Array | Promise<Uint8Array>
}

/** The header's roots, then each section of the CAR read from `chunks`. */
export async function* carSections(
  chunks: AsyncIterable<Uint8Array>,
  options: CarSectionsOptions,
): AsyncGenerator<CarSection, void, undefined> {
  const input = new ChunkReader(chunks[Symbol.asyncIterator]())
  const headerLength = await input.varint(true)
  if (headerLength === undefined) throw invalid('the stream is empty')
  if (headerLength === 0 || headerLength > MAX_HEADER_BYTES)
    throw invalid(`a header of ${headerLength} bytes (at most ${MAX_HEADER_BYTES})`)
  const header = await input.take(headerLength)
  let decoded: unknown
  try {
    decoded = decodeCbor(header)
  } catch (e) {
    throw invalid(`the header is not dag-cbor: ${(e as Error).message}`)
  }
  const { version, roots } = (decoded ?? {}) as { version?: unknown; roots?: unknown }
  if (version !== 1) throw invalid(`version ${String(version)}, not 1`)
  if (!Array.isArray(roots) || !roots.every((r) => CID.asCID(r) !== null))
    throw invalid('the header has no list of root CIDs')

  const maxSection = options.maxBlockBytes + CID_PREFIX_BYTES
  for (;;) {
    const length = await input.varint(true)
    if (length === undefined) return
    if (length === 0 || length > maxSection)
      throw invalid(`a section of ${length} bytes (at most ${maxSection})`)
    const prefix = await input.take(Math.min(length, CID_PREFIX_BYTES))
    let cid: CID
    let rest: Uint8Array
    try {
      ;[cid, rest] = CID.decodeFirst(prefix)
    } catch (e) {
      throw invalid(`a section does not start with a CID: ${(e as Error).message}`)
    }
    const blockLength = length - (prefix.length - rest.length)
    if (blockLength > options.maxBlockBytes)
      throw invalid(`block ${cid} has ${blockLength} bytes (at most ${options.maxBlockBytes})`)
    const bytes = await options.place(cid, blockLength)
    bytes.set(rest, 0)
    await input.copyInto(bytes, rest.length)
    yield { cid, bytes }
  }
}

/** Reads exact amounts from a stream of chunks, holding on to one chunk at a time. */
class ChunkReader {
  private chunk: Uint8Array = new Uint8Array(0)
  private at = 0

  constructor(private readonly source: AsyncIterator<Uint8Array>) {}

  /** The next chunk with bytes left; false at the end of the stream. */
  private async fill(): Promise<boolean> {
    while (this.at >= this.chunk.length) {
      const next = await this.source.next()
      if (next.done) return false
      this.chunk = next.value
      this.at = 0
    }
    return true
  }

  /** An unsigned varint (at most 7 bytes); undefined at a clean end when `endOk`. */
  async varint(endOk: boolean): Promise<number | undefined> {
    let value = 0
    for (let i = 0; i < 7; i++) {
      if (!(await this.fill())) {
        if (i === 0 && endOk) return undefined
        throw truncated('a length')
      }
      const byte = this.chunk[this.at++]!
      value += (byte & 0x7f) * 2 ** (7 * i)
      if (byte < 0x80) return value
    }
    throw invalid('a length over 7 bytes')
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
      if (!(await this.fill())) throw truncated('a section')
      const n = Math.min(target.length - filled, this.chunk.length - this.at)
      target.set(this.chunk.subarray(this.at, this.at + n), filled)
      this.at += n
      filled += n
    }
  }
}

function invalid(message: string): NodeError {
  return new NodeError('car-invalid', `not a valid CAR: ${message}`, { status: 502 })
}

function truncated(where: string): NodeError {
  return new NodeError('car-truncated', `the CAR stream ends inside ${where}`, { status: 502 })
}
