/**
 * Model directories as UnixFS (node/weights/directory.ts) and the model fixtures
 * (fixtures/models.ts): determinism, the root cross-checked against ipfs-car (a separate UnixFS
 * encoder, @ipld/unixfs) through its CLI and its library, blocks in a real FsBlockstore, and the
 * refusal of links leading out, special files and names that are not UTF-8.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { link, mkdir, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { FsBlockstore } from 'blockstore-fs'
import { CAREncoderStream, createDirectoryEncoderStream } from 'ipfs-car'
import { exporter, recursive } from 'ipfs-unixfs-exporter'
import type { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { generateModel } from '../../../../fixtures/models.js'
import { NodeError } from '../../../../node/errors.js'
import { importDirectory } from '../../../../node/weights/directory.js'
import { listDirectory } from '../../../../node/weights/local-files.js'
import { CHUNK_BYTES } from '../../../../node/weights/profile.js'
import { tempDirForFile } from '../../../support/temp-dir.js'
import { codeOf, pattern, writeFiles } from '../../../support/weights-files.js'

const run = promisify(execFile)
const IPFS_CAR_BIN = fileURLToPath(new URL('../../../../node_modules/ipfs-car/bin.js', import.meta.url))

const tmp = tempDirForFile('allmende-weights-dir-')

let n = 0
const fresh = () => join(tmp(), `d${n++}`)

/** The root ipfs-car's library gives for these files (names relative to `dir`). */
async function ipfsCarRoot(dir: string, paths: string[]): Promise<string> {
  const files = paths.map((name) => ({
    name,
    stream: () => Readable.toWeb(createReadStream(join(dir, name))) as ReadableStream,
  }))
  const car = new CAREncoderStream([])
  await createDirectoryEncoderStream(files).pipeThrough(car).pipeTo(new WritableStream())
  return car.finalBlock!.cid.toString()
}

describe('fixtures/models', () => {
  it('gives byte-identical files for the same seed, different ones for another seed', async () => {
    const [a, b, c] = [fresh(), fresh(), fresh()]
    const ma = await generateModel(a, { seed: 42 })
    await generateModel(b, { seed: 42 })
    await generateModel(c, { seed: 43 })
    expect(ma.files).toEqual(await readdir(a).then((x) => x.sort()))
    expect(ma.files.filter((f) => f.endsWith('.safetensors')).length).toBeGreaterThanOrEqual(2)
    expect(ma.files).toContain('config.json')
    expect(ma.files).toContain('tokenizer.json')
    expect(ma.bytes).toBeGreaterThan(2 * CHUNK_BYTES)
    expect(ma.bytes).toBeLessThan(16 * CHUNK_BYTES)
    // Buffer.equals: vitest's deep equality walks large buffers byte by byte.
    for (const f of ma.files)
      expect((await readFile(join(b, f))).equals(await readFile(join(a, f)))).toBe(true)
    const shard = 'model-00001-of-00003.safetensors'
    expect(ma.files).toContain(shard)
    expect((await readFile(join(c, shard))).equals(await readFile(join(a, shard)))).toBe(false)
    const [ra, rb, rc] = await Promise.all([a, b, c].map((d) => importDirectory(d)))
    expect(rb!.root.equals(ra!.root)).toBe(true)
    expect(rc!.root.equals(ra!.root)).toBe(false)
  })
})

describe('importDirectory', () => {
  it('agrees with the ipfs-car CLI on a generated model, and hashes every file', async () => {
    const dir = fresh()
    const model = await generateModel(dir, { seed: 1 })
    const car = join(tmp(), 'model.car')
    const { stdout } = await run(process.execPath, [IPFS_CAR_BIN, 'pack', dir, '--output', car])
    const progress: number[] = []
    const r = await importDirectory(dir, { onProgress: (read, total) => progress.push(read / total) })
    expect(r.root.toString()).toBe(stdout.trim())
    expect(r.root.toString()).toBe(await ipfsCarRoot(dir, [...model.files]))
    expect(r.files.map((f) => f.path)).toEqual(model.files)
    expect(r.size).toBe(model.bytes)
    for (const f of r.files) {
      const bytes = await readFile(join(dir, f.path))
      expect(f.size).toBe(bytes.length)
      expect(Buffer.from(f.sha256).toString('hex')).toBe(createHash('sha256').update(bytes).digest('hex'))
    }
    expect(progress.at(-1)).toBe(1)
  })

  it('agrees with ipfs-car on edge shapes: empty, exactly 1 MiB, 1 MiB + 1, subfolders, UTF-8, one file', async () => {
    const nested = fresh()
    await writeFiles(nested, {
      'empty.bin': new Uint8Array(0),
      'one-mib.bin': pattern(CHUNK_BYTES, 1),
      'one-mib-plus.bin': pattern(CHUNK_BYTES + 1, 2),
      'sub/deeper/x.json': '{"a":1}',
      'sub/y.txt': 'y',
      'Zürich/é.txt': 'accents',
      '.hidden': 'dotfiles are part of the model',
    })
    const listed = (await listDirectory(nested)).files.map((f) => f.path)
    expect(listed).toEqual([
      '.hidden',
      'Zürich/é.txt',
      'empty.bin',
      'one-mib-plus.bin',
      'one-mib.bin',
      'sub/deeper/x.json',
      'sub/y.txt',
    ])
    expect((await importDirectory(nested)).root.toString()).toBe(await ipfsCarRoot(nested, listed))

    const single = fresh()
    await writeFiles(single, { 'model.gguf': pattern(3 * CHUNK_BYTES + 5, 3) })
    // One file is still wrapped in a directory (what `ipfs-car pack DIR` gives; `--no-wrap` would not).
    expect((await importDirectory(single)).root.toString()).toBe(await ipfsCarRoot(single, ['model.gguf']))
  })

  it('puts every block into a blockstore, and the DAG exports the same bytes', async () => {
    const dir = fresh()
    await generateModel(dir, { seed: 2 })
    const store = new FsBlockstore(join(tmp(), 'blocks-2'))
    await store.open()
    const r = await importDirectory(dir, { blockstore: store })
    const exported = new Map<string, string>()
    for await (const entry of recursive(r.root, store)) {
      const file = await exporter(entry.cid, store)
      if (file.type !== 'file' && file.type !== 'raw') continue
      const hash = createHash('sha256')
      for await (const chunk of file.content()) hash.update(chunk)
      exported.set(entry.path.slice(entry.path.indexOf('/') + 1), hash.digest('hex'))
    }
    expect(exported).toEqual(new Map(r.files.map((f) => [f.path, Buffer.from(f.sha256).toString('hex')])))
    await store.close()
  })

  it('follows a symlink to a file inside; refuses links leading out, links to folders, FIFOs, non-UTF-8 names', async () => {
    const base = fresh()
    await writeFiles(base, { 'model/a.bin': 'a', 'outside.bin': 'secret' })
    const model = join(base, 'model')
    await symlink('a.bin', join(model, 'b.bin'))
    const r = await importDirectory(model)
    expect(r.files.map((f) => [f.path, f.size])).toEqual([
      ['a.bin', 1],
      ['b.bin', 1],
    ])

    await symlink('../../../outside.bin', join(model, 'escape.bin'))
    expect(await codeOf(importDirectory(model))).toBe('symlink-escapes')
    await rm(join(model, 'escape.bin'))
    await symlink('missing.bin', join(model, 'dangling.bin'))
    expect(await codeOf(importDirectory(model))).toBe('symlink-escapes')
    await rm(join(model, 'dangling.bin'))
    // A sibling whose name starts with the directory's name is still outside.
    await writeFiles(base, { 'model-evil/x.bin': 'x' })
    await symlink('../../../model-evil/x.bin', join(model, 'prefix.bin'))
    expect(await codeOf(importDirectory(model))).toBe('symlink-escapes')
    await rm(join(model, 'prefix.bin'))
    await mkdir(join(model, 'sub'))
    for (const target of ['sub', '.']) {
      await symlink(target, join(model, 'folder-link'))
      expect(await codeOf(importDirectory(model))).toBe('special-file')
      await rm(join(model, 'folder-link'))
    }

    await run('mkfifo', [join(model, 'pipe')])
    const listing = await listDirectory(model)
    expect(listing.issues.map((i) => [i.code, i.path])).toEqual([['special-file', 'pipe']])
    expect(await codeOf(importDirectory(model))).toBe('special-file')
    await rm(join(model, 'pipe'))

    await writeFile(
      Buffer.concat([Buffer.from(`${model}/bad-`), Buffer.from([0xff, 0xfe]), Buffer.from('.bin')]),
      'x',
    )
    expect(await codeOf(importDirectory(model))).toBe('path-invalid')
  })

  it('refuses symlinks that leave the directory from a subfolder or by an absolute path; takes absolute links inside', async () => {
    const base = fresh()
    await writeFiles(base, { 'model/sub/a.bin': 'a', 'model/b.bin': 'b', 'secret.key': 'outside' })
    const model = join(base, 'model')
    await symlink(join(model, 'b.bin'), join(model, 'sub', 'absolute-inside.bin'))
    expect((await listDirectory(model)).files.map((f) => f.path)).toEqual([
      'b.bin',
      'sub/a.bin',
      'sub/absolute-inside.bin',
    ])
    for (const target of ['../../../../secret.key', join(base, 'secret.key')]) {
      await symlink(target, join(model, 'sub', 'out.bin'))
      const listing = await listDirectory(model)
      expect(listing.issues.map((i) => [i.code, i.path])).toEqual([['symlink-escapes', 'sub/out.bin']])
      expect(listing.files.map((f) => f.path)).not.toContain('sub/out.bin')
      expect(await codeOf(importDirectory(model))).toBe('symlink-escapes')
      await rm(join(model, 'sub', 'out.bin'))
    }
  })

  it('puts every file to admit before a byte is read, and again on the opened handle', async () => {
    const dir = fresh()
    await writeFiles(dir, { 'a.bin': pattern(1000, 1), 'b.bin': pattern(2000, 2), 'c.key': 'key' })
    const stored: string[] = []
    const blockstore = {
      put: async (cid: CID) => {
        stored.push(cid.toString())
        return cid
      },
    }
    const forbidden = async (path: string) => {
      const st = await stat(join(dir, path))
      return `${st.dev}:${st.ino}`
    }
    const refuse = (inodes: Set<string>) => (file: { path: string }, st: { dev: number; ino: number }) => {
      if (inodes.has(`${st.dev}:${st.ino}`)) throw new NodeError('import-forbidden', `${file.path} is a key`)
    }

    // Refused when listed: nothing read, nothing stored.
    expect(
      await codeOf(importDirectory(dir, { blockstore, admit: refuse(new Set([await forbidden('c.key')])) })),
    ).toBe('import-forbidden')
    expect(stored).toEqual([])

    // Admitted when listed, then swapped for the key before it is opened: refused by its handle.
    await rm(join(dir, 'c.key'))
    await writeFiles(dir, { 'key.secret': 'secret' })
    const keyInode = new Set<string>()
    const calls: string[] = []
    const swapping = async (file: { path: string }, st: { dev: number; ino: number }) => {
      calls.push(file.path)
      refuse(keyInode)(file, st)
      if (calls.length === 3) {
        // The last file of the listing pass: now b.bin becomes a hard link to the key.
        await rm(join(dir, 'b.bin'))
        await link(join(dir, 'key.secret'), join(dir, 'b.bin'))
        keyInode.add(await forbidden('key.secret'))
      }
    }
    expect(await codeOf(importDirectory(dir, { blockstore, admit: swapping }))).toBe('import-forbidden')
    expect(calls.slice(0, 3)).toEqual(['a.bin', 'b.bin', 'key.secret'])
    expect(calls.slice(3)).toEqual(['a.bin', 'b.bin'])

    // Without a refusal, each file is put to it twice: listed, then opened.
    await rm(join(dir, 'b.bin'))
    await writeFiles(dir, { 'b.bin': pattern(2000, 2) })
    const seen: string[] = []
    const r = await importDirectory(dir, { admit: (file) => void seen.push(file.path) })
    expect(r.files.map((f) => f.path)).toEqual(['a.bin', 'b.bin', 'key.secret'])
    expect(seen).toEqual(['a.bin', 'b.bin', 'key.secret', 'a.bin', 'b.bin', 'key.secret'])
  })

  it('refuses an empty directory, a missing one, and reports an abort as typed errors', async () => {
    const empty = fresh()
    await mkdir(join(empty, 'only-folders'), { recursive: true })
    expect(await codeOf(importDirectory(empty))).toBe('empty-directory')
    expect(await codeOf(importDirectory(join(tmp(), 'nope')))).toBe('not-a-directory')
    const dir = fresh()
    await generateModel(dir, { seed: 3 })
    const controller = new AbortController()
    controller.abort()
    expect(await codeOf(importDirectory(dir, { signal: controller.signal }))).toBe('aborted')
  })
})
