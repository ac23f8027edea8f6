/**
 * A file's identity when it was hashed: device, inode, size and modification time. A later read
 * that finds another stamp refuses the file (`file-changed`). One format, written by the hashing
 * worker (hash-worker.ts) and checked by the CAR stream (car-stream.ts); builtins only, so the
 * worker's bundle stays small.
 */
import type { BigIntStats } from 'node:fs'

export function fileStamp(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`
}
