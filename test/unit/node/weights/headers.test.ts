/**
 * Tensor file headers (node/weights/headers.ts): the generated safetensors models give the
 * generator's parameter count and dtypes; malformed safetensors (truncated, a huge length, bad
 * JSON, offsets past the data, gaps, wrong sizes) and arbitrary mutations give typed
 * `NodeError`s and nothing else; GGUF v3 headers written here from the format description
 * (no real GGUF file is used) give their parameter count, dtypes and architecture.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { generateModel, modelTensors } from '../../../../fixtures/models.js'
import { isNodeError } from '../../../../node/errors.js'
import {
  describeModel,
  MAX_HEADER_BYTES,
  parseSafetensorsHeader,
  readGgufHeader,
  readSafetensorsHeader,
} from '../../../../node/weights/headers.js'
import { tempDirForFile } from '../../../support/temp-dir.js'
import { codeOf } from '../../../support/weights-files.js'

const tmp = tempDirForFile('allmende-weights-headers-')

let n = 0
async function fileWith(bytes: Uint8Array, ext = '.safetensors'): Promise<string> {
  const path = join(tmp(), `f${n++}${ext}`)
  await writeFile(path, bytes)
  return path
}

/** A safetensors file from a header object (padded like the reference writer) and data bytes. */
function safetensors(header: unknown, data: number, lengthOverride?: bigint): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header))
  const out = Buffer.alloc(8 + json.length + data)
  out.writeBigUInt64LE(lengthOverride ?? BigInt(json.length), 0)
  json.copy(out, 8)
  return out
}

describe('safetensors', () => {
  it('gives the generator’s parameter count and dtypes for a generated model', async () => {
    const dir = join(tmp(), 'model')
    const model = await generateModel(dir, { seed: 5, layers: 3, hidden: 128 })
    const expected = modelTensors({ seed: 5, layers: 3, hidden: 128 }).reduce(
      (s, t) => s + t.shape.reduce((a, b) => a * b, 1),
      0,
    )
    expect(model.parameters).toBe(expected)
    const d = await describeModel(
      dir,
      model.files.map((path) => ({ path })),
    )
    expect(d).toEqual({ format: 'safetensors', dtypes: ['BF16', 'F16', 'F32'], parameters: expected })
    const one = await readSafetensorsHeader(join(dir, 'model-00001-of-00002.safetensors'))
    expect(one.metadata).toEqual({ format: 'pt' })
    expect(one.dtypes).toContain('F32')
  })

  it('accepts a minimal valid file and counts every element', async () => {
    const h = {
      a: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 12] },
      b: { dtype: 'I64', shape: [], data_offsets: [12, 20] },
      c: { dtype: 'F4', shape: [4], data_offsets: [20, 22] },
      e: { dtype: 'F32', shape: [0, 5], data_offsets: [22, 22] },
    }
    const r = await readSafetensorsHeader(await fileWith(safetensors(h, 22)))
    expect(r).toMatchObject({ parameters: 6 + 1 + 4, tensors: 4, dtypes: ['F16', 'F32', 'F4', 'I64'] })
  })

  it('refuses malformed files with typed errors', async () => {
    const ok = { t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }
    // biome-ignore format: one case a line
    const cases: [string, Uint8Array, string][] = [
      ['shorter than 8 bytes', Buffer.from([1, 0, 0]), 'safetensors-truncated'],
      ['length past the end', safetensors(ok, 8, 10_000n), 'safetensors-truncated'],
      ['a huge length', safetensors(ok, 8, 2n ** 62n), 'safetensors-header-too-large'],
      ['just over 100 MiB', safetensors(ok, 8, BigInt(MAX_HEADER_BYTES + 1)), 'safetensors-header-too-large'],
      ['not JSON', safetensors('{"t": {', 8), 'safetensors-header-json'],
      ['not UTF-8', safetensors(Buffer.from([0x7b, 0xff, 0x7d]).toString('latin1'), 0), 'safetensors-header-json'],
      ['an array', safetensors([1, 2], 0), 'safetensors-header-invalid'],
      ['no dtype', safetensors({ t: { shape: [2], data_offsets: [0, 8] } }, 8), 'safetensors-header-invalid'],
      ['a negative dim', safetensors({ t: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, 8), 'safetensors-header-invalid'],
      ['a float offset', safetensors({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8.5] } }, 8), 'safetensors-header-invalid'],
      ['offsets past the file', safetensors({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 4), 'safetensors-offsets'],
      ['offsets far past the file', safetensors({ t: { dtype: 'U8', shape: [2 ** 40], data_offsets: [0, 2 ** 40] } }, 8), 'safetensors-offsets'],
      ['a size that is not shape × dtype', safetensors({ t: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8), 'safetensors-offsets'],
      ['a gap', safetensors({ t: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), 'safetensors-offsets'],
      ['trailing bytes', safetensors(ok, 12), 'safetensors-offsets'],
      ['overlapping tensors', safetensors({ ...ok, u: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), 'safetensors-offsets'],
      ['bad metadata', safetensors({ __metadata__: { a: 1 }, ...ok }, 8), 'safetensors-header-invalid'],
      ['too many elements', safetensors({ t: { dtype: 'XX', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 8] } }, 8), 'safetensors-header-invalid'],
    ]
    for (const [what, bytes, code] of cases) {
      expect([what, await codeOf(readSafetensorsHeader(await fileWith(bytes)))]).toEqual([what, code])
    }
    expect(await codeOf(readSafetensorsHeader(join(tmp(), 'missing.safetensors')))).toBe('unreadable')
    expect(await codeOf(readSafetensorsHeader(tmp()))).toBe('special-file')
  })

  it('never throws anything but a NodeError on mutated headers (property)', async () => {
    const valid = Buffer.from(
      JSON.stringify({
        __metadata__: { format: 'pt' },
        a: { dtype: 'BF16', shape: [2, 2], data_offsets: [0, 8] },
        b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
      }),
    )
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        fc.integer({ min: 0, max: 40 }),
        (edits, data) => {
          const h = Buffer.from(valid)
          for (const [i, v] of edits) h[i] = v
          try {
            parseSafetensorsHeader(h, data)
          } catch (e) {
            if (!isNodeError(e)) throw e
          }
        },
      ),
      { numRuns: 2000 },
    )
  })
})

/** A GGUF v3 file from the format description: header, metadata, tensor infos, aligned data. */
function gguf(options: {
  version?: number
  metadata: [string, number, Buffer][]
  tensors: [string, number[], number][]
}): Buffer & { headerLength: number } {
  const parts: Buffer[] = []
  const u32 = (v: number) => {
    const b = Buffer.alloc(4)
    b.writeUInt32LE(v)
    parts.push(b)
  }
  const u64 = (v: number | bigint) => {
    const b = Buffer.alloc(8)
    b.writeBigUInt64LE(BigInt(v))
    parts.push(b)
  }
  const str = (s: string) => {
    u64(Buffer.byteLength(s))
    parts.push(Buffer.from(s))
  }
  parts.push(Buffer.from('GGUF'))
  u32(options.version ?? 3)
  u64(options.tensors.length)
  u64(options.metadata.length)
  for (const [key, type, value] of options.metadata) {
    str(key)
    u32(type)
    parts.push(value)
  }
  let offset = 0
  for (const [name, dims, type] of options.tensors) {
    str(name)
    u32(dims.length)
    for (const d of dims) u64(d)
    u32(type)
    u64(offset)
    offset += 32
  }
  const head = Buffer.concat(parts)
  const bytes = Buffer.concat([head, Buffer.alloc((32 - (head.length % 32)) % 32), Buffer.alloc(offset)])
  return Object.assign(bytes, { headerLength: head.length })
}

const ggufString = (s: string) => {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(BigInt(Buffer.byteLength(s)))
  return Buffer.concat([b, Buffer.from(s)])
}
const ggufU32 = (v: number) => {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(v)
  return b
}
const ggufArray = (itemType: number, items: Buffer[]) => {
  const count = Buffer.alloc(8)
  count.writeBigUInt64LE(BigInt(items.length))
  return Buffer.concat([ggufU32(itemType), count, ...items])
}

describe('gguf', () => {
  const file = () =>
    gguf({
      metadata: [
        ['general.architecture', 8, ggufString('llama')],
        ['general.alignment', 4, ggufU32(32)],
        ['tokenizer.ggml.tokens', 9, ggufArray(8, ['<s>', 'a', 'bc', 'ü'].map(ggufString))],
        ['tokenizer.ggml.scores', 9, ggufArray(6, [ggufU32(0), ggufU32(0), ggufU32(0), ggufU32(0)])],
        ['nested', 9, ggufArray(9, [ggufArray(4, [ggufU32(1)]), ggufArray(8, [ggufString('x')])])],
        ['flag', 7, Buffer.from([1])],
      ],
      tensors: [
        ['token_embd.weight', [64, 100], 12],
        ['blk.0.attn_q.weight', [64, 64], 8],
        ['output_norm.weight', [64], 0],
      ],
    })

  it('counts parameters, names ggml types and reads the architecture', async () => {
    const path = await fileWith(file(), '.gguf')
    expect(await readGgufHeader(path)).toEqual({
      format: 'gguf',
      version: 3,
      littleEndian: true,
      architecture: 'llama',
      dtypes: ['F32', 'Q4_K', 'Q8_0'],
      tensors: 3,
      parameters: 6400 + 4096 + 64,
    })
    const dir = join(tmp(), 'gguf-model')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'model-q4.gguf'), await readFile(path))
    await writeFile(join(dir, 'README.md'), 'hello')
    expect(await describeModel(dir, [{ path: 'README.md' }, { path: 'model-q4.gguf' }])).toEqual({
      format: 'gguf',
      dtypes: ['F32', 'Q4_K', 'Q8_0'],
      parameters: 10560,
    })
    expect(await describeModel(dir, [{ path: 'README.md' }])).toEqual({ format: 'other', dtypes: [] })
  })

  it('refuses truncated and foreign files with typed errors, at every cut', async () => {
    const whole = file()
    for (let cut = 0; cut < whole.headerLength; cut += 3) {
      const code = await codeOf(readGgufHeader(await fileWith(whole.subarray(0, cut), '.gguf')))
      expect(['gguf-truncated', 'gguf-bad-magic']).toContain(code)
    }
    expect(await codeOf(readGgufHeader(await fileWith(Buffer.from('GGML\x03\0\0\0\0\0\0\0'), '.gguf')))).toBe(
      'gguf-bad-magic',
    )
    const badType = gguf({ metadata: [['k', 13, Buffer.alloc(0)]], tensors: [] })
    expect(await codeOf(readGgufHeader(await fileWith(badType, '.gguf')))).toBe('gguf-invalid')
    const hugeString = Buffer.from(whole)
    hugeString.writeBigUInt64LE(2n ** 60n, 24) // the length of the first metadata key
    expect(await codeOf(readGgufHeader(await fileWith(hugeString, '.gguf')))).toBe('gguf-invalid')
    const v1 = await readGgufHeader(await fileWith(gguf({ version: 1, metadata: [], tensors: [] }), '.gguf'))
    expect(v1).toMatchObject({ format: 'gguf', version: 1 })
    expect(v1.parameters).toBeUndefined()
  })
})
