/**
 * The node's blockstore (node/weights/block-files.ts): blockstore-fs's layout with each block read
 * whole. A block written by a plain FsBlockstore on the same directory is read back by BlockFiles
 * and the other way round (the same files, so Helia and older homes see the same store); a block
 * comes in one piece; a missing block is a `NotFoundError`; an aborted read is an `AbortError`.
 */
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import * as dagPb from '@ipld/dag-pb'
import { FsBlockstore } from 'blockstore-fs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { BlockFiles } from '../../../../node/weights/block-files.js'
import { seededBytes } from '../../../support/prng.js'
import { tempDirForFile } from '../../../support/temp-dir.js'

const MiB = 1024 * 1024

async function rawBlock(bytes: Uint8Array): Promise<{ cid: CID; bytes: Uint8Array }> {
  return { cid: CID.createV1(raw.code, await sha256.digest(bytes)), bytes }
}

async function parts(source: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for await (const p of source) out.push(p)
  return out
}

/** Every file under `dir`, relative, sorted. */
async function listing(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort()
}

describe('BlockFiles', () => {
  const tmp = tempDirForFile('allmende-block-files-')

  it('reads what a plain FsBlockstore wrote on the same directory, each block in one piece', async () => {
    const dir = join(tmp(), 'from-fs')
    const plain = new FsBlockstore(dir)
    await plain.open()
    const files = new BlockFiles(dir)
    await files.open()
    const leaf = await rawBlock(seededBytes(MiB, 1))
    // Larger than blockstore-fs's 64 KiB read chunks, and larger than a profile leaf.
    const big = await rawBlock(seededBytes(3 * MiB + 5, 2))
    const small = await rawBlock(seededBytes(3, 3))
    const empty = await rawBlock(new Uint8Array(0))
    const nodeBytes = dagPb.encode(
      dagPb.prepare({ Data: new Uint8Array([8, 2]), Links: [{ Hash: leaf.cid, Name: 'a', Tsize: MiB }] }),
    )
    const node = { cid: CID.createV1(dagPb.code, await sha256.digest(nodeBytes)), bytes: nodeBytes }
    for (const b of [leaf, big, small, empty, node]) {
      await plain.put(b.cid, b.bytes)
      expect(await files.has(b.cid)).toBe(true)
      const got = await parts(files.get(b.cid))
      expect(got.length, `${b.cid}`).toBe(1)
      expect(Buffer.from(got[0]!).equals(Buffer.from(b.bytes)), `${b.cid}`).toBe(true)
    }
  })

  it('writes what a plain FsBlockstore reads back, in the same files', async () => {
    const dirA = join(tmp(), 'by-block-files')
    const dirB = join(tmp(), 'by-fs')
    const files = new BlockFiles(dirA)
    await files.open()
    const plain = new FsBlockstore(dirB)
    await plain.open()
    const reader = new FsBlockstore(dirA)
    await reader.open()
    const blocks = [await rawBlock(seededBytes(MiB, 4)), await rawBlock(seededBytes(100, 5))]
    for (const b of blocks) {
      await files.put(b.cid, b.bytes)
      await plain.put(b.cid, b.bytes)
      expect(Buffer.concat(await parts(reader.get(b.cid))).equals(Buffer.from(b.bytes))).toBe(true)
    }
    // The same layout: the same relative file names for the same blocks.
    const names = await listing(dirA)
    expect(names.length).toBe(blocks.length)
    expect(names).toEqual(await listing(dirB))
    // Deleted through one, gone for the other.
    await files.delete(blocks[0]!.cid)
    expect(await reader.has(blocks[0]!.cid)).toBe(false)
    await expect(parts(files.get(blocks[0]!.cid))).rejects.toMatchObject({ name: 'NotFoundError' })
  })

  it('reports a missing block as NotFoundError, as blockstore-fs does', async () => {
    const dir = join(tmp(), 'missing')
    const files = new BlockFiles(dir)
    await files.open()
    const absent = await rawBlock(seededBytes(10, 6))
    const error = await parts(files.get(absent.cid)).then(
      () => undefined,
      (e: unknown) => e as Error,
    )
    expect(error).toBeInstanceOf(Error)
    expect(error!.name).toBe('NotFoundError')
    expect(error!.message).toContain('ENOENT')
    // The same name from the plain store, so callers need one check for both.
    const plain = new FsBlockstore(dir)
    await expect(parts(plain.get(absent.cid))).rejects.toMatchObject({ name: 'NotFoundError' })
    // Also when the store's directory is not there at all.
    const nowhere = new BlockFiles(join(tmp(), 'never-opened'))
    await expect(parts(nowhere.get(absent.cid))).rejects.toMatchObject({ name: 'NotFoundError' })
  })

  it('aborts a read whose signal is aborted (an abort stays an abort, not a missing block)', async () => {
    const dir = join(tmp(), 'aborted')
    const files = new BlockFiles(dir)
    await files.open()
    const block = await rawBlock(seededBytes(MiB, 7))
    await files.put(block.cid, block.bytes)
    const controller = new AbortController()
    controller.abort()
    await expect(parts(files.get(block.cid, { signal: controller.signal }))).rejects.toMatchObject({
      name: 'AbortError',
    })
    // Nor for a block that is not there: the abort wins.
    const absent = await rawBlock(seededBytes(10, 8))
    await expect(parts(files.get(absent.cid, { signal: controller.signal }))).rejects.toMatchObject({
      name: 'AbortError',
    })
    // A signal that is not aborted reads as usual.
    const live = new AbortController()
    const got = await parts(files.get(block.cid, { signal: live.signal }))
    expect(Buffer.concat(got).equals(Buffer.from(block.bytes))).toBe(true)
  })
})
