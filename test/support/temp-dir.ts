/**
 * A temporary directory for one test file: made before its tests, removed with everything in it
 * after them.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll } from 'vitest'

/**
 * Registers the file's beforeAll (`mkdtemp` under the OS temp directory, `prefix` first) and
 * afterAll (removal); call it at the top level of a test file. The returned function gives the
 * directory's path, in tests and hooks.
 */
export function tempDirForFile(prefix: string): () => string {
  let dir: string | undefined
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix))
  })
  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })
  return () => {
    if (dir === undefined)
      throw new Error(`${prefix}: the temporary directory exists only while the tests run`)
    return dir
  }
}
