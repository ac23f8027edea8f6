/**
 * Weights against a manifest (node/weights/verify.ts): a model directory (intact, a flipped byte,
 * an extra, a missing, a truncated file, a manifest path leading out), and a DAG in a real
 * FsBlockstore (intact, a missing block, a corrupt block, a wrong sha256, oversize, a DAG with
 * the right bytes but another chunking, and a store that would wait on the network).
 */
import { cp, mkdtemp, open, rm, symlink, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagPb from '@ipld/dag-pb'
import { FsBlockstore } from 'blockstore-fs'
import { importer } from 'ipfs-unixfs-importer'
import { balanced } from 'ipfs-unixfs-importer/layout'
import type { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateModel } from '../../../../fixtures/models.js'
import { type DirectoryImport, importDirectory } from '../../../../node/weights/directory.js'
import { type FileDigest, listDirectory, readChunks } from '../../../../node/weights/local-files.js'
import { profileOptions } from '../../../../node/weights/profile.js'
import { type Problem, verifyDag, type WeightsManifest } from '../../../../node/weights/verify.js'
import { verifyDirectory } from '../../../../node/weights/verify-directory.js'

let tmp: string
let model: string
let imported: DirectoryImport
let manifest: WeightsManifest
let store: FsBlockstore
const leaves: { cid: CID; bytes: number }[] = []

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'allmende-weights-verify-'))
  model = join(tmp, 'model')
  await generateModel(model, { seed: 11 })
  store = new FsBlockstore(join(tmp, 'blocks'))
  await store.open()
  const recording = {
    put: async (cid: CID, bytes: Uint8Array) => {
      if (cid.code === 0x55) leaves.push({ cid, bytes: bytes.length })
      return store.put(cid, bytes)
    },
  }
  imported = await importDirectory(model, { blockstore: recording })
  manifest = { weights: imported.root, files: imported.files, size: imported.size }
})

afterAll(async () => {
  await store.close()
  await rm(tmp, { recursive: true, force: true })
})

const codes = (problems: readonly Problem[]) => problems.map((p) => [p.code, p.path])
let copies = 0
async function copyOfModel(): Promise<string> {
  const dir = join(tmp, `copy-${copies++}`)
  await cp(model, dir, { recursive: true })
  return dir
}
const MAX = 1024 * 1024 * 1024
const shard = 'model-00002-of-00003.safetensors'

describe('verifyDirectory', () => {
  it('passes an intact copy, with and without the root', async () => {
    const dir = await copyOfModel()
    expect(await verifyDirectory(dir, manifest)).toEqual({ ok: true, problems: [] })
    expect(await verifyDirectory(dir, manifest, { cid: true })).toEqual({ ok: true, problems: [] })
  })

  it('names the file with a flipped byte', async () => {
    const dir = await copyOfModel()
    const fh = await open(join(dir, shard), 'r+')
    const b = Buffer.alloc(1)
    await fh.read(b, 0, 1, 1_500_000)
    b[0]! ^= 0x01
    await fh.write(b, 0, 1, 1_500_000)
    await fh.close()
    const plain = await verifyDirectory(dir, manifest)
    expect(plain.ok).toBe(false)
    expect(codes(plain.problems)).toEqual([['sha256-mismatch', shard]])
    expect(plain.problems[0]!.message).toContain(shard)
    const withRoot = await verifyDirectory(dir, manifest, { cid: true })
    expect(codes(withRoot.problems)).toEqual([
      ['root-mismatch', undefined],
      ['sha256-mismatch', shard],
    ])
  })

  it('reports an extra file, a missing file and a truncated file', async () => {
    const dir = await copyOfModel()
    await writeFile(join(dir, 'notes.txt'), 'not published')
    await rm(join(dir, 'tokenizer.json'))
    await truncate(join(dir, shard), 1000)
    const r = await verifyDirectory(dir, manifest, { cid: true })
    expect(r.ok).toBe(false)
    expect(codes(r.problems)).toEqual([
      ['size-mismatch', shard],
      ['file-extra', 'notes.txt'],
      ['file-missing', 'tokenizer.json'],
    ])
  })

  it('never looks up a manifest path that leads out of the directory', async () => {
    const dir = await copyOfModel()
    const evil = {
      ...manifest,
      files: [...manifest.files, { path: '../../../model/config.json', size: 1, sha256: new Uint8Array(32) }],
    }
    const r = await verifyDirectory(dir, { ...evil, size: manifest.size + 1 })
    expect(codes(r.problems)).toEqual([['path-invalid', '../../../model/config.json']])
  })
})

describe('verifyDirectory (reads that fail)', () => {
  it('reports an abort, with the file it happened in, in both modes', async () => {
    const dir = await copyOfModel()
    const controller = new AbortController()
    controller.abort()
    for (const cid of [false, true]) {
      const r = await verifyDirectory(dir, manifest, { cid, signal: controller.signal })
      expect(codes(r.problems)).toEqual([['aborted', 'config.json']])
    }
  })

  it('reports a link leading out as a problem, not a throw', async () => {
    const dir = await copyOfModel()
    await rm(join(dir, 'config.json'))
    await symlink(join(model, 'config.json'), join(dir, 'config.json'))
    const r = await verifyDirectory(dir, manifest, { cid: true })
    expect(codes(r.problems)).toEqual([
      ['file-missing', 'config.json'],
      ['symlink-escapes', 'config.json'],
    ])
  })
})

describe('verifyDag', () => {
  it('passes the imported model', async () => {
    expect(await verifyDag(store, manifest, { maxModelBytes: MAX })).toEqual({ ok: true, problems: [] })
  })

  it('reports a manifest sha256 that the bytes do not have, naming the file', async () => {
    const files = manifest.files.map((f) =>
      f.path === shard ? { ...f, sha256: Uint8Array.from(f.sha256, (x, i) => (i === 0 ? x ^ 1 : x)) } : f,
    )
    const r = await verifyDag(store, { ...manifest, files }, { maxModelBytes: MAX })
    expect(codes(r.problems)).toEqual([['sha256-mismatch', shard]])
  })

  it('refuses an oversize model before reading its data, whether the manifest or the DAG says so', async () => {
    const r = await verifyDag(store, manifest, { maxModelBytes: manifest.size - 1 })
    expect(codes(r.problems)).toEqual([['oversize', undefined]])
    // A manifest that understates the sizes: the DAG's declared sizes still count.
    const files = manifest.files.map((f) => ({ ...f, size: 1 }))
    const small = { ...manifest, files, size: files.length }
    const lying = await verifyDag(store, small, { maxModelBytes: manifest.size - 1 })
    expect(codes(lying.problems)).toEqual([['oversize', undefined]])
  })

  it('reports a missing block, and a block whose bytes do not match its CID', async () => {
    const dir = join(tmp, 'store-faults')
    const faulty = new FsBlockstore(dir)
    await faulty.open()
    const r = await importDirectory(model, { blockstore: faulty })
    expect(r.root.equals(manifest.weights)).toBe(true)
    const leaf = leaves.find((l) => l.bytes === 1024 * 1024)!
    const original = await readAll(faulty, leaf.cid)
    await faulty.delete(leaf.cid)
    const missing = await verifyDag(faulty, manifest, { maxModelBytes: MAX })
    expect(missing.ok).toBe(false)
    expect(missing.problems.map((p) => p.code)).toEqual(['block-missing'])
    expect(missing.problems[0]!.path).toMatch(/\.safetensors$/)
    expect(missing.problems[0]!.message).toContain(leaf.cid.toString())

    const corrupt = Buffer.from(original)
    corrupt[100]! ^= 0xff
    await faulty.put(leaf.cid, corrupt)
    const bad = await verifyDag(faulty, manifest, { maxModelBytes: MAX })
    expect(bad.problems.map((p) => p.code)).toEqual(['block-corrupt'])
    // A block the caller says it hashed is not hashed again, yet its bytes still feed the file's
    // sha256: the corruption is caught all the same (the root is rebuilt from the leaves' CIDs).
    const trustedBad = await verifyDag(faulty, manifest, {
      maxModelBytes: MAX,
      trusted: new Map([[leaf.cid.toString(), corrupt.length]]),
    })
    expect(trustedBad.ok).toBe(false)
    expect(trustedBad.problems.map((p) => p.code)).toEqual(['sha256-mismatch'])
    expect(trustedBad.problems[0]!.path).toMatch(/\.safetensors$/)

    await faulty.delete(manifest.weights)
    const noRoot = await verifyDag(faulty, manifest, { maxModelBytes: MAX })
    expect(codes(noRoot.problems)).toEqual([['block-missing', 'the root']])
    await faulty.close()
  })

  it('reports root-mismatch for the same bytes chunked another way (not the unixfs-v1-2025 shape)', async () => {
    const other = new FsBlockstore(join(tmp, 'store-v0-chunks'))
    await other.open()
    const listing = await listDirectory(model)
    const entries = listing.files.map((f) => ({ path: f.path, content: readChunks(f, () => {}) }))
    let root: CID | undefined
    // The importer's defaults without a profile: CIDv1 raw leaves, but 256 KiB chunks and 174 links.
    for await (const e of importer(entries, other, { wrapWithDirectory: true }))
      if (e.path === '') root = e.cid
    expect(root!.equals(manifest.weights)).toBe(false)
    const r = await verifyDag(other, { ...manifest, weights: root! }, { maxModelBytes: MAX })
    expect(codes(r.problems)).toEqual([['root-mismatch', undefined]])
    await other.close()
  })

  it('reports root-mismatch for 1 MiB raw leaves in another layout (the leaves are right, the tree is not)', async () => {
    const dir = join(tmp, 'five-mib')
    await cp(model, dir, { recursive: true })
    await writeFile(join(dir, 'big.bin'), Buffer.alloc(5 * 1024 * 1024 + 17, 7))
    const honest = await importDirectory(dir, { blockstore: store })
    const other = new FsBlockstore(join(tmp, 'store-narrow-tree'))
    await other.open()
    const listing = await listDirectory(dir)
    const entries = listing.files.map((f) => ({ path: f.path, content: readChunks(f, () => {}) }))
    let root: CID | undefined
    // The profile's 1 MiB chunks and raw leaves, but at most 2 links per node instead of 1024.
    for await (const e of importer(entries, other, {
      ...profileOptions(),
      layout: balanced({ maxChildrenPerNode: 2 }),
    }))
      if (e.path === '') root = e.cid
    expect(root!.equals(honest.root)).toBe(false)
    const claimed = { weights: root!, files: [...honest.files], size: honest.size }
    const r = await verifyDag(other, claimed, { maxModelBytes: MAX })
    expect(codes(r.problems)).toEqual([['root-mismatch', undefined]])
    // The honest DAG of the same directory passes (the fast path, leaves and layout as published).
    expect((await verifyDag(store, { ...claimed, weights: honest.root }, { maxModelBytes: MAX })).ok).toBe(
      true,
    )
    await other.close()
  })

  it('reports file-missing and file-extra from the listing', async () => {
    const files = manifest.files.filter((f) => f.path !== 'config.json')
    const fewer = { ...manifest, files, size: files.reduce((s, f) => s + f.size, 0) }
    expect(codes((await verifyDag(store, fewer, { maxModelBytes: MAX })).problems)).toEqual([
      ['file-extra', 'config.json'],
    ])
    const more = {
      ...manifest,
      files: [...manifest.files, { path: 'zz.bin', size: 0, sha256: new Uint8Array(32) }],
    }
    expect(codes((await verifyDag(store, more, { maxModelBytes: MAX })).problems)).toEqual([
      ['file-missing', 'zz.bin'],
    ])
  })

  it('asks the store offline: a store that would wait on the network answers at once', async () => {
    const waits: string[] = []
    const networked = {
      get(cid: CID, options?: { offline?: boolean; signal?: AbortSignal }) {
        if (options?.offline === true) return store.get(cid, options)
        waits.push(cid.toString())
        return (async function* () {
          await new Promise(() => {}) // a network fetch that never ends
          yield new Uint8Array()
        })()
      },
    }
    expect((await verifyDag(networked, manifest, { maxModelBytes: MAX })).ok).toBe(true)
    expect(waits).toEqual([])
    const controller = new AbortController()
    controller.abort()
    const r = await verifyDag(store, manifest, { maxModelBytes: MAX, signal: controller.signal })
    expect(r.problems.map((p) => p.code)).toEqual(['aborted'])
  })
})

async function readAll(s: FsBlockstore, cid: CID): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const p of s.get(cid)) parts.push(p)
  return Buffer.concat(parts)
}

describe('verifyDag with the fetch’s trusted leaves and file digests (trusted, fileDigests)', () => {
  /** Each file's node CID, by path (a lone raw block for a small file). */
  const fileCids = new Map<string, CID>()
  /** Each file's raw leaves, in order. */
  const fileLeaves = new Map<string, CID[]>()
  /** Every block of the DAG, key to size: what a fetch that hashed them all passes as `trusted`. */
  const blockSizes = new Map<string, number>()
  let multiLeaf: string[]

  beforeAll(async () => {
    const blockOf = async (cid: CID) => {
      const bytes = await readAll(store, cid)
      blockSizes.set(cid.toString(), bytes.length)
      return bytes
    }
    const rootNode = dagPb.decode(await blockOf(manifest.weights))
    for (const link of rootNode.Links) {
      const leaves: CID[] = []
      const stack: CID[] = [link.Hash]
      while (stack.length > 0) {
        const cid = stack.pop()!
        const bytes = await blockOf(cid)
        if (cid.code === 0x55) leaves.push(cid)
        else {
          const links = dagPb.decode(bytes).Links
          for (let i = links.length - 1; i >= 0; i--) stack.push(links[i]!.Hash)
        }
      }
      fileCids.set(link.Name!, link.Hash)
      fileLeaves.set(link.Name!, leaves)
    }
    expect([...fileCids.keys()].sort()).toEqual(manifest.files.map((f) => f.path).sort())
    multiLeaf = [...fileLeaves].filter(([, l]) => l.length > 1).map(([p]) => p)
    expect(multiLeaf).toContain(shard)
  })

  /** The manifest's digests by file node CID, with `change` applied to some paths. */
  const fileDigests = (change: Record<string, (d: FileDigest) => FileDigest> = {}) =>
    new Map(
      manifest.files.map((f) => {
        const d = { size: f.size, sha256: f.sha256 }
        return [fileCids.get(f.path)!.toString(), change[f.path]?.(d) ?? d] as const
      }),
    )
  const flipped = (d: FileDigest): FileDigest => ({
    size: d.size,
    sha256: Uint8Array.from(d.sha256, (x, i) => (i === 0 ? x ^ 1 : x)),
  })
  /** The blockstore, counting reads of each multi-leaf file's leaves (raw blocks only). */
  const counting = () => {
    const reads = new Map<string, number>()
    const owner = new Map<string, string>()
    for (const path of multiLeaf) for (const leaf of fileLeaves.get(path)!) owner.set(leaf.toString(), path)
    const counted = {
      get(cid: CID, options?: { offline?: boolean; signal?: AbortSignal }) {
        const path = owner.get(cid.toString())
        if (path !== undefined) reads.set(path, (reads.get(path) ?? 0) + 1)
        return store.get(cid, options)
      },
    }
    return { counted, reads }
  }

  it('passes with a right digest for every file, all leaves trusted, reading no leaf of those files', async () => {
    const { counted, reads } = counting()
    const r = await verifyDag(counted, manifest, {
      maxModelBytes: MAX,
      trusted: new Map(blockSizes),
      fileDigests: fileDigests(),
    })
    expect(r).toEqual({ ok: true, problems: [] })
    expect(Object.fromEntries(reads)).toEqual({})
    // The counting store does see the leaves when there are no digests to stand in.
    const plain = counting()
    expect(
      (await verifyDag(plain.counted, manifest, { maxModelBytes: MAX, trusted: new Map(blockSizes) })).ok,
    ).toBe(true)
    for (const path of multiLeaf) expect(plain.reads.get(path), path).toBe(fileLeaves.get(path)!.length)
  })

  it('takes a wrong digest, all leaves trusted at their sizes, as the file’s: exactly sha256-mismatch for that path', async () => {
    const { counted, reads } = counting()
    const r = await verifyDag(counted, manifest, {
      maxModelBytes: MAX,
      trusted: new Map(blockSizes),
      fileDigests: fileDigests({ [shard]: flipped }),
    })
    expect(r.ok).toBe(false)
    expect(codes(r.problems)).toEqual([['sha256-mismatch', shard]])
    // The digest stood in for reading: the file's leaves were not read.
    expect(reads.get(shard)).toBeUndefined()
    // The same for a file of one raw block (its node is its only leaf).
    const one = await verifyDag(store, manifest, {
      maxModelBytes: MAX,
      trusted: new Map(blockSizes),
      fileDigests: fileDigests({ 'config.json': flipped }),
    })
    expect(fileLeaves.get('config.json')!.map(String)).toEqual([fileCids.get('config.json')!.toString()])
    expect(codes(one.problems)).toEqual([['sha256-mismatch', 'config.json']])
  })

  it('ignores a wrong digest for a file whose leaves are not all trusted: the file is read, and passes', async () => {
    const leaves = fileLeaves.get(shard)!
    const wrong = fileDigests({ [shard]: flipped })
    // One leaf not trusted at all.
    const without = new Map(blockSizes)
    without.delete(leaves[1]!.toString())
    const { counted, reads } = counting()
    const r = await verifyDag(counted, manifest, { maxModelBytes: MAX, trusted: without, fileDigests: wrong })
    expect(r).toEqual({ ok: true, problems: [] })
    expect(reads.get(shard)).toBe(leaves.length)
    // One leaf trusted at a size other than its place needs.
    const misSized = new Map(blockSizes)
    misSized.set(leaves[0]!.toString(), blockSizes.get(leaves[0]!.toString())! - 1)
    const m = await verifyDag(store, manifest, { maxModelBytes: MAX, trusted: misSized, fileDigests: wrong })
    expect(m).toEqual({ ok: true, problems: [] })
    // No `trusted` at all: digests alone never stand in.
    const none = await verifyDag(store, manifest, { maxModelBytes: MAX, fileDigests: wrong })
    expect(none).toEqual({ ok: true, problems: [] })
  })

  it('ignores a digest whose size is not the file’s', async () => {
    for (const delta of [1, -1]) {
      const { counted, reads } = counting()
      const r = await verifyDag(counted, manifest, {
        maxModelBytes: MAX,
        trusted: new Map(blockSizes),
        fileDigests: fileDigests({ [shard]: (d) => ({ ...flipped(d), size: d.size + delta }) }),
      })
      expect(r, `size ${delta}`).toEqual({ ok: true, problems: [] })
      expect(reads.get(shard)).toBe(fileLeaves.get(shard)!.length)
    }
  })
})
