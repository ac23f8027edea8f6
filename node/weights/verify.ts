/**
 * The DAG under a manifest's `weights` in a blockstore against the manifest (a steward before
 * sealing `weightsVerified`; SPEC.md's manifest and seal). Blocks are read with `offline: true`,
 * so a missing block is the problem `block-missing`, never a network wait. Every block is hashed
 * against its CID as it is read (verified-reader.ts). The listing (directory blocks and file
 * roots) is checked first — the file set and declared sizes against the manifest and
 * `maxModelBytes` — so an oversize or mismatched model is refused before its data is read. Then
 * every file is exported once; its bytes feed its sha256 and a fresh import with the profile,
 * whose root must equal `weights`.
 *
 * Why re-import instead of checking the DAG's shape: the profile is defined by what the importer
 * produces (chunking, the balanced layout's exact fill order, when a single leaf replaces a file
 * node, when a directory becomes a HAMT, no mode or mtime). Re-checking each rule by hand would be
 * a second, subtly different definition; recomputing the root is the definition itself, costs one
 * sha256 per byte that is being read anyway, and proves what deployers rely on: that `verify
 * --cid` on the fetched directory gives the published root. With the per-block hash check it also
 * proves the stored blocks are the blocks of `weights`, which is what peers will be served.
 *
 * Codes: `file-missing`, `file-extra`, `size-mismatch`, `sha256-mismatch`, `root-mismatch`,
 * `block-missing`, `block-corrupt`, `not-unixfs`, `oversize`, `aborted` (verify-problems.ts). A
 * directory on disk is checked by verify-directory.ts.
 */
import { createHash } from 'node:crypto'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import type { ReadableStorage } from 'ipfs-unixfs-exporter'
import type { CID } from 'multiformats/cid'
import { DAG_PB_CODE, RAW_CODE } from '../../protocol/cid.js'
import { LIMITS } from '../../protocol/limits.js'
import { isNodeError } from '../errors.js'
import { rootOfHashed } from './directory.js'
import { aborted, type FileDigest, progress } from './local-files.js'
import { CHUNK_BYTES, unixfsRoot } from './profile.js'
import { type DagFile, exportChunks, listDag, VerifiedReader } from './verified-reader.js'
import {
  asFault,
  asProblem,
  compareDigests,
  faultPaths,
  manifestFiles,
  oversize,
  type Problem,
  result,
  rootMismatch,
  sizeMismatch,
  type VerifyResult,
  type WeightsManifest,
} from './verify-problems.js'

export type { Problem, ProblemCode, VerifyResult, WeightsManifest } from './verify-problems.js'

export interface VerifyDagOptions {
  /** The federation's `maxModelBytes`: larger models are refused before their data is read. */
  readonly maxModelBytes: number
  readonly signal?: AbortSignal
  readonly onProgress?: (bytesRead: number, totalBytes: number) => void
  /**
   * Blocks the caller has just hashed against their CIDs (a fetch that stored them), key
   * (`cid.toString()`) to size: read but not hashed again. Each file's sha256 still covers them.
   */
  readonly trusted?: ReadonlyMap<string, number>
  /**
   * Files' sha256 the caller took from their leaves in order (a gateway stream, `DfsFileDigests`),
   * by file node CID. Used, instead of reading the file, only for a file in the profile's shape
   * whose every leaf is in `trusted` with the size its place needs.
   */
  readonly fileDigests?: ReadonlyMap<string, FileDigest>
}

/**
 * Checks the DAG under `manifest.weights` in `blockstore` against the manifest, never waiting on
 * the network. Throws nothing for bad data; every defect is a problem.
 */
export async function verifyDag(
  blockstore: ReadableStorage,
  manifest: WeightsManifest,
  options: VerifyDagOptions,
): Promise<VerifyResult> {
  const problems: Problem[] = []
  const wanted = manifestFiles(manifest, problems)
  if (manifest.size > options.maxModelBytes) {
    problems.push(oversize(manifest.size, options.maxModelBytes, 'the manifest'))
    return result(problems)
  }
  if (problems.length > 0) return result(problems)
  const reader = new VerifiedReader(blockstore, options.signal, options.trusted)
  // Listing: directory blocks and file roots (small files are read whole here, hence the budget).
  reader.budget = 4 * LIMITS.maxManifestFiles + 4096
  let listed: DagFile[]
  try {
    listed = await listDag(reader, manifest.weights, options.signal)
  } catch (e) {
    problems.push(asProblem(e, faultPaths.get(e as object)))
    return result(problems)
  }
  const declared = listed.reduce((s, f) => s + f.size, 0)
  if (declared > options.maxModelBytes) {
    problems.push(oversize(declared, options.maxModelBytes, 'the DAG'))
    return result(problems)
  }
  const present = new Map(listed.map((f) => [f.path, f]))
  for (const path of wanted.keys()) {
    if (!present.has(path))
      problems.push({ code: 'file-missing', path, message: `${path} is not in the DAG` })
  }
  for (const f of listed) {
    const m = wanted.get(f.path)
    if (m === undefined)
      problems.push({ code: 'file-extra', path: f.path, message: `${f.path} is not in the manifest` })
    else if (m.size !== f.size) problems.push(sizeMismatch(f.path, f.size, m.size))
  }
  if (problems.length > 0) return result(problems)

  // Data: each file once, hashed and re-imported. A DAG can link one leaf many times, so the
  // block budget follows the declared sizes (already bounded by maxModelBytes).
  reader.budget += 2 * Math.ceil(declared / CHUNK_BYTES) + 4 * listed.length
  let onBytes = progress(declared, options.onProgress)
  const digests = new Map<string, FileDigest>()
  try {
    // The common case, a DAG in the profile's shape (raw leaves of 1 MiB): each leaf is read once
    // for the file's sha256, and the root is rebuilt from the leaves' CIDs with the importer's own
    // layout (rootOfHashed) instead of hashing every byte again in a re-import. Anything else
    // (other chunking, inline data, dag-pb leaves) takes the general path below, which then finds
    // the root mismatch.
    const fast = await leafFiles(reader, listed, options.signal)
    const known = knownDigests(fast, options.trusted, options.fileDigests)
    if (fast !== undefined && (await readLeaves(reader, fast, known, digests, onBytes, options.signal))) {
      const root = await rootOfHashed(fast)
      if (!root.equals(manifest.weights)) problems.push(rootMismatch(root, manifest.weights))
      compareDigests(wanted, digests, problems)
      return result(problems)
    }
    digests.clear()
    onBytes = progress(declared, options.onProgress) // the general path reads everything again
    if (fast !== undefined) reader.budget += 2 * Math.ceil(declared / CHUNK_BYTES) + 4 * listed.length
    const entries = listed.map((f) => ({
      path: f.path,
      content: exportChunks(reader, f, (d) => digests.set(f.path, d), onBytes, options.signal),
    }))
    const root = await unixfsRoot(entries)
    if (!root.equals(manifest.weights)) problems.push(rootMismatch(root, manifest.weights))
  } catch (e) {
    problems.push(asProblem(e, faultPaths.get(e as object)))
  }
  compareDigests(wanted, digests, problems)
  return result(problems)
}

/**
 * Each file's raw leaves in order, reading only its dag-pb nodes; undefined unless every file is
 * raw leaves under plain file nodes (no inline data) whose count fits 1 MiB chunks of its size.
 */
async function leafFiles(
  reader: VerifiedReader,
  files: readonly DagFile[],
  signal: AbortSignal | undefined,
): Promise<LeafFile[] | undefined> {
  const out: LeafFile[] = []
  for (const f of files) {
    const leaves: CID[] = []
    const stack: CID[] = [f.cid]
    while (stack.length > 0) {
      if (signal?.aborted) throw aborted()
      const cid = stack.pop()!
      if (cid.code === RAW_CODE) {
        leaves.push(cid)
        continue
      }
      if (cid.code !== DAG_PB_CODE) return undefined
      let node: dagPb.PBNode
      let fs: UnixFS
      try {
        node = dagPb.decode(await readAll(reader, cid, f.path))
        fs = UnixFS.unmarshal(node.Data ?? new Uint8Array())
      } catch (e) {
        if (isNodeError(e)) throw e
        return undefined
      }
      if (fs.type !== 'file' || (fs.data !== undefined && fs.data.length > 0)) return undefined
      for (let i = node.Links.length - 1; i >= 0; i--) stack.push(node.Links[i]!.Hash)
    }
    if (leaves.length !== Math.max(1, Math.ceil(f.size / CHUNK_BYTES))) return undefined
    out.push({ path: f.path, cid: f.cid, size: f.size, leaves })
  }
  return out
}

interface LeafFile {
  readonly path: string
  readonly cid: CID
  readonly size: number
  readonly leaves: readonly CID[]
}

/**
 * The digests in `fileDigests` that can stand for reading a file: its size is the file's, and
 * every leaf was hashed by the caller at the size its place in 1 MiB chunking needs.
 */
function knownDigests(
  files: readonly LeafFile[] | undefined,
  trusted: ReadonlyMap<string, number> | undefined,
  fileDigests: ReadonlyMap<string, FileDigest> | undefined,
): Map<string, FileDigest> {
  const known = new Map<string, FileDigest>()
  if (files === undefined || trusted === undefined || fileDigests === undefined) return known
  for (const f of files) {
    const d = fileDigests.get(f.cid.toString())
    if (d === undefined || d.size !== f.size) continue
    const fits = f.leaves.every(
      (leaf, i) =>
        trusted.get(leaf.toString()) === (i < f.leaves.length - 1 ? CHUNK_BYTES : f.size - i * CHUNK_BYTES),
    )
    if (fits) known.set(f.path, d)
  }
  return known
}

/**
 * Reads every leaf once (a few ahead), feeding each file's sha256, except in the files whose
 * digest is `known`; false as soon as a leaf is not the size its place in 1 MiB chunking needs
 * (the DAG is then not in the profile's shape).
 */
async function readLeaves(
  reader: VerifiedReader,
  files: readonly LeafFile[],
  known: ReadonlyMap<string, FileDigest>,
  digests: Map<string, FileDigest>,
  onBytes: (n: number) => void,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  for (const f of files) {
    const digest = known.get(f.path)
    if (digest !== undefined) {
      digests.set(f.path, digest)
      onBytes(f.size)
      continue
    }
    const hash = createHash('sha256')
    const ahead: Promise<Uint8Array>[] = []
    const start = (i: number) => {
      const p = readAll(reader, f.leaves[i]!, f.path)
      p.catch(() => {}) // awaited in order below
      ahead.push(p)
    }
    for (let i = 0; i < Math.min(LEAVES_AHEAD, f.leaves.length); i++) start(i)
    for (let i = 0; i < f.leaves.length; i++) {
      if (signal?.aborted) throw aborted()
      const bytes = await ahead.shift()!
      if (i + LEAVES_AHEAD < f.leaves.length) start(i + LEAVES_AHEAD)
      const expected = i < f.leaves.length - 1 ? CHUNK_BYTES : f.size - i * CHUNK_BYTES
      if (bytes.length !== expected) {
        await Promise.allSettled(ahead)
        return false
      }
      hash.update(bytes)
      onBytes(bytes.length)
    }
    digests.set(f.path, { size: f.size, sha256: new Uint8Array(hash.digest()) })
  }
  return true
}

/** Leaves read ahead of the one being hashed (1 MiB each). */
const LEAVES_AHEAD = 4

async function readAll(reader: VerifiedReader, cid: CID, path: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  try {
    for await (const part of reader.get(cid)) parts.push(part)
  } catch (e) {
    throw asFault(e, path)
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
}
