/**
 * Hashing on worker threads (node/weights/hash-pool.ts), the root from hashed leaves and the
 * publish plan (node/weights/directory.ts), and the CAR stream built from it
 * (node/weights/car-stream.ts): the same digests as node:crypto, the same root and blocks as the
 * importer over the bytes (edge shapes: empty, exactly 1 MiB, 1 MiB + 1, repeated chunks,
 * subfolders, one file), and typed outcomes for files that vanish, change or are swapped.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, open, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { CarBlockIterator } from '@ipld/car/iterator'
import type { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { generateModel } from '../../../../fixtures/models.js'
import { directoryCar } from '../../../../node/weights/car-stream.js'
import { importDirectory, leafCids, planDirectory, rootOfHashed } from '../../../../node/weights/directory.js'
import { hashFiles } from '../../../../node/weights/hash-pool.js'
import { type FileDigest, listDirectory } from '../../../../node/weights/local-files.js'
import { CHUNK_BYTES } from '../../../../node/weights/profile.js'
import { tempDirForFile } from '../../../support/temp-dir.js'
import { codeOf, pattern, writeFiles } from '../../../support/weights-files.js'

const run = promisify(execFile)

const tmp = tempDirForFile('allmende-weights-hashing-')

let n = 0
const fresh = () => join(tmp(), `d${n++}`)

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')
const hex = (b: Uint8Array | undefined) => Buffer.from(b ?? []).toString('hex')

/** Every edge the profile has: empty, one chunk exactly, one byte over, a chunk repeated. */
async function edgeShapes(): Promise<string> {
  const dir = fresh()
  const repeated = new Uint8Array(3 * CHUNK_BYTES + 7).fill(9)
  await writeFiles(dir, {
    'empty.bin': new Uint8Array(0),
    'one-mib.bin': pattern(CHUNK_BYTES, 1),
    'one-mib-plus.bin': pattern(CHUNK_BYTES + 1, 2),
    'repeated.bin': repeated,
    'sub/deeper/x.json': '{"a":1}',
    'Zürich/é.txt': 'accents',
  })
  return dir
}

/** Every block the importer stores for `dir`, by CID. */
async function importedBlocks(dir: string) {
  const blocks = new Map<string, Uint8Array>()
  const r = await importDirectory(dir, {
    blockstore: {
      put: async (cid: CID, bytes: Uint8Array) => {
        blocks.set(cid.toString(), bytes)
        return cid
      },
    },
  })
  return { ...r, blocks }
}

describe('hashFiles', () => {
  it('gives the sha256 of each file and of each 1 MiB chunk, in the order of the files, on any number of threads', async () => {
    const dir = await edgeShapes()
    const { files } = await listDirectory(dir)
    for (const threads of [1, 3]) {
      const outcomes = await hashFiles(files, { leaves: true, chunkBytes: CHUNK_BYTES, threads })
      expect(outcomes.map((o) => o.ok)).toEqual(files.map(() => true))
      for (const [i, f] of files.entries()) {
        const o = outcomes[i]!
        if (!o.ok) throw o.error
        const bytes = await readFile(join(dir, f.path))
        expect(o.digest.size).toBe(bytes.length)
        expect(hex(o.digest.sha256)).toBe(sha256(bytes))
        const chunks = Math.max(1, Math.ceil(bytes.length / CHUNK_BYTES))
        const want = Array.from({ length: chunks }, (_, c) =>
          sha256(bytes.subarray(c * CHUNK_BYTES, (c + 1) * CHUNK_BYTES)),
        ).join('')
        expect(hex(o.digest.leaves), f.path).toBe(want)
      }
    }
    const plain = await hashFiles(files, { whole: true, chunkBytes: CHUNK_BYTES })
    expect(plain.every((o) => o.ok && o.digest.leaves === undefined)).toBe(true)
    const leavesOnly = await hashFiles(files, { whole: false, leaves: true, chunkBytes: CHUNK_BYTES })
    expect(leavesOnly.every((o) => o.ok && o.digest.sha256 === undefined)).toBe(true)
    expect(await hashFiles([], { chunkBytes: CHUNK_BYTES })).toEqual([])
  })

  it('reports files that vanished, changed size, became a FIFO or a symlink; the rest still hash', async () => {
    const dir = fresh()
    await writeFiles(dir, {
      'a.bin': 'a',
      'gone.bin': 'g',
      'grows.bin': 'short',
      'pipe.bin': 'p',
      'link.bin': 'l',
      'z.bin': pattern(2 * CHUNK_BYTES, 5),
    })
    const { files } = await listDirectory(dir)
    await rm(join(dir, 'gone.bin'))
    await writeFile(join(dir, 'grows.bin'), 'much longer now')
    await rm(join(dir, 'pipe.bin'))
    await run('mkfifo', [join(dir, 'pipe.bin')])
    await rm(join(dir, 'link.bin'))
    await symlink('a.bin', join(dir, 'link.bin'))
    const outcomes = await hashFiles(files, { chunkBytes: CHUNK_BYTES })
    expect(
      outcomes.map((o, i) => [files[i]!.path, o.ok ? 'ok' : o.error.code, o.ok ? '' : o.error.message]),
    ).toEqual([
      ['a.bin', 'ok', ''],
      ['gone.bin', 'unreadable', 'gone.bin: cannot open: ENOENT'],
      ['grows.bin', 'file-changed', 'grows.bin changed while it was read (5 → 15 bytes)'],
      ['link.bin', 'unreadable', 'link.bin: cannot open: ELOOP'],
      ['pipe.bin', 'special-file', 'pipe.bin is no longer a regular file'],
      ['z.bin', 'ok', ''],
    ])
  })

  it('reports an abort as aborted for every file it cut short, and reads nothing once aborted', async () => {
    const dir = fresh()
    await generateModel(dir, { seed: 4 })
    const { files } = await listDirectory(dir)
    const controller = new AbortController()
    const outcomes = await hashFiles(files, {
      chunkBytes: CHUNK_BYTES,
      signal: controller.signal,
      threads: 1,
      onBytes: () => controller.abort(),
    })
    expect(outcomes.some((o) => !o.ok && o.error.code === 'aborted')).toBe(true)
    expect(outcomes.every((o) => o.ok || o.error.code === 'aborted')).toBe(true)
    const already = await hashFiles(files, { chunkBytes: CHUNK_BYTES, signal: controller.signal })
    expect(already.map((o) => (o.ok ? 'ok' : o.error.code))).toEqual(files.map(() => 'aborted'))
  })
})

describe('the root from hashed leaves', () => {
  it('equals the importer over the bytes: edge shapes, one file, a generated model', async () => {
    const single = fresh()
    await writeFiles(single, { 'model.gguf': pattern(3 * CHUNK_BYTES + 5, 3) })
    const model = fresh()
    await generateModel(model, { seed: 6 })
    for (const dir of [await edgeShapes(), single, model]) {
      const { files } = await listDirectory(dir)
      const outcomes = await hashFiles(files, { whole: false, leaves: true, chunkBytes: CHUNK_BYTES })
      const hashed = files.map((f, i) => {
        const o = outcomes[i]!
        if (!o.ok) throw o.error
        return { path: f.path, size: f.size, leaves: leafCids(f.path, f.size, o.digest.leaves!) }
      })
      const imported = await importDirectory(dir)
      expect((await rootOfHashed(hashed)).toString()).toBe(imported.root.toString())
      expect((await planDirectory(dir)).root.toString()).toBe(imported.root.toString())
    }
  })

  it('equals the importer for a file of more than 1024 leaves (a second layer of file nodes)', async () => {
    // A sparse file whose every MiB starts with its own index: distinct leaves, little disk.
    const dir = fresh()
    await mkdir(dir)
    const leaves = 1024 + 3
    const fh = await open(join(dir, 'big.bin'), 'w')
    for (let i = 0; i < leaves; i++) {
      const mark = Buffer.alloc(4)
      mark.writeUInt32LE(i + 1)
      await fh.write(mark, 0, 4, i * CHUNK_BYTES)
    }
    await fh.truncate((leaves - 1) * CHUNK_BYTES + 5)
    await fh.close()
    expect((await planDirectory(dir)).root.toString()).toBe((await importDirectory(dir)).root.toString())
  }, 60_000)

  it('refuses leaves that do not fit the size', () => {
    expect(() => leafCids('x.bin', CHUNK_BYTES + 1, new Uint8Array(32))).toThrow(/1 leaves for 1048577 bytes/)
  })
})

describe('directoryCar', () => {
  for (const reuse of [false, true]) {
    it(`streams every block of the DAG once, root named and last, and each file's sha256${reuse ? ' (buffers reused)' : ''}`, async () => {
      const dir = await edgeShapes()
      const imported = await importedBlocks(dir)
      const plan = await planDirectory(dir)
      const digests = new Map<string, FileDigest>()
      const chunks: Uint8Array[] = []
      let bytes = 0
      const car = directoryCar(plan, {
        reuse,
        onBytes: (b) => (bytes += b),
        onFile: (path, d) => digests.set(path, d),
      })
      // A reused buffer is only valid until the next pulls: keep a copy.
      for await (const c of car) chunks.push(Uint8Array.from(c))
      const blocks = await CarBlockIterator.fromIterable(
        (async function* () {
          yield* chunks
        })(),
      )
      expect((await blocks.getRoots()).map(String)).toEqual([plan.root.toString()])
      const seen: string[] = []
      for await (const b of blocks) {
        expect(hex(b.cid.multihash.digest)).toBe(sha256(b.bytes))
        expect(Buffer.from(b.bytes).equals(Buffer.from(imported.blocks.get(b.cid.toString())!))).toBe(true)
        seen.push(b.cid.toString())
      }
      expect(new Set(seen).size).toBe(seen.length)
      expect(new Set(seen)).toEqual(new Set(imported.blocks.keys()))
      expect(seen.at(-1)).toBe(plan.root.toString())
      expect(bytes).toBe(imported.size)
      expect([...digests].map(([path, d]) => [path, d.size, hex(d.sha256)])).toEqual(
        imported.files.map((f) => [f.path, f.size, hex(f.sha256)]),
      )
    })
  }

  it('ends with file-changed when a file changed after it was hashed', async () => {
    const dir = await edgeShapes()
    const plan = await planDirectory(dir)
    // Same size, other bytes, another file put in its place (as editors and downloaders save):
    // the stamp tells, whatever the clock's granularity.
    await writeFile(join(tmp(), 'replacement.bin'), pattern(CHUNK_BYTES, 99))
    await rename(join(tmp(), 'replacement.bin'), join(dir, 'one-mib.bin'))
    const drain = async () => {
      for await (const _ of directoryCar(plan)) {
        // the error is the point
      }
    }
    expect(await codeOf(drain())).toBe('file-changed')
  })

  it('planDirectory refuses what importDirectory refuses', async () => {
    const empty = fresh()
    await mkdir(empty)
    expect(await codeOf(planDirectory(empty))).toBe('empty-directory')
    const outside = fresh()
    await writeFiles(outside, { 'model/a.bin': 'a', 'secret.bin': 's' })
    await symlink('../../../secret.bin', join(outside, 'model', 'escape.bin'))
    expect(await codeOf(planDirectory(join(outside, 'model')))).toBe('symlink-escapes')
  })
})
