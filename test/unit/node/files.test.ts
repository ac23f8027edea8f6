/**
 * node/files.ts: a whole file written atomically — the bytes and mode as asked, a replacement
 * only when allowed (refused with EEXIST otherwise, the old file untouched), and no temporary
 * file left behind, whether the write succeeded or failed.
 */
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { pathExists, syncDirectory, writeAtomic } from '../../../node/files.js'
import { tempDirForFile } from '../../support/temp-dir.js'

const dir = tempDirForFile('allmende-files-')
const posix = process.platform !== 'win32'

describe('writeAtomic', () => {
  it('writes the bytes with the mode asked, leaving no temporary file', async () => {
    const at = join(dir(), 'one')
    await mkdir(at)
    await writeAtomic(join(at, 'key'), 'secret\n', { mode: 0o600 })
    expect(await readFile(join(at, 'key'), 'utf8')).toBe('secret\n')
    if (posix) expect((await stat(join(at, 'key'))).mode & 0o777).toBe(0o600)
    expect(await readdir(at)).toEqual(['key'])
  })

  it('replaces a file by default, and refuses with EEXIST when told not to', async () => {
    const at = join(dir(), 'two')
    await mkdir(at)
    const path = join(at, 'file')
    await writeFile(path, 'old')
    await writeAtomic(path, new TextEncoder().encode('new'))
    expect(await readFile(path, 'utf8')).toBe('new')
    await expect(writeAtomic(path, 'newer', { overwrite: false })).rejects.toMatchObject({ code: 'EEXIST' })
    expect(await readFile(path, 'utf8')).toBe('new')
    await writeAtomic(join(at, 'fresh'), 'first', { overwrite: false })
    expect(await readFile(join(at, 'fresh'), 'utf8')).toBe('first')
    expect((await readdir(at)).sort()).toEqual(['file', 'fresh'])
  })

  it('fails in a directory that does not exist, and says so', async () => {
    await expect(writeAtomic(join(dir(), 'missing', 'file'), 'x')).rejects.toMatchObject({ code: 'ENOENT' })
    expect(await pathExists(join(dir(), 'missing'))).toBe(false)
  })

  it('syncs a directory', async () => {
    await expect(syncDirectory(dir())).resolves.toBeUndefined()
  })
})
