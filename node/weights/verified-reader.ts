/**
 * Reading a weights DAG for a check (verify.ts): block reads that never wait on the network, are
 * bounded in size and count and hash every block against its CID; the DAG's file listing; and a
 * file's bytes exported and hashed as they pass.
 */
import { createHash } from 'node:crypto'
import { exporter, type ReadableStorage, type UnixFSEntry } from 'ipfs-unixfs-exporter'
import type { CID } from 'multiformats/cid'
import { equalBytes } from '../../protocol/bytes.js'
import { DAG_PB_CODE, RAW_CODE, SHA2_256_CODE } from '../../protocol/cid.js'
import { LIMITS } from '../../protocol/limits.js'
import { isNodeError } from '../errors.js'
import { aborted, comparePaths, type FileDigest, pathProblem } from './local-files.js'
import { MAX_BLOCK_BYTES } from './profile.js'
import { asFault, fault } from './verify-problems.js'

/**
 * Block reads for the exporter: offline, bounded in size and count, each block hashed against
 * its CID. Only CIDv1 sha2-256 dag-pb and raw blocks exist in the profile; others are refused.
 */
export class VerifiedReader implements ReadableStorage {
  budget = 0
  private blocks = 0

  constructor(
    private readonly store: ReadableStorage,
    private readonly signal: AbortSignal | undefined,
    private readonly trusted?: ReadonlyMap<string, number>,
  ) {}

  get(cid: CID): AsyncGenerator<Uint8Array> {
    return this.read(cid)
  }

  private async *read(cid: CID): AsyncGenerator<Uint8Array> {
    if (this.signal?.aborted) throw aborted()
    checkCid(cid)
    if (++this.blocks > this.budget)
      throw fault('not-unixfs', `the DAG needs more than ${this.budget} blocks`)
    const parts: Uint8Array[] = []
    let n = 0
    const options: { signal?: AbortSignal; offline: boolean } = { offline: true }
    if (this.signal !== undefined) options.signal = this.signal
    try {
      for await (const part of this.store.get(cid, options)) {
        n += part.length
        if (n > MAX_BLOCK_BYTES) throw fault('not-unixfs', `block ${cid} is over ${MAX_BLOCK_BYTES} bytes`)
        parts.push(part)
      }
    } catch (e) {
      if (isNodeError(e)) throw e
      if (this.signal?.aborted) throw aborted()
      const name = (e as Error)?.name
      if (name === 'NotFoundError' || name === 'BlockNotFoundWhileOfflineError') {
        throw fault('block-missing', `block ${cid} is not in the blockstore`)
      }
      throw fault('unreadable', `block ${cid}: ${(e as Error)?.message ?? String(e)}`)
    }
    const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
    if (this.trusted?.get(cid.toString()) !== bytes.length) {
      const digest = createHash('sha256').update(bytes).digest()
      if (!equalBytes(digest, cid.multihash.digest))
        throw fault('block-corrupt', `block ${cid} does not match its CID`)
    }
    yield bytes
  }
}

export function checkCid(cid: CID): void {
  if (cid.version !== 1 || cid.multihash.code !== SHA2_256_CODE || cid.multihash.size !== 32) {
    throw fault('not-unixfs', `${cid} is not a CIDv1 with a sha2-256 multihash`)
  }
  if (cid.code !== DAG_PB_CODE && cid.code !== RAW_CODE)
    throw fault('not-unixfs', `${cid} is neither dag-pb nor raw`)
}

export interface DagFile {
  readonly path: string
  readonly cid: CID
  readonly size: number
}

/** The regular files under `root`, sorted by path, with their declared sizes. */
export async function listDag(
  reader: VerifiedReader,
  root: CID,
  signal: AbortSignal | undefined,
): Promise<DagFile[]> {
  const files: DagFile[] = []
  const seen = new Set<string>()
  const pending: { cid: CID; path: string }[] = [{ cid: root, path: '' }]
  while (pending.length > 0) {
    const { cid, path } = pending.pop()!
    const where = path === '' ? 'the root' : path
    let entry: UnixFSEntry
    try {
      checkCid(cid)
      entry = await exporter(cid, reader, { signal })
    } catch (e) {
      throw asFault(e, where)
    }
    if (entry.type === 'directory') {
      try {
        for await (const child of entry.entries({ signal })) {
          const childPath = path === '' ? child.name : `${path}/${child.name}`
          const why = child.name.includes('/') ? 'a name with "/"' : pathProblem(childPath)
          if (why !== undefined)
            throw fault('path-invalid', `${JSON.stringify(childPath.slice(0, 200))}: ${why}`)
          if (seen.has(childPath)) throw fault('not-unixfs', `${childPath} appears twice`, childPath)
          seen.add(childPath)
          if (seen.size > 2 * LIMITS.maxManifestFiles) {
            throw fault('too-many-files', `the DAG holds more than ${2 * LIMITS.maxManifestFiles} entries`)
          }
          pending.push({ cid: child.cid, path: childPath })
        }
      } catch (e) {
        throw asFault(e, where)
      }
      continue
    }
    if (path === '') throw fault('not-unixfs', `the root ${root} is not a UnixFS directory`)
    let size: bigint
    if (entry.type === 'raw') size = entry.size
    else if (entry.type === 'file' && entry.unixfs.type === 'file') size = entry.unixfs.fileSize()
    else {
      const kind = entry.type === 'file' ? entry.unixfs.type : entry.type
      throw fault('not-unixfs', `${path} is a ${kind}, not a file`, path)
    }
    if (size > BigInt(Number.MAX_SAFE_INTEGER))
      throw fault('not-unixfs', `${path} declares ${size} bytes`, path)
    files.push({ path, cid, size: Number(size) })
  }
  files.sort((a, b) => comparePaths(a.path, b.path))
  return files
}

/** A file's bytes from the DAG, hashed as they pass; `done` gets the digest at the end. */
export async function* exportChunks(
  reader: VerifiedReader,
  file: DagFile,
  done: (d: FileDigest) => void,
  onBytes: (n: number) => void,
  signal: AbortSignal | undefined,
): AsyncGenerator<Uint8Array, void, undefined> {
  const hash = createHash('sha256')
  let size = 0
  try {
    const entry = await exporter(file.cid, reader, { signal })
    if (entry.type !== 'file' && entry.type !== 'raw') throw fault('not-unixfs', `${file.path} is not a file`)
    // A bounded number of leaves in flight (the exporter's default is unbounded).
    for await (const chunk of entry.content({ signal, blockReadConcurrency: 8 })) {
      hash.update(chunk)
      size += chunk.length
      onBytes(chunk.length)
      yield chunk
    }
  } catch (e) {
    throw asFault(e, file.path)
  }
  done({ size, sha256: new Uint8Array(hash.digest()) })
}
