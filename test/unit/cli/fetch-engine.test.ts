/**
 * The multi-source fetch against a gateway written here, byte for byte: the resolution of a path
 * takes a CAR of MAX_RESOLVE_BYTES and refuses one byte more; a range's CAR may carry repeats of
 * blocks already taken up to its budget (rangeBudget) and not a section past it; a leaf sent once
 * for two places is written to both.
 */
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { carHeader, sectionPrefix } from '../../../node/weights/car-sections.js'
import { PartialFile } from '../../../node/weights/multi-fetch-file.js'
import { FetchHasher } from '../../../node/weights/multi-fetch-hasher.js'
import { fetchRange, rangeBudget } from '../../../node/weights/multi-fetch-range.js'
import { MAX_RESOLVE_BYTES, resolveFile } from '../../../node/weights/multi-fetch-resolve.js'
import { DAG_PB_CODE, RAW_CODE } from '../../../protocol/cid.js'
import { codeOf } from '../../support/weights-files.js'

interface Block {
  readonly cid: CID
  readonly bytes: Uint8Array
}

function block(code: number, bytes: Uint8Array): Block {
  const digest = Digest.create(0x12, createHash('sha256').update(bytes).digest())
  return { cid: CID.createV1(code, digest), bytes }
}

const leaf = (n: number, salt: number) =>
  block(
    RAW_CODE,
    new Uint8Array(n).map((_, i) => (i * 7 + salt) & 0xff),
  )

function fileNode(leaves: readonly Block[]): Block {
  const data = new UnixFS({ type: 'file', blockSizes: leaves.map((l) => BigInt(l.bytes.length)) }).marshal()
  const links = leaves.map((l) => ({ Hash: l.cid, Tsize: l.bytes.length, Name: '' }))
  return block(DAG_PB_CODE, dagPb.encode(dagPb.prepare({ Data: data, Links: links })))
}

function directory(name: string, target: Block): Block {
  const data = new UnixFS({ type: 'directory' }).marshal()
  return block(
    DAG_PB_CODE,
    dagPb.encode(dagPb.prepare({ Data: data, Links: [{ Hash: target.cid, Name: name, Tsize: 1 }] })),
  )
}

const section = (b: Block) => Buffer.concat([sectionPrefix(b.cid, b.bytes.length), b.bytes])

/**
 * Raw blocks whose sections add up to exactly `bytes` (from 16 KiB on): 1 MiB sections, the last
 * one whatever is left. A section of `n` bytes holds a CID of 36 bytes, a length of 3 bytes
 * (16 KiB to 2 MiB) and a block of `n - 39`.
 */
function filler(bytes: number): Buffer[] {
  const sections: Buffer[] = []
  for (let left = bytes, salt = 1; left > 0; salt++) {
    const size = left > 1.5 * 1024 * 1024 ? 1024 * 1024 : left
    const s = section(leaf(size - 39, salt))
    if (s.length !== size) throw new Error(`a section of ${s.length} bytes, not ${size}`)
    sections.push(s)
    left -= size
  }
  return sections
}

let server: Server
let source = ''
let answer: Buffer = Buffer.alloc(0)
let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'allmende-fetch-engine-'))
  server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/vnd.ipld.car; version=1' })
    res.end(answer)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  source = `http://127.0.0.1:${(server.address() as { port: number }).port}`
})
afterAll(async () => {
  await new Promise((r) => server.close(r))
  await rm(dir, { recursive: true, force: true })
})

describe('resolving a path', () => {
  const file = leaf(1000, 9)
  const root = directory('a.bin', file)
  const head = Buffer.concat([carHeader([root.cid]), section(root), section(file)])
  const resolve = () =>
    resolveFile({
      source,
      weights: root.cid,
      path: 'a.bin',
      signal: AbortSignal.timeout(30_000),
      idleMs: 10_000,
    })

  it(`takes a CAR of ${MAX_RESOLVE_BYTES} bytes and refuses one of a byte more`, async () => {
    answer = Buffer.concat([head, ...filler(MAX_RESOLVE_BYTES - head.length)])
    expect(answer.length).toBe(MAX_RESOLVE_BYTES)
    const found = await resolve()
    expect(found.cid.equals(file.cid)).toBe(true)
    expect(Buffer.from(found.whole!).equals(Buffer.from(file.bytes))).toBe(true)
    answer = Buffer.concat([head, ...filler(MAX_RESOLVE_BYTES + 1 - head.length)])
    expect(await codeOf(resolve())).toBe('car-invalid')
  }, 60_000)
})

describe('a range', () => {
  const leaves = [leaf(1024, 1), leaf(1024, 2)]
  const file = fileNode(leaves)
  const root = directory('f.bin', file)
  const span = { start: 0, end: 2048 }
  const sha256 = new Uint8Array(
    createHash('sha256')
      .update(Buffer.concat(leaves.map((l) => l.bytes)))
      .digest(),
  )

  async function fetchWith(repeats: number): Promise<string> {
    const hasher = new FetchHasher(4)
    const target = join(dir, `f-${repeats}.bin`)
    const partial = await PartialFile.open(
      { path: 'f.bin', size: 2048, sha256, target },
      root.cid.toString(),
      hasher,
    )
    // A repeat of a block already taken is read past; the budget bounds how many.
    answer = Buffer.concat([
      carHeader([root.cid]),
      section(root),
      section(file),
      ...leaves.map(section),
      ...Array.from({ length: repeats }, () => section(leaves[0]!)),
    ])
    try {
      const resolved = { cid: file.cid, pathBlocks: new Set([root.cid.toString()]) }
      const options = { source, weights: root.cid, file: partial, resolved, span, hasher, idleMs: 10_000 }
      return await codeOf(fetchRange({ ...options, signal: AbortSignal.timeout(30_000) }))
    } finally {
      await partial.close()
      await hasher.stop()
    }
  }

  it('may repeat blocks up to its budget, not a section past it', async () => {
    const base =
      carHeader([root.cid]).length +
      section(root).length +
      section(file).length +
      2 * section(leaves[0]!).length
    const repeat = section(leaves[0]!).length
    const fits = Math.floor((rangeBudget(span) - base) / repeat)
    expect(await fetchWith(fits)).toBe('resolved')
    expect(await fetchWith(fits + 1)).toBe('car-invalid')
  }, 60_000)

  it('a leaf sent once for two places (dups=n) is written to both', async () => {
    const same = leaf(1024, 3)
    const twice = fileNode([same, same])
    const top = directory('t.bin', twice)
    const bytes = Buffer.concat([same.bytes, same.bytes])
    const digest = new Uint8Array(createHash('sha256').update(bytes).digest())
    const hasher = new FetchHasher(4)
    const target = join(dir, 't.bin')
    const partial = await PartialFile.open(
      { path: 't.bin', size: 2048, sha256: digest, target },
      top.cid.toString(),
      hasher,
    )
    answer = Buffer.concat([carHeader([top.cid]), section(top), section(twice), section(same)])
    try {
      const resolved = { cid: twice.cid, pathBlocks: new Set([top.cid.toString()]) }
      const options = { source, weights: top.cid, file: partial, resolved, span, hasher, idleMs: 10_000 }
      await fetchRange({ ...options, signal: AbortSignal.timeout(30_000) })
      expect(partial.complete).toBe(true)
      await partial.finish()
    } finally {
      await partial.close()
      await hasher.stop()
    }
    expect((await readFile(target)).equals(bytes)).toBe(true)
  }, 60_000)
})
