/**
 * Small deterministic model directories for tests and benchmarks.
 *
 * Why: weight checks (hashing, UnixFS roots, header parsing, DAG verification) need real-looking
 * models — sharded safetensors with mixed dtypes beside a `config.json` and a `tokenizer.json` —
 * without downloading any. Everything derives from the seed: each tensor's bytes come from
 * xoshiro128** seeded with `sha256("allmende-fixture:<seed>:<tensor name>")`, values are built
 * from integer bit patterns (no float arithmetic), JSON is written with a fixed key order, so the
 * same seed and options give byte-identical files on every platform.
 *
 * Layout (Llama-like): `model.embed_tokens.weight` F32, attention projections BF16, MLP
 * projections F16, norms F32, `lm_head.weight` BF16; tensors are packed into shards of at most
 * `maxShardBytes` named `model-0000i-of-0000N.safetensors` with a `model.safetensors.index.json`
 * (or a single `model.safetensors` when everything fits in one).
 *
 * Used by `allmende demo` and, re-exported from fixtures/models.ts, by the tests and benchmarks.
 */
import { createHash } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface ModelOptions {
  readonly seed: number
  /** Transformer blocks. Default 4. */
  readonly layers?: number
  /** Hidden size (a multiple of 64). Default 192. */
  readonly hidden?: number
  /** Vocabulary size. Default 2048. */
  readonly vocab?: number
  /** Largest shard; tensors are never split. Default 2 MiB (a few shards at the default size). */
  readonly maxShardBytes?: number
}

export interface GeneratedModel {
  /** Every file written, sorted. */
  readonly files: readonly string[]
  /** Sum over tensors of the product of their shapes. */
  readonly parameters: number
  /** Dtypes used, sorted. */
  readonly dtypes: readonly string[]
  /** Bytes of all files. */
  readonly bytes: number
  /** Bytes of tensor data (the `total_size` of the index). */
  readonly tensorBytes: number
}

type Dtype = 'F32' | 'F16' | 'BF16'
const DTYPE_BYTES: Record<Dtype, number> = { F32: 4, F16: 2, BF16: 2 }

interface TensorSpec {
  readonly name: string
  readonly dtype: Dtype
  readonly shape: readonly number[]
}

/** The tensors of the model, in file order. */
export function modelTensors(options: ModelOptions): TensorSpec[] {
  const { hidden, layers, vocab } = dimensions(options)
  const inter = 2 * hidden
  const out: TensorSpec[] = [{ name: 'model.embed_tokens.weight', dtype: 'F32', shape: [vocab, hidden] }]
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`
    out.push({ name: `${p}.input_layernorm.weight`, dtype: 'F32', shape: [hidden] })
    for (const proj of ['q', 'k', 'v', 'o']) {
      out.push({ name: `${p}.self_attn.${proj}_proj.weight`, dtype: 'BF16', shape: [hidden, hidden] })
    }
    out.push({ name: `${p}.post_attention_layernorm.weight`, dtype: 'F32', shape: [hidden] })
    out.push({ name: `${p}.mlp.gate_proj.weight`, dtype: 'F16', shape: [inter, hidden] })
    out.push({ name: `${p}.mlp.up_proj.weight`, dtype: 'F16', shape: [inter, hidden] })
    out.push({ name: `${p}.mlp.down_proj.weight`, dtype: 'F16', shape: [hidden, inter] })
  }
  out.push({ name: 'model.norm.weight', dtype: 'F32', shape: [hidden] })
  out.push({ name: 'lm_head.weight', dtype: 'BF16', shape: [vocab, hidden] })
  return out
}

function dimensions(options: ModelOptions): { hidden: number; layers: number; vocab: number } {
  const hidden = options.hidden ?? 192
  const layers = options.layers ?? 4
  const vocab = options.vocab ?? 2048
  if (!Number.isSafeInteger(options.seed)) throw new RangeError('seed must be a safe integer')
  if (!Number.isInteger(hidden) || hidden < 64 || hidden % 64 !== 0) {
    throw new RangeError('hidden must be a positive multiple of 64')
  }
  if (!Number.isInteger(layers) || layers < 1 || layers > 1024)
    throw new RangeError('layers must be 1 to 1024')
  if (!Number.isInteger(vocab) || vocab < 8 || vocab > 1 << 20)
    throw new RangeError('vocab must be 8 to 2^20')
  return { hidden, layers, vocab }
}

const elements = (t: TensorSpec) => t.shape.reduce((a, b) => a * b, 1)
const byteLength = (t: TensorSpec) => elements(t) * DTYPE_BYTES[t.dtype]

/** Writes the model into `dir` (created if missing; other files there are left alone). */
export async function generateModel(dir: string, options: ModelOptions): Promise<GeneratedModel> {
  const { hidden, layers, vocab } = dimensions(options)
  const maxShard = options.maxShardBytes ?? 2 * 1024 * 1024
  const tensors = modelTensors(options)
  const shards: TensorSpec[][] = [[]]
  let used = 0
  for (const t of tensors) {
    const n = byteLength(t)
    if (used > 0 && used + n > maxShard) {
      shards.push([])
      used = 0
    }
    shards[shards.length - 1]!.push(t)
    used += n
  }
  await mkdir(dir, { recursive: true })
  const count = shards.length
  const names = shards.map((_, i) =>
    count === 1 ? 'model.safetensors' : `model-${pad5(i + 1)}-of-${pad5(count)}.safetensors`,
  )
  const written: Record<string, number> = {}
  const weightMap: Record<string, string> = {}
  for (const [i, shard] of shards.entries()) {
    const bytes = safetensorsFile(shard, options.seed)
    written[names[i]!] = bytes.length
    for (const t of shard) weightMap[t.name] = names[i]!
    await writeFile(join(dir, names[i]!), bytes)
  }
  const tensorBytes = tensors.reduce((s, t) => s + byteLength(t), 0)
  const json: Record<string, unknown> = {
    'config.json': config(options.seed, hidden, layers, vocab),
    'tokenizer.json': tokenizer(options.seed, vocab),
  }
  if (count > 1) {
    const sortedMap = Object.fromEntries(
      Object.keys(weightMap)
        .sort()
        .map((k) => [k, weightMap[k]]),
    )
    json['model.safetensors.index.json'] = { metadata: { total_size: tensorBytes }, weight_map: sortedMap }
  }
  for (const [name, value] of Object.entries(json)) {
    const text = Buffer.from(`${JSON.stringify(value, null, 2)}\n`)
    written[name] = text.length
    await writeFile(join(dir, name), text)
  }
  const files = Object.keys(written).sort()
  return {
    files,
    parameters: tensors.reduce((s, t) => s + elements(t), 0),
    dtypes: [...new Set(tensors.map((t) => t.dtype))].sort(),
    bytes: files.reduce((s, f) => s + written[f]!, 0),
    tensorBytes,
  }
}

function pad5(n: number): string {
  return String(n).padStart(5, '0')
}

/** A complete safetensors file: u64 LE header length, JSON header padded to 8 bytes, data. */
function safetensorsFile(tensors: readonly TensorSpec[], seed: number): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } }
  let offset = 0
  for (const t of tensors) {
    const n = byteLength(t)
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] }
    offset += n
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8)
  const headerBytes = Buffer.from(json)
  const out = Buffer.alloc(8 + headerBytes.length + offset)
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0)
  headerBytes.copy(out, 8)
  let at = 8 + headerBytes.length
  for (const t of tensors) {
    fillTensor(out.subarray(at, at + byteLength(t)), t, seed)
    at += byteLength(t)
  }
  return out
}

/**
 * Pseudo-random finite values with magnitudes between 2^-10 and 2^-3, built as bit patterns:
 * sign and mantissa from the generator, the exponent from a small range.
 */
function fillTensor(out: Buffer, t: TensorSpec, seed: number): void {
  const next = xoshiro128ss(sha256(`allmende-fixture:${seed}:${t.name}`))
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength)
  if (t.dtype === 'F32') {
    for (let i = 0; i < out.length; i += 4) {
      const w = next()
      view.setUint32(i, ((w & 0x80000000) | ((117 + ((w >>> 23) & 7)) << 23) | (w & 0x7fffff)) >>> 0, true)
    }
    return
  }
  // Two 16-bit values per draw: F16 has a 5-bit exponent (bias 15), BF16 an 8-bit one (bias 127).
  const [bias, mantBits] = t.dtype === 'F16' ? [5, 10] : [117, 7]
  const mantMask = (1 << mantBits) - 1
  for (let i = 0; i < out.length; i += 4) {
    const w = next()
    for (let h = 0; h < 2 && i + 2 * h < out.length; h++) {
      const v = h === 0 ? w & 0xffff : w >>> 16
      const sign = v & 0x8000
      const exp = bias + ((v >>> 12) & 7)
      view.setUint16(i + 2 * h, sign | (exp << mantBits) | (v & mantMask), true)
    }
  }
}

function sha256(text: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(text).digest())
}

/** xoshiro128** (Blackman & Vigna): 32-bit outputs from a 128-bit state taken from `key`. */
function xoshiro128ss(key: Uint8Array): () => number {
  const v = new DataView(key.buffer, key.byteOffset, key.byteLength)
  let a = v.getUint32(0, true)
  let b = v.getUint32(4, true)
  let c = v.getUint32(8, true)
  let d = v.getUint32(12, true)
  if ((a | b | c | d) === 0) a = 1
  return () => {
    const t = b << 9
    let r = Math.imul(b, 5)
    r = Math.imul((r << 7) | (r >>> 25), 9)
    c ^= a
    d ^= b
    b ^= c
    a ^= d
    c ^= t
    d = (d << 11) | (d >>> 21)
    return r >>> 0
  }
}

function config(seed: number, hidden: number, layers: number, vocab: number): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: hidden,
    intermediate_size: 2 * hidden,
    num_hidden_layers: layers,
    num_attention_heads: hidden / 64,
    num_key_value_heads: hidden / 64,
    vocab_size: vocab,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
    torch_dtype: 'bfloat16',
    allmende_fixture: { generator: 1, seed },
  }
}

/** A WordLevel tokenizer in the Hugging Face `tokenizers` JSON layout, with seeded words. */
function tokenizer(seed: number, vocab: number): Record<string, unknown> {
  const special = ['<unk>', '<s>', '</s>']
  const next = xoshiro128ss(sha256(`allmende-fixture:${seed}:tokenizer`))
  const words: Record<string, number> = {}
  special.forEach((s, i) => {
    words[s] = i
  })
  for (let id = special.length; id < vocab; id++) {
    let w = ''
    const len = 2 + (next() % 6)
    for (let k = 0; k < len; k++) w += String.fromCharCode(97 + (next() % 26))
    // The id in base 36 keeps every word distinct.
    words[`${w}${id.toString(36)}`] = id
  }
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: special.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: null,
    model: { type: 'WordLevel', vocab: words, unk_token: '<unk>' },
  }
}
