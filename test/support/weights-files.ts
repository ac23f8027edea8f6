/**
 * What the weights unit tests (weights-directory, weights-hashing, weights-headers) share: model
 * directories written from a path → content map, patterned file contents, and the error code a
 * refused call ends with.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isNodeError } from '../../node/errors.js'

/** Writes each file under `dir` (subdirectories made as needed). */
export async function writeFiles(dir: string, files: Record<string, Uint8Array | string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true })
    await writeFile(join(dir, path), content)
  }
}

/** `bytes` bytes of a simple pattern, different for each salt (and from one 4 KiB to the next). */
export function pattern(bytes: number, salt: number): Uint8Array {
  const out = new Uint8Array(bytes)
  for (let i = 0; i < bytes; i++) out[i] = (i * 31 + salt + (i >>> 12)) & 0xff
  return out
}

/** `'resolved'`, the `NodeError` code the promise rejected with, or `untyped: …` for any other error. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'resolved'
  } catch (e) {
    return isNodeError(e) ? e.code : `untyped: ${e}`
  }
}
