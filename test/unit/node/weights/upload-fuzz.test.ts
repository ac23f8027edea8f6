/**
 * Property: whatever arrives at POST /weights — random bytes, CARs cut, spliced, bit-flipped,
 * reordered, padded with strays, cut into any chunks, under a valid statement, a forged, replayed,
 * stale or misdirected one, the admin token or nothing — the upload receiver never crashes (every
 * refusal is a NodeError with a stable code, never a 500), never hangs, leaves its staging
 * directory empty, and stores nothing unless the upload was authenticated and complete: after a
 * 201 the blockstore holds exactly what it held before plus the DAG under the signed root (checked
 * here with ipfs-unixfs-exporter, not with the code under test), and its logical size is the one
 * signed; after anything else it holds exactly what it held before.
 *
 * The receiver is the real one (registerWeightsRoutes, createWeights, staging and nonce file) on a
 * real blockstore-fs FsBlockstore in a temporary directory, driven through Fastify's inject (the
 * body as a stream of chunks).
 *
 * Runs: UPLOAD_FUZZ_RUNS (default 2,000, see RUNS); UPLOAD_FUZZ_SEED picks another seed.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { FsBlockstore } from 'blockstore-fs'
import { NextToLast } from 'blockstore-fs/sharding'
import fc from 'fast-check'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import { exporter, recursive as exportRecursive } from 'ipfs-unixfs-exporter'
import { base58btc } from 'multiformats/bases/base58'
import { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nativeSigner } from '../../../../node/ed25519-native.js'
import { isNodeError, NodeError } from '../../../../node/errors.js'
import { openUploadNonces } from '../../../../node/weights/upload-nonces.js'
import { registerWeightsRoutes } from '../../../../node/weights/upload-routes.js'
import { UploadStaging } from '../../../../node/weights/upload-staging.js'
import { createWeights, UPLOAD_WINDOW_MS, UploadSlots } from '../../../../node/weights/uploads.js'
import { concatBytes, publicKeyOf } from '../../../../protocol/index.js'
import { rulesWith, Simulator } from '../../../support/simulator.js'
import { tempDirForFile } from '../../../support/temp-dir.js'
import {
  type Block,
  carOf,
  type Dag,
  directoryOf,
  fileOf,
  randomFile,
  rawBlock,
  repeatedLeaf,
  statementHeaders,
} from '../../../support/uploads.js'

/**
 * 10,000 cases take about a minute on an idle 2-core machine and several under load, so `npm test`
 * runs 2,000; the full run is `UPLOAD_FUZZ_RUNS=10000 npx vitest run test/unit/node/weights/upload-fuzz.test.ts`.
 */
const RUNS = Number(process.env.UPLOAD_FUZZ_RUNS ?? 2_000)
const MAX_MODEL_BYTES = 256 * 1024
const TOKEN = randomBytes(32).toString('base64url')
/** How long one case may take before it counts as a hang (a bound, not a measurement). */
const CASE_BOUND_MS = 20_000

const sim = new Simulator({
  members: [
    { name: 'p', roles: ['publisher', 'voter'], weight: 1 },
    { name: 's', roles: ['steward', 'voter'], weight: 1 },
    { name: 'v', roles: ['voter'], weight: 1 },
  ],
  rules: rulesWith({ maxModelBytes: MAX_MODEL_BYTES }),
  name: 'upload fuzz',
  // node:crypto signs: thousands of statements are signed here.
  signer: nativeSigner,
})

/** A peer id as libp2p writes it: base58btc of the identity multihash of an Ed25519 key. */
function peerIdOf(seed: number): string {
  const key = publicKeyOf(new Uint8Array(32).fill(seed))
  return base58btc.baseEncode(concatBytes(Uint8Array.of(0x00, 0x24, 0x08, 0x01, 0x12, 0x20), key))
}
const PEER_ID = peerIdOf(1)
const OTHER_PEER_ID = peerIdOf(2)

const dir = tempDirForFile('allmende-upload-fuzz-')
const layout = new NextToLast()

// ---------------------------------------------------------------- the receiver under test

let app: FastifyInstance
let blockstore: FsBlockstore
let closeNonces: () => Promise<void>

async function startReceiver(): Promise<void> {
  const root = dir()
  blockstore = new FsBlockstore(join(root, 'blocks'))
  await blockstore.open()
  const { staging } = await UploadStaging.open(join(root, 'staging'), blockstore)
  const nonces = await openUploadNonces(join(root, 'nonces'), { clock: Date.now, windowMs: UPLOAD_WINDOW_MS })
  closeNonces = () => nonces.close()
  const weights = createWeights({
    blockstore,
    staging,
    gate: {
      federation: sim.federation,
      peerId: PEER_ID,
      nonces,
      slots: new UploadSlots(2, 8),
      idleMs: 10_000,
      windowMs: UPLOAD_WINDOW_MS,
    },
  })
  app = Fastify({ logger: false })
  // As node/api.ts answers: a NodeError is its code; anything else is a 500, which fails the property.
  app.setErrorHandler((error: Error, _req, reply) =>
    isNodeError(error)
      ? reply.code(error.status).send({ error: { code: error.code, message: error.message } })
      : reply.code(500).send({ error: { code: 'internal', message: String(error?.stack ?? error) } }),
  )
  await registerWeightsRoutes(app, {
    weights,
    blockstore,
    fold: sim.fold,
    clock: Date.now,
    requireAdmin: (req: FastifyRequest) => {
      if (req.headers.authorization !== `Bearer ${TOKEN}`)
        throw new NodeError('unauthorized', 'the admin token is wrong', { status: 401 })
    },
  })
  await app.ready()
}

// ---------------------------------------------------------------- the DAGs mutated

let bases: Dag[]

async function makeBases(): Promise<Dag[]> {
  const single = await rawBlock(randomBytes(100))
  const nested = await fileOf([await rawBlock(randomBytes(300)), await rawBlock(randomBytes(200))])
  const nestedNode = nested.blocks[0]!
  // A file whose links are a file node and a leaf: UnixFS allows intermediate file nodes.
  const outerLeaf = await rawBlock(randomBytes(50))
  const outer = await fileOf([{ cid: nestedNode.cid, bytes: new Uint8Array(nested.size) }, outerLeaf])
  return [
    { root: single.cid, blocks: [single], size: 100 },
    await randomFile(3, 1000),
    await directoryOf([
      { name: 'a', dag: await randomFile(2, 700) },
      { name: 'b', dag: await randomFile(1, 900) },
    ]),
    // 16 KiB linked 20 times: 320 KiB when read, over the 256 KiB maxModelBytes.
    await repeatedLeaf(16 * 1024, 20),
    // 1 KiB linked 10 times: 10 KiB, within it.
    await repeatedLeaf(1024, 10),
    {
      root: outer.root,
      blocks: [outer.blocks[0]!, nestedNode, ...nested.blocks.slice(1), outerLeaf],
      size: nested.size + 50,
    },
  ]
}

// ---------------------------------------------------------------- cases

type Auth =
  | 'valid'
  | 'admin'
  | 'none'
  | 'forged'
  | 'size-plus-one'
  | 'size-minus-one'
  | 'non-publisher'
  | 'other-root'
  | 'other-node'
  | 'stale'
  | 'version-1'
  | 'replay'
  | 'bad-token'

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'overwrite'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; length: number }

interface Case {
  base: number
  /** Blocks of the base in the CAR: its order (a permutation seed), and which to drop or repeat. */
  order: number
  drop: number | null
  repeat: number | null
  strays: number
  /** Another base's root in the CAR header. */
  headerRoot: number | null
  mutations: Mutation[]
  /** Instead of a CAR: these bytes. */
  random: Uint8Array | null
  chunks: number[]
  auth: Auth
}

/** A position in the bytes, as a fraction of their length: spread evenly, not biased to the ends. */
const fraction = fc.noBias(fc.integer({ min: 0, max: 999_999 })).map((n) => n / 1_000_000)
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fraction, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fraction }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fraction,
    bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }),
  }),
  fc.record({
    kind: fc.constant('overwrite' as const),
    at: fraction,
    bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }),
  }),
  fc.record({ kind: fc.constant('delete' as const), at: fraction, length: fc.integer({ min: 1, max: 64 }) }),
)
const authArb: fc.Arbitrary<Auth> = fc.oneof(
  { weight: 8, arbitrary: fc.constant('valid' as const) },
  { weight: 2, arbitrary: fc.constant('admin' as const) },
  {
    weight: 10,
    arbitrary: fc.constantFrom<Auth>(
      'none',
      'forged',
      'size-plus-one',
      'size-minus-one',
      'non-publisher',
      'other-root',
      'other-node',
      'stale',
      'version-1',
      'replay',
      'bad-token',
    ),
  },
)
/** `arb` one time in `n`, else null. */
const oneIn = <T>(n: number, arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> =>
  fc.oneof({ weight: 1, arbitrary: arb }, { weight: n - 1, arbitrary: fc.constant(null) })

const caseArb: fc.Arbitrary<Case> = fc.record({
  base: fc.integer({ min: 0, max: 5 }),
  order: fc.nat(),
  drop: oneIn(6, fc.nat()),
  repeat: oneIn(3, fc.nat()),
  strays: fc.integer({ min: 0, max: 3 }),
  headerRoot: oneIn(10, fc.integer({ min: 0, max: 5 })),
  mutations: fc.oneof(
    { weight: 3, arbitrary: fc.constant([] as Mutation[]) },
    { weight: 4, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 3 }) },
  ),
  random: oneIn(10, fc.uint8Array({ maxLength: 2048 })),
  chunks: fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 6 }),
  auth: authArb,
})

function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  const at = Math.floor(m.at * (bytes.length + 1))
  switch (m.kind) {
    case 'flip': {
      if (bytes.length === 0) return bytes
      const out = Uint8Array.from(bytes)
      const i = Math.min(at, bytes.length - 1)
      out[i] = out[i]! ^ (1 << m.bit)
      return out
    }
    case 'truncate':
      return bytes.subarray(0, at)
    case 'insert':
      return concatBytes(bytes.subarray(0, at), m.bytes, bytes.subarray(at))
    case 'overwrite': {
      const out = Uint8Array.from(bytes)
      out.set(m.bytes.subarray(0, Math.max(0, out.length - at)), Math.min(at, out.length))
      return out
    }
    case 'delete':
      return concatBytes(bytes.subarray(0, at), bytes.subarray(at + m.length))
  }
}

/** The blocks of the CAR a case sends, in order. */
async function carBlocks(c: Case, dag: Dag): Promise<Block[]> {
  const blocks = [...dag.blocks]
  // A permutation from the seed: rotate and reverse.
  const k = c.order % blocks.length
  let ordered = [...blocks.slice(k), ...blocks.slice(0, k)]
  if (c.order % 2 === 1) ordered.reverse()
  if (c.drop !== null) ordered = ordered.filter((_, i) => i !== c.drop! % ordered.length)
  if (c.repeat !== null && ordered.length > 0) ordered.push(ordered[c.repeat % ordered.length]!)
  for (let i = 0; i < c.strays; i++)
    ordered.splice(i % (ordered.length + 1), 0, await rawBlock(randomBytes(64 + i)))
  return ordered
}

function chunked(bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let off = 0, i = 0; off < bytes.length; i++) {
    const n = sizes[i % sizes.length]!
    out.push(bytes.subarray(off, off + n))
    off += n
  }
  return out
}

/** The statement (or token) headers of a case; `replayable` are the last valid statement's. */
let lastValid: Record<string, string> | undefined

function headersOf(c: Case, dag: Dag): { headers: Record<string, string>; authenticated: boolean } {
  const fields = { federation: sim.federation, peerId: PEER_ID, root: dag.root, size: dag.size }
  const p = sim.signer('p')
  switch (c.auth) {
    case 'valid': {
      const headers = statementHeaders(p, fields)
      lastValid = headers
      return { headers, authenticated: true }
    }
    case 'admin':
      return { headers: { authorization: `Bearer ${TOKEN}` }, authenticated: true }
    case 'bad-token':
      return { headers: { authorization: `Bearer ${TOKEN}x` }, authenticated: false }
    case 'none':
      return { headers: {}, authenticated: false }
    case 'forged': {
      const headers = statementHeaders(p, fields)
      const sig = Buffer.from(headers['allmende-upload-signature']!, 'base64')
      sig[5] = sig[5]! ^ 1
      return {
        headers: { ...headers, 'allmende-upload-signature': sig.toString('base64') },
        authenticated: false,
      }
    }
    case 'size-plus-one':
      return { headers: statementHeaders(p, { ...fields, size: dag.size + 1 }), authenticated: false }
    case 'size-minus-one':
      return {
        headers: statementHeaders(p, { ...fields, size: Math.max(0, dag.size - 1) }),
        authenticated: false,
      }
    case 'non-publisher':
      return { headers: statementHeaders(sim.signer('v'), fields), authenticated: false }
    case 'other-root':
      return {
        headers: statementHeaders(p, {
          ...fields,
          root: bases[(bases.indexOf(dag) + 1) % bases.length]!.root,
        }),
        authenticated: false,
      }
    case 'other-node':
      return { headers: statementHeaders(p, { ...fields, peerId: OTHER_PEER_ID }), authenticated: false }
    case 'stale':
      return {
        headers: statementHeaders(p, { ...fields, at: Date.now() - UPLOAD_WINDOW_MS - 60_000 }),
        authenticated: false,
      }
    case 'version-1': {
      const { 'allmende-upload-version': _, ...rest } = statementHeaders(p, fields)
      return { headers: rest, authenticated: false }
    }
    case 'replay':
      // Its nonce was taken (or it was refused before, which never happens to a valid one): refused.
      return { headers: lastValid ?? {}, authenticated: false }
  }
}

// ---------------------------------------------------------------- what the blockstore holds

async function filesUnder(path: string): Promise<Set<string>> {
  try {
    const entries = await readdir(path, { recursive: true, withFileTypes: true })
    return new Set(entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name)))
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Set()
    throw e
  }
}

const blockPath = (cid: CID) => {
  const { dir: shard, file } = layout.encode(cid)
  return join(dir(), 'blocks', shard, file)
}

/**
 * The DAG under `root` as ipfs-unixfs-exporter reads it from the blockstore: every block it reaches
 * (each file's content read through), and the bytes every file yields (a leaf linked N times is
 * read N times). Throws when a block is missing.
 */
async function exported(root: CID): Promise<{ blocks: Set<string>; size: number }> {
  const blocks = new Set<string>()
  const reading = {
    async *get(cid: CID) {
      blocks.add(blockPath(cid))
      for await (const part of blockstore.get(cid)) yield part
    },
  }
  let size = 0
  for await (const listed of exportRecursive(root, reading)) {
    const entry = await exporter(listed.cid, reading)
    if (entry.type !== 'file' && entry.type !== 'raw') continue
    for await (const part of entry.content()) size += part.byteLength
  }
  return { blocks, size }
}

// ---------------------------------------------------------------- the property

const outcomes = new Map<string, number>()

async function runCase(c: Case): Promise<void> {
  const dag = bases[c.base]!
  const header = c.headerRoot === null ? dag.root : bases[c.headerRoot]!.root
  let body = c.random ?? (await carOf(header, await carBlocks(c, dag)))
  for (const m of c.mutations) body = mutate(body, m)
  const { headers, authenticated } = headersOf(c, dag)
  const before = await filesUnder(join(dir(), 'blocks'))

  const injected = app.inject({
    method: 'POST',
    url: '/weights',
    headers: { 'content-type': 'application/vnd.ipld.car', ...headers },
    payload: Readable.from(chunked(body, c.chunks)),
  })
  let timer: NodeJS.Timeout | undefined
  const res = await Promise.race([
    injected,
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer after ${CASE_BOUND_MS} ms: a hang`)),
        CASE_BOUND_MS,
      )
    }),
  ]).finally(() => clearTimeout(timer))

  const answer = res.json() as {
    root?: string
    bytes?: number
    error?: { code?: unknown; message?: unknown }
  }
  expect(res.statusCode, JSON.stringify(answer)).not.toBe(500)
  const outcome = res.statusCode === 201 ? 'stored' : String(answer.error?.code)
  outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
  expect(await filesUnder(join(dir(), 'staging'))).toEqual(new Set())
  const after = await filesUnder(join(dir(), 'blocks'))

  if (res.statusCode !== 201) {
    expect(res.statusCode).toBeGreaterThanOrEqual(400)
    expect(typeof answer.error?.code).toBe('string')
    expect(typeof answer.error?.message).toBe('string')
    expect(after).toEqual(before)
    return
  }
  // Stored: only under a valid statement or the admin token, and only the complete DAG.
  expect(authenticated, `stored under ${c.auth}`).toBe(true)
  if (c.auth === 'valid') expect(answer.root).toBe(dag.root.toString())
  const stored = await exported(CID.parse(String(answer.root)))
  expect(stored.size).toBe(answer.bytes)
  expect(stored.size).toBeLessThanOrEqual(MAX_MODEL_BYTES)
  if (c.auth === 'valid') expect(stored.size).toBe(dag.size)
  expect(after).toEqual(new Set([...before, ...stored.blocks]))
}

describe('upload CAR streams, fuzzed', () => {
  beforeAll(async () => {
    await mkdir(dir(), { recursive: true })
    bases = await makeBases()
    await startReceiver()
  }, 60_000)
  afterAll(async () => {
    await app?.close()
    await closeNonces?.()
    await blockstore?.close()
  })

  it(`${RUNS} random and mutated uploads: no crash, no hang, nothing stored unless authenticated and complete`, async () => {
    await fc.assert(fc.asyncProperty(caseArb, runCase), {
      numRuns: RUNS,
      seed: Number(process.env.UPLOAD_FUZZ_SEED ?? 20260514),
    })
    // Every kind of outcome was reached: the property was not passed by refusing everything.
    const seen = Object.fromEntries([...outcomes].sort((a, b) => b[1] - a[1]))
    console.log(`upload fuzz: ${RUNS} cases, outcomes:`, JSON.stringify(seen))
    for (const code of [
      'stored',
      'bad-car',
      'block-hash-mismatch',
      'dag-incomplete',
      'upload-root-mismatch',
      'upload-size-mismatch',
      'upload-too-large',
      'upload-signature-invalid',
      'upload-replayed',
      'not-a-publisher',
      'upload-node-mismatch',
      'upload-stale',
      'upload-statement-outdated',
      'unauthorized',
    ])
      expect(outcomes.get(code) ?? 0, code).toBeGreaterThan(0)
  }, 600_000)
})
