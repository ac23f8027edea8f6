/**
 * carSections (node/weights/car-sections.ts): a CARv1 stream read section by section into places
 * the caller chooses, from untrusted bytes in chunks of any size.
 */
import { CarWriter } from '@ipld/car/writer'
import { encode as encodeCbor } from '@ipld/dag-cbor'
import { varint } from 'multiformats'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { carSections } from '../../../../node/weights/car-sections.js'
import { withoutLoaders } from '../../../../node/worker-pool.js'

async function block(bytes: Uint8Array) {
  return { cid: CID.createV1(raw.code, await sha256.digest(bytes)), bytes }
}

async function carOf(blocks: { cid: CID; bytes: Uint8Array }[]): Promise<Uint8Array> {
  const { writer, out } = CarWriter.create([blocks[0]!.cid])
  const parts: Uint8Array[] = []
  const collected = (async () => {
    for await (const p of out) parts.push(p)
  })()
  for (const b of blocks) await writer.put(b)
  await writer.close()
  await collected
  return Buffer.concat(parts)
}

/** `bytes` as a stream of chunks of `size` bytes. */
async function* chunked(bytes: Uint8Array, size: number) {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size)
}

async function read(bytes: Uint8Array, size: number, maxBlockBytes = 1 << 20) {
  const out: { cid: string; bytes: Buffer }[] = []
  for await (const s of carSections(chunked(bytes, size), {
    maxBlockBytes,
    place: (_cid, length) => new Uint8Array(length),
  }))
    out.push({ cid: s.cid.toString(), bytes: Buffer.from(s.bytes) })
  return out
}

describe('carSections', () => {
  it('reads every section, whatever the chunk size, into the place given', async () => {
    const blocks = await Promise.all(
      [new Uint8Array(0), new Uint8Array([1, 2, 3]), new Uint8Array(70_000).fill(9)].map(block),
    )
    const car = await carOf(blocks)
    const expected = blocks.map((b) => ({ cid: b.cid.toString(), bytes: Buffer.from(b.bytes) }))
    for (const size of [1, 7, 64, 4096, car.length]) expect(await read(car, size)).toEqual(expected)
  })

  it('copies into the caller’s buffer, and asks for the place only once the CID is known', async () => {
    const b = await block(new Uint8Array(5000).fill(3))
    const slot = new Uint8Array(8192)
    const asked: string[] = []
    for await (const s of carSections(chunked(await carOf([b]), 100), {
      maxBlockBytes: 8192,
      place: (cid, length) => {
        asked.push(`${cid}:${length}`)
        return slot.subarray(0, length)
      },
    }))
      expect(s.bytes.buffer).toBe(slot.buffer)
    expect(asked).toEqual([`${b.cid}:5000`])
    expect(Buffer.from(slot.subarray(0, 5000)).equals(Buffer.from(b.bytes))).toBe(true)
  })

  it('refuses a block over the limit before placing it', async () => {
    const car = await carOf([await block(new Uint8Array(2000))])
    let placed = false
    const sections = carSections(chunked(car, 512), {
      maxBlockBytes: 1000,
      place: (_c, n) => {
        placed = true
        return new Uint8Array(n)
      },
    })
    await expect(sections.next()).rejects.toMatchObject({ code: 'car-invalid' })
    expect(placed).toBe(false)
  })

  it('says car-truncated for a stream that stops inside a section, after the whole ones', async () => {
    const blocks = await Promise.all([new Uint8Array(300).fill(1), new Uint8Array(300).fill(2)].map(block))
    const car = await carOf(blocks)
    const got: string[] = []
    const sections = carSections(chunked(car.subarray(0, car.length - 10), 64), {
      maxBlockBytes: 1024,
      place: (_c, n) => new Uint8Array(n),
    })
    await expect(
      (async () => {
        for await (const s of sections) got.push(s.cid.toString())
      })(),
    ).rejects.toMatchObject({ code: 'car-truncated' })
    expect(got).toEqual([blocks[0]!.cid.toString()])
  })

  it('refuses malformed input with car-invalid: headers, versions, lengths, CIDs', async () => {
    const header = (value: unknown) => {
      const body = encodeCbor(value)
      return Buffer.concat([
        Buffer.from(
          varint.encodeTo(body.length, new Uint8Array(10)).subarray(0, varint.encodingLength(body.length)),
        ),
        body,
      ])
    }
    const b = await block(new Uint8Array([1]))
    const cases: Uint8Array[] = [
      new Uint8Array(0), // empty
      Buffer.from([0x00]), // a header of 0 bytes
      Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), // a length over 7 bytes
      Buffer.from([0xff, 0xff, 0x7f]), // a header far over the limit
      header({ version: 2, roots: [b.cid] }),
      header({ version: 1, roots: ['not a cid'] }),
      header({ version: 1 }),
      Buffer.concat([header({ version: 1, roots: [b.cid] }), Buffer.from([3, 0xff, 0xff, 0xff])]), // no CID
      Buffer.concat([header({ version: 1, roots: [b.cid] }), Buffer.from([0])]), // an empty section
    ]
    for (const bytes of cases)
      await expect(read(bytes, 3), Buffer.from(bytes).toString('hex')).rejects.toMatchObject({
        code: expect.stringMatching(/^car-(invalid|truncated)$/),
      })
  })
})

describe('withoutLoaders', () => {
  it('drops module loaders and their values, keeps every other flag', () => {
    expect(
      withoutLoaders([
        '--import',
        'tsx',
        '--enable-source-maps',
        '--loader=ts-node/esm',
        '-r',
        'x.cjs',
        '--max-old-space-size=512',
        '--require=y',
        '--experimental-loader',
        'z',
      ]),
    ).toEqual(['--enable-source-maps', '--max-old-space-size=512'])
  })
})
