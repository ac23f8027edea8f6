/**
 * A planned model directory as a CARv1 stream (`model publish`; SPEC.md §7): the
 * header naming the root, then every raw leaf read from its file, then the file and directory
 * nodes, the root last. Nothing is held but the chunk being sent, so publishing a model of any
 * size takes memory in proportion to its number of files, not its bytes. Each file's sha256 (for
 * the manifest) is computed from the bytes as they are sent.
 *
 * Why the leaves are not hashed again: `planDirectory` hashed every chunk (the leaf CIDs) in its
 * pass; this second pass only reads. A file must be the one that was hashed — same device, inode,
 * size and mtime, checked before and after it is read, and exactly as long — or the stream ends
 * with `file-changed`. What a stamp cannot see (a write within the same mtime tick) the receiver
 * does: a node hashes every block against its CID before storing it, so an upload that succeeds
 * sent the bytes the root names, and those are the bytes the sha256s were computed over.
 */
import { createHash } from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'
import { NodeError } from '../errors.js'
import { carHeader, sectionPrefix, sectionPrefixLength, writeSectionPrefix } from './car-sections.js'
import type { DirectoryPlan, PlannedFile } from './directory.js'
import { fileStamp } from './file-stamp.js'
import { aborted, type FileDigest, openListed } from './local-files.js'
import { CHUNK_BYTES } from './profile.js'

export interface CarStreamOptions {
  readonly signal?: AbortSignal
  /** Called after each leaf read, with its length. */
  readonly onBytes?: (bytes: number) => void
  /** Called once a file was read to its end, with its size and sha256 (manifest order). */
  readonly onFile?: (path: string, digest: FileDigest) => void
  /**
   * Read the leaves into two buffers in turn: a chunk yielded is then only valid until the second
   * one after it is pulled (the consumer must have written it out by then, as
   * `NodeClient.postStream` does: it pulls the next chunk while the last one is being written).
   * Why: a fresh MiB per leaf is a GiB of short-lived memory per GiB sent, which the process
   * held on to (its peak RSS grew with the model) and paid page faults for.
   */
  readonly reuse?: boolean
}

/** The most a head takes: a varint of at most 9 bytes and a CIDv1 with a sha2-256 digest. */
const MAX_HEAD_BYTES = 9 + 4 + 2 + 32

function changed(path: string): NodeError {
  return new NodeError('file-changed', `${path} changed since it was hashed`, { status: 409 })
}

async function stampOf(fh: FileHandle): Promise<string> {
  return fileStamp(await fh.stat({ bigint: true }))
}

/** Two section buffers taken in turn (`CarStreamOptions.reuse`). */
class Ring {
  private readonly buffers = [
    Buffer.allocUnsafe(MAX_HEAD_BYTES + CHUNK_BYTES),
    Buffer.allocUnsafe(MAX_HEAD_BYTES + CHUNK_BYTES),
  ]
  private turn = 0

  next(bytes: number): Buffer {
    return this.buffers[this.turn++ % 2]!.subarray(0, bytes)
  }
}

/** The CAR of `plan`: header, leaves (each distinct CID once), then the other nodes, root last. */
export async function* directoryCar(
  plan: DirectoryPlan,
  options: CarStreamOptions = {},
): AsyncGenerator<Uint8Array, void, undefined> {
  yield carHeader([plan.root])
  const sent = new Set<string>()
  const ring = options.reuse ? new Ring() : undefined
  for (const p of plan.planned) yield* fileLeaves(p, sent, ring, options)
  const rootKey = plan.root.toString()
  for (const [key, node] of plan.nodes) {
    if (key === rootKey || sent.has(key)) continue
    sent.add(key)
    yield sectionPrefix(node.cid, node.bytes.length)
    yield node.bytes
  }
  const root = plan.nodes.get(rootKey)
  if (root === undefined) throw new NodeError('import-failed', `the plan holds no root block ${rootKey}`)
  yield sectionPrefix(root.cid, root.bytes.length)
  yield root.bytes
}

async function* fileLeaves(
  p: PlannedFile,
  sent: Set<string>,
  ring: Ring | undefined,
  options: CarStreamOptions,
): AsyncGenerator<Uint8Array, void, undefined> {
  const { path, size } = p.file
  const fh = await openListed(p.file)
  try {
    if ((await stampOf(fh)) !== p.stamp) throw changed(path)
    const hash = createHash('sha256')
    let offset = 0
    for (const [i, cid] of p.leaves.entries()) {
      if (options.signal?.aborted) throw aborted()
      const length = i < p.leaves.length - 1 ? CHUNK_BYTES : size - offset
      const key = cid.toString()
      // The whole section in one buffer: its head, then the leaf read from the file. A leaf sent
      // before (a repeated chunk) is read all the same, for the file's sha256.
      const head = sectionPrefixLength(cid, length)
      const section = ring ? ring.next(head + length) : Buffer.allocUnsafe(head + length)
      writeSectionPrefix(cid, length, section)
      let n = 0
      while (n < length) {
        const { bytesRead } = await fh.read(section, head + n, length - n, offset + n).catch((e) => {
          throw new NodeError(
            'unreadable',
            `${path}: read failed: ${(e as NodeJS.ErrnoException)?.code ?? e}`,
            {
              status: 400,
              cause: e,
            },
          )
        })
        if (bytesRead === 0) throw changed(path)
        n += bytesRead
      }
      hash.update(section.subarray(head))
      offset += length
      options.onBytes?.(length)
      if (sent.has(key)) continue
      sent.add(key)
      yield section
    }
    if ((await stampOf(fh)) !== p.stamp) throw changed(path)
    options.onFile?.(path, { size: offset, sha256: new Uint8Array(hash.digest()) })
  } finally {
    await fh.close()
  }
}
