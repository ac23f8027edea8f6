/**
 * Files' sha256 followed along a depth-first block stream (node/weights/dfs-files.ts).
 *
 * A model directory is imported with the profile (`importDirectory`) into an in-memory store,
 * then its blocks are fed to `DfsFileDigests` in the order of a trustless gateway's
 * `dag-scope=all` CAR (walked here with @ipld/dag-pb, and checked once against the gateway
 * module's own CAR), with a `FileHashing` backed by node:crypto. The checks: every whole file's
 * digest and size; a file of one raw block; a repeated leaf left out (`dups=n`); a block out of
 * order or left out; a stream cut short inside a file or right after one; nested file nodes; and
 * that every file opened for hashing is closed exactly once.
 */
import { createHash, type Hash } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { CarBufferReader } from '@ipld/car/buffer-reader'
import * as dagPb from '@ipld/dag-pb'
import Fastify from 'fastify'
import { UnixFS } from 'ipfs-unixfs'
import { importer } from 'ipfs-unixfs-importer'
import { balanced } from 'ipfs-unixfs-importer/layout'
import type { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DfsFileDigests, type FileHashing } from '../../../../node/weights/dfs-files.js'
import { importDirectory } from '../../../../node/weights/directory.js'
import { registerGateway } from '../../../../node/weights/gateway.js'
import type { FileDigest } from '../../../../node/weights/local-files.js'
import { profileOptions } from '../../../../node/weights/profile.js'
import { seededBytes } from '../../../support/prng.js'

const MiB = 1024 * 1024
const RAW = 0x55
const DAG_PB = 0x70

const sha256 = (bytes: Uint8Array) => new Uint8Array(createHash('sha256').update(bytes).digest())
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex')

/** One 1 MiB chunk, twice: the file node links the same raw leaf two times. */
const twice = seededBytes(MiB, 7)
const CONTENT: Record<string, Uint8Array> = {
  'a.bin': seededBytes(3 * MiB + 1000, 1), // four leaves
  'b/c.bin': seededBytes(2 * MiB + 5, 2), // three leaves, in a subdirectory
  'b/d.txt': seededBytes(200, 3), // one raw block, in a subdirectory
  'dup.bin': Buffer.concat([twice, twice]), // two identical leaves
  'empty.bin': new Uint8Array(0),
  'small.txt': seededBytes(50, 4), // one raw block under the root
  'z.bin': seededBytes(MiB + MiB / 2, 5), // two leaves, the last file
}
const PATHS = Object.keys(CONTENT)

interface Block {
  readonly cid: CID
  readonly bytes: Uint8Array
}

/** A block store in memory: what the importer writes, what the walks read. */
class MemoryStore {
  readonly blocks = new Map<string, Uint8Array>()
  put = async (cid: CID, bytes: Uint8Array) => {
    this.blocks.set(cid.toString(), bytes)
    return cid
  }
  bytes(cid: CID): Uint8Array {
    const b = this.blocks.get(cid.toString())
    if (b === undefined) throw new Error(`the store lacks ${cid}`)
    return b
  }
}

const linksOf = (block: Block) => (block.cid.code === DAG_PB ? dagPb.decode(block.bytes).Links : [])

/**
 * The DAG under `root` depth-first, pre-order, links in order: the CAR of a trustless gateway
 * with `dag-scope=all`. With `dups: 'n'` a block already sent is not sent again, nor walked.
 */
function depthFirst(store: MemoryStore, root: CID, dups: 'n' | 'y'): Block[] {
  const out: Block[] = []
  const sent = new Set<string>()
  const stack: CID[] = [root]
  while (stack.length > 0) {
    const cid = stack.pop()!
    const key = cid.toString()
    if (dups === 'n' && sent.has(key)) continue
    sent.add(key)
    const block = { cid, bytes: store.bytes(cid) }
    out.push(block)
    const links = linksOf(block)
    for (let i = links.length - 1; i >= 0; i--) stack.push(links[i]!.Hash)
  }
  return out
}

/** Each file's path and file node CID, walking the directories' links by name. */
function filesUnder(store: MemoryStore, root: CID, prefix = ''): Map<string, CID> {
  const out = new Map<string, CID>()
  const node = dagPb.decode(store.bytes(root))
  for (const link of node.Links) {
    const path = `${prefix}${link.Name}`
    const child = link.Hash
    if (child.code === DAG_PB) {
      const fs = UnixFS.unmarshal(dagPb.decode(store.bytes(child)).Data ?? new Uint8Array())
      if (fs.type === 'directory') {
        for (const [p, c] of filesUnder(store, child, `${path}/`)) out.set(p, c)
        continue
      }
    }
    out.set(path, child)
  }
  return out
}

/** The leaf hashing the stream would do on the worker, with node:crypto, and checks on its use. */
class CryptoHashing implements FileHashing {
  private next = 0
  readonly open = new Map<number, Hash>()
  readonly closed = new Set<number>()
  readonly misuse: string[] = []

  openFile(): number {
    const id = this.next++
    this.open.set(id, createHash('sha256'))
    return id
  }
  feed(file: number, bytes: Uint8Array): void {
    const hash = this.open.get(file)
    if (hash === undefined) this.misuse.push(`a leaf for file ${file}, which is not open`)
    else hash.update(bytes)
  }
  async closeFile(file: number): Promise<Uint8Array> {
    const hash = this.open.get(file)
    if (hash === undefined) {
      this.misuse.push(`file ${file} closed twice or never opened`)
      return new Uint8Array(32)
    }
    this.open.delete(file)
    this.closed.add(file)
    return new Uint8Array(hash.digest())
  }
}

/**
 * Feeds `blocks` as gateway-fetch.ts's readCar does (a block counts as received from the moment
 * it is taken, before `block()` is called), then finishes. Every file opened must be closed.
 */
async function follow(root: CID, blocks: readonly Block[]): Promise<ReadonlyMap<string, FileDigest>> {
  const hashing = new CryptoHashing()
  const received = new Set<string>()
  const files = new DfsFileDigests(root, hashing, (key) => received.has(key))
  for (const { cid, bytes } of blocks) {
    received.add(cid.toString())
    const node = cid.code === DAG_PB ? dagPb.decode(bytes) : undefined
    const file = files.block(cid, bytes, node)
    if (file !== undefined) {
      expect(cid.code).toBe(RAW)
      hashing.feed(file, bytes)
    }
  }
  const digests = await files.finish()
  expect(hashing.misuse).toEqual([])
  expect([...hashing.open.keys()]).toEqual([]) // nothing left open on the hashing worker
  return digests
}

describe('DfsFileDigests', () => {
  let tmp: string
  let store: MemoryStore
  let root: CID
  let fileCids: Map<string, CID>
  /** The stream of a gateway with dups=n, and with dups=y. */
  let dupsN: Block[]
  let dupsY: Block[]

  /** The stream's index of the file node (or lone raw block) of `path`. */
  const at = (blocks: readonly Block[], path: string) =>
    blocks.findIndex((b) => b.cid.equals(fileCids.get(path)!))
  /** The stream's indexes of the raw leaves under the file node of `path`, in order. */
  const leavesOf = (blocks: readonly Block[], path: string): number[] => {
    const node = blocks[at(blocks, path)]!
    return linksOf(node).map((l) => blocks.findIndex((b) => b.cid.equals(l.Hash)))
  }
  /** What every file's digest must be: its size and the sha256 of its bytes. */
  const expected = (path: string): FileDigest => ({
    size: CONTENT[path]!.length,
    sha256: sha256(CONTENT[path]!),
  })
  const asText = (d: FileDigest | undefined) =>
    d === undefined ? undefined : { size: d.size, sha256: hex(d.sha256) }
  /** The digests by path, the sha256 in hex. */
  const byPath = (digests: ReadonlyMap<string, FileDigest>) => {
    const out: Record<string, { size: number; sha256: string } | undefined> = {}
    for (const path of PATHS) {
      const d = digests.get(fileCids.get(path)!.toString())
      if (d !== undefined) out[path] = asText(d)
    }
    return out
  }
  const want = (paths: readonly string[]) => Object.fromEntries(paths.map((p) => [p, asText(expected(p))]))

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'allmende-dfs-files-'))
    const dir = join(tmp, 'model')
    for (const [path, bytes] of Object.entries(CONTENT)) {
      await mkdir(dirname(join(dir, path)), { recursive: true })
      await writeFile(join(dir, path), bytes)
    }
    store = new MemoryStore()
    const imported = await importDirectory(dir, { blockstore: store })
    root = imported.root
    // The manifest's digests are the files' own (so the expectations below are the right ones).
    for (const f of imported.files) expect(hex(f.sha256)).toBe(hex(sha256(CONTENT[f.path]!)))
    fileCids = filesUnder(store, root)
    expect([...fileCids.keys()].sort()).toEqual([...PATHS].sort())
    dupsN = depthFirst(store, root, 'n')
    dupsY = depthFirst(store, root, 'y')
  })

  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true })
  })

  it('walks the DAG in the order of the gateway module’s CAR (dag-scope=all, dups=n)', async () => {
    const app = Fastify({ logger: false })
    registerGateway(app, {
      blockstore: {
        async *get(cid: CID) {
          yield store.bytes(cid)
        },
      },
      // The store holds the imported model and nothing else: all of it is under the root.
      pins: { isPinned: async (cid: CID) => store.blocks.has(cid.toString()) },
    })
    try {
      // gateway-fetch.ts's own query (which gets this gateway's default, dups=n), then dups=y,
      // which this gateway answers with dups=n for a DAG that repeats a block (dup.bin's leaf).
      for (const query of ['format=car&dag-scope=all&dups=n', 'format=car&dag-scope=all&car-dups=y']) {
        const res = await app.inject({
          method: 'GET',
          url: `/ipfs/${root}?${query}`,
          headers: { accept: 'application/vnd.ipld.car' },
        })
        expect(res.statusCode).toBe(200)
        expect(res.headers['content-type']).toBe('application/vnd.ipld.car; version=1; order=dfs; dups=n')
        const car = CarBufferReader.fromBytes(new Uint8Array(res.rawPayload))
        expect([...car.blocks()].map((b) => b.cid.toString())).toEqual(dupsN.map((b) => b.cid.toString()))
      }
    } finally {
      await app.close()
    }
    // The shapes the cases below rely on.
    expect(dupsY.length).toBe(dupsN.length + 1) // dup.bin's leaf, once more
    for (const path of ['a.bin', 'b/c.bin', 'dup.bin', 'z.bin']) expect(fileCids.get(path)!.code).toBe(DAG_PB)
    for (const path of ['b/d.txt', 'empty.bin', 'small.txt']) expect(fileCids.get(path)!.code).toBe(RAW)
    const dupLinks = linksOf(dupsN[at(dupsN, 'dup.bin')]!)
    expect(dupLinks.length).toBe(2)
    expect(dupLinks[0]!.Hash.equals(dupLinks[1]!.Hash)).toBe(true)
  })

  it('gives every file that came whole its sha256 and size, by file node CID (dups=n)', async () => {
    const digests = await follow(root, dupsN)
    const whole = PATHS.filter((p) => p !== 'dup.bin')
    expect(byPath(digests)).toEqual(want(whole))
    // Nothing but files' digests, keyed by their file node CIDs.
    expect(new Set(digests.keys())).toEqual(new Set(whole.map((p) => fileCids.get(p)!.toString())))
  })

  it('gives a file of one raw block under a directory its block digest', async () => {
    const digests = await follow(root, dupsN)
    for (const path of ['small.txt', 'b/d.txt', 'empty.bin']) {
      const cid = fileCids.get(path)!
      const d = digests.get(cid.toString())
      expect(d, path).toBeDefined()
      expect(hex(d!.sha256)).toBe(hex(cid.multihash.digest))
      expect(d!.size).toBe(CONTENT[path]!.length)
    }
  })

  it('leaves a file without a digest when a repeated leaf is left out (dups=n), and goes on after it', async () => {
    const digests = await follow(root, dupsN)
    expect(digests.has(fileCids.get('dup.bin')!.toString())).toBe(false)
    // The files after it still came in order.
    for (const path of ['empty.bin', 'small.txt', 'z.bin'])
      expect(asText(digests.get(fileCids.get(path)!.toString())), path).toEqual(asText(expected(path)))
  })

  it('with the repeat sent again (dups=y) that file is whole as well', async () => {
    const digests = await follow(root, dupsY)
    expect(byPath(digests)).toEqual(want(PATHS))
  })

  it('stops at a block out of order: no digest for that file or any after it, the earlier ones kept', async () => {
    // b/c.bin's second and third leaves swapped.
    const [, second, third] = leavesOf(dupsN, 'b/c.bin')
    expect(second).toBeGreaterThan(0)
    const swapped = [...dupsN]
    swapped[second!] = dupsN[third!]!
    swapped[third!] = dupsN[second!]!
    expect(byPath(await follow(root, swapped))).toEqual(want(['a.bin']))

    // The out-of-order block is a file node: the directory b's second file before its first.
    const c = at(dupsN, 'b/c.bin')
    const d = at(dupsN, 'b/d.txt')
    const early = [...dupsN.slice(0, c), dupsN[d]!, ...dupsN.slice(c, d), ...dupsN.slice(d + 1)]
    expect(early.length).toBe(dupsN.length)
    expect(byPath(await follow(root, early))).toEqual(want(['a.bin']))
  })

  it('treats a block left out (not a repeat) as out of order: nothing after it is followed', async () => {
    // a.bin's third leaf never comes; everything else does, in order.
    const dropped = leavesOf(dupsN, 'a.bin')[2]!
    const digests = await follow(
      root,
      dupsN.filter((_, i) => i !== dropped),
    )
    expect(byPath(digests)).toEqual({})
    // The same with the very first file after the root left out entirely (a.bin and its leaves).
    const a = at(dupsN, 'a.bin')
    const aLeaves = new Set(leavesOf(dupsN, 'a.bin'))
    expect(
      byPath(
        await follow(
          root,
          dupsN.filter((_, i) => i !== a && !aLeaves.has(i)),
        ),
      ),
    ).toEqual({})
  })

  it('gives nothing when the first block is not the root', async () => {
    expect(byPath(await follow(root, dupsN.slice(1)))).toEqual({})
  })

  it('finish() on a stream cut inside a file: no digest for it, the files before it kept', async () => {
    // Cut after b/c.bin's second leaf.
    const cut = leavesOf(dupsN, 'b/c.bin')[1]!
    expect(byPath(await follow(root, dupsN.slice(0, cut + 1)))).toEqual(want(['a.bin']))
    // Cut after z.bin's first leaf (the last file): every earlier whole file kept.
    const lastCut = leavesOf(dupsN, 'z.bin')[0]!
    expect(byPath(await follow(root, dupsN.slice(0, lastCut + 1)))).toEqual(
      want(PATHS.filter((p) => p !== 'dup.bin' && p !== 'z.bin')),
    )
    // Cut right after a file's last leaf: that file is whole, and finish() records it.
    const aEnd = leavesOf(dupsN, 'a.bin').at(-1)!
    expect(byPath(await follow(root, dupsN.slice(0, aEnd + 1)))).toEqual(want(['a.bin']))
    // Only the root: nothing.
    expect(byPath(await follow(root, dupsN.slice(0, 1)))).toEqual({})
  })

  it('follows files with nested file nodes (a narrower balanced layout): one digest per top file node', async () => {
    const other = new MemoryStore()
    const content = seededBytes(5 * MiB + 17, 9)
    let top: CID | undefined
    let file: CID | undefined
    for await (const e of importer([{ path: 'big.bin', content }], other, {
      ...profileOptions(),
      layout: balanced({ maxChildrenPerNode: 2 }),
    })) {
      if (e.path === '') top = e.cid
      if (e.path === 'big.bin') file = e.cid
    }
    const blocks = depthFirst(other, top!, 'n')
    // The file node links file nodes, not only leaves.
    const fileNode = blocks.find((b) => b.cid.equals(file!))!
    expect(linksOf(fileNode).some((l) => l.Hash.code === DAG_PB)).toBe(true)
    const digests = await follow(top!, blocks)
    expect([...digests.keys()]).toEqual([file!.toString()])
    expect(asText(digests.get(file!.toString()))).toEqual({
      size: content.length,
      sha256: hex(sha256(content)),
    })
    // Cut inside the second inner node: nothing.
    expect((await follow(top!, blocks.slice(0, blocks.length - 2))).size).toBe(0)
  })

  it('gives no digest for a file whose leaves are dag-pb nodes with inline data', async () => {
    const other = new MemoryStore()
    const content = seededBytes(2 * MiB + 3, 10)
    let top: CID | undefined
    let file: CID | undefined
    for await (const e of importer(
      [
        { path: 'inline.bin', content },
        { path: 'tiny.txt', content: seededBytes(9, 11) },
      ],
      other,
      {
        ...profileOptions(),
        rawLeaves: false,
      },
    )) {
      if (e.path === '') top = e.cid
      if (e.path === 'inline.bin') file = e.cid
    }
    const blocks = depthFirst(other, top!, 'n')
    expect(blocks.every((b) => b.cid.code === DAG_PB)).toBe(true)
    const digests = await follow(top!, blocks)
    expect(digests.has(file!.toString())).toBe(false)
    expect(digests.size).toBe(0)
  })
})
