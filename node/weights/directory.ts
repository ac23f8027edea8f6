/**
 * A model directory as a file list and a UnixFS DAG (SPEC.md's manifest `weights`;
 * `model publish`, `verify`).
 *
 * Why one pass: models are tens of GiB, and `publish` needs both every file's sha256 (for the
 * manifest) and the UnixFS root (for `weights`). Each file is read once, in 1 MiB chunks, and every
 * chunk feeds the file's sha256 and the importer together; the importer's blocks go to the given
 * blockstore, or nowhere when only the root is wanted.
 *
 * Two ways to the root: `importDirectory` runs the importer over the bytes on this thread and
 * stores every block; `rootOfHashed` and `planDirectory` (what `verify --cid` and `model publish`
 * use) take the leaf digests the hashing workers computed (hash-pool.ts: several files at once,
 * on every core) and run the importer's own layout and directory code above them, leaving the
 * leaves on disk. Both give the same root; the unit tests hold them to it.
 *
 * Invariants
 * - The file set is the directory's regular files, as relative POSIX paths sorted by UTF-8 bytes
 *   (the order a manifest lists them in). A symlink counts as the file it names when that is a
 *   regular file inside the directory. Anything else — a link leading out or nowhere, a link to a
 *   directory, a FIFO, socket or device, a name that is not UTF-8 or not a valid manifest path —
 *   is an issue: `importDirectory` refuses the directory, `verifyDirectory` reports it. Empty
 *   directories are not part of a model.
 * - The root follows the `unixfs-v1-2025` profile (IPIP-499: CIDv1, sha2-256, raw leaves, 1 MiB
 *   chunks, balanced layout with 1024 links, HAMT sharding above 256 KiB directory blocks), the
 *   files wrapped in one directory, no mode or mtime. `ipfs-car pack DIR` (3.1, a separate
 *   encoder) gives the same root as long as the directory has no dotfiles (it skips them without
 *   `--hidden`), its files do not all sit in one subdirectory (it strips a common prefix) and no
 *   directory holds more than 1,000 entries (it shards by count, not by block size).
 * - A file is opened without following a final symlink and without blocking, and must still be a
 *   regular file of the listed size when read; otherwise the import fails with a typed error.
 */
import type { BufferImporter, ImporterOptions, WritableStorage } from 'ipfs-unixfs-importer'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { SHA2_256_CODE } from '../../protocol/cid.js'
import type { ManifestFile } from '../../protocol/types.js'
import { NodeError } from '../errors.js'
import { type HashDone, hashFiles } from './hash-pool.js'
import {
  type AdmitFile,
  type FileDigest,
  type ListOptions,
  type LocalFile,
  listDirectory,
  progress,
  readChunks,
  statListed,
} from './local-files.js'
import { CHUNK_BYTES, discardBlocks, profileOptions, unixfsRoot } from './profile.js'

/**
 * The files of a model directory and their total size, or a `NodeError` (400) with the first
 * listing issue's code, `empty-directory` when it holds no file, `oversize` (413) when the files
 * add up to more than `maxBytes` (checked before any byte is read).
 */
export async function listModel(
  dir: string,
  options: ListOptions & { readonly maxBytes?: number } = {},
): Promise<{ files: readonly LocalFile[]; total: number }> {
  const listing = await listDirectory(dir, options)
  const first = listing.issues[0]
  if (first !== undefined) throw new NodeError(first.code, first.message, { status: 400 })
  if (listing.files.length === 0)
    throw new NodeError('empty-directory', `${dir} holds no files`, { status: 400 })
  const total = listing.files.reduce((s, f) => s + f.size, 0)
  if (options.maxBytes !== undefined && total > options.maxBytes)
    throw new NodeError('oversize', `${dir} holds ${total} bytes; models are at most ${options.maxBytes}`, {
      status: 413,
    })
  return { files: listing.files, total }
}

export interface ImportOptions extends ListOptions {
  /** Refuse (`oversize`) a directory whose files add up to more, before reading them. */
  readonly maxBytes?: number
  /** Where the blocks go; by default nowhere (only the root is computed). */
  readonly blockstore?: WritableStorage
  /** Bytes read so far, and the total to read. */
  readonly onProgress?: (bytesRead: number, totalBytes: number) => void
  readonly signal?: AbortSignal
  /** Every listed file is put to it before any byte is read, and again when it is opened. */
  readonly admit?: AdmitFile
}

export interface DirectoryImport {
  /** The `unixfs-v1-2025` root: a manifest's `weights`. */
  readonly root: CID
  /** Every file, sorted by path: a manifest's `files`. */
  readonly files: readonly ManifestFile[]
  /** Total bytes: a manifest's `size`. */
  readonly size: number
}

/**
 * Reads every file of `dir` once: sha256 and size per file, and the UnixFS import. Throws a
 * `NodeError` with the first listing issue's code when the directory holds anything that cannot
 * be part of a model, `empty-directory` when it holds no file, `file-changed` when a file changes
 * while it is read, `aborted` when `signal` fires.
 */
export async function importDirectory(dir: string, options: ImportOptions = {}): Promise<DirectoryImport> {
  const { files: listed, total } = await listModel(dir, options)
  const { admit, signal } = options
  if (admit) for (const f of listed) await admit(f, await statListed(f))
  const onBytes = progress(total, options.onProgress)
  const digests = new Map<string, FileDigest>()
  const entries = listed.map((f) => ({
    path: f.path,
    content: readChunks(f, (d) => digests.set(f.path, d), { signal, onBytes, ...(admit ? { admit } : {}) }),
  }))
  const root = await unixfsRoot(entries, options.blockstore ?? discardBlocks)
  const files = listed.map((f) => {
    const d = digests.get(f.path)
    if (d === undefined) throw new NodeError('import-failed', `${f.path} was not read`)
    return { path: f.path, size: d.size, sha256: d.sha256 }
  })
  return { root, files, size: files.reduce((s, f) => s + f.size, 0) }
}

// ------------------------------------------------------------ hashed on worker threads

const DIGEST_BYTES = 32

/**
 * A chunk read and hashed elsewhere (on a hashing worker): its raw leaf's CID and length. It
 * passes through the importer where the chunk's bytes would, as an empty Uint8Array (so the
 * importer's own stages carry it along), and `knownLeaves` turns it into the leaf.
 */
class KnownLeaf extends Uint8Array {
  constructor(
    readonly cid: CID,
    readonly bytes: number,
  ) {
    super(0)
  }
}

const NO_BLOCK = new Uint8Array(0)

/**
 * The profile, for chunks that were cut and hashed where they were read. Why this is still the
 * profile's definition: with raw leaves the importer's chunker cuts fixed 1 MiB pieces (one
 * empty piece for an empty file) and its buffer importer makes each piece a raw block whose CID
 * is the sha256 of the piece. The hashing workers read exactly those pieces and hash them; the
 * importer's own layout (balanced, 1024 links), file nodes and directories (HAMT thresholds
 * included) then build everything above the leaves, unchanged. The unit tests compare both ways
 * on edge shapes.
 */
function knownLeaves(): ImporterOptions {
  const bufferImporter: BufferImporter = async function* (file) {
    for await (const leaf of file.content) {
      if (!(leaf instanceof KnownLeaf)) throw new NodeError('import-failed', 'a chunk came without its leaf')
      // `block` is only read to rewrite a lone leaf with a mode or mtime, which the profile never sets.
      yield async () => ({ cid: leaf.cid, size: BigInt(leaf.bytes), block: NO_BLOCK })
    }
  }
  return { ...profileOptions(), chunker: (source) => source, bufferImporter }
}

/** The raw leaf CIDs of a file of `size` bytes from the concatenated chunk digests. */
export function leafCids(path: string, size: number, digests: Uint8Array): CID[] {
  const count = Math.max(1, Math.ceil(size / CHUNK_BYTES))
  if (digests.length !== count * DIGEST_BYTES)
    throw new NodeError('import-failed', `${path}: ${digests.length / DIGEST_BYTES} leaves for ${size} bytes`)
  return Array.from({ length: count }, (_, i) =>
    CID.createV1(
      raw.code,
      createDigest(SHA2_256_CODE, digests.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES)),
    ),
  )
}

export interface HashedFile {
  /** Relative POSIX path, as a manifest lists it. */
  readonly path: string
  readonly size: number
  /** Its raw leaves, in order (`leafCids`). */
  readonly leaves: readonly CID[]
}

/**
 * The profile's root over files whose chunks were hashed already (`hashFiles` with leaves): the
 * same root `unixfsRoot` gives over their bytes, without reading them again. Only the file and
 * directory nodes go to `blockstore`; the leaves are where the files are.
 */
export async function rootOfHashed(
  files: readonly HashedFile[],
  blockstore: WritableStorage = discardBlocks,
): Promise<CID> {
  const entries = files.map((f) => ({
    path: f.path,
    content: (async function* () {
      for (const [i, cid] of f.leaves.entries()) {
        yield new KnownLeaf(cid, i < f.leaves.length - 1 ? CHUNK_BYTES : f.size - i * CHUNK_BYTES)
      }
    })(),
  }))
  return unixfsRoot(entries, blockstore, knownLeaves())
}

export interface PlanOptions extends ListOptions {
  /** Bytes read so far, and the total to read. */
  readonly onProgress?: (bytesRead: number, totalBytes: number) => void
  readonly signal?: AbortSignal
}

export interface PlannedFile {
  readonly file: LocalFile
  readonly leaves: readonly CID[]
  /** Identity and mtime when hashed: a later read refuses a file that changed since. */
  readonly stamp: string
}

export interface DirectoryPlan {
  /** The `unixfs-v1-2025` root: a manifest's `weights`. */
  readonly root: CID
  /** Total bytes: a manifest's `size`. */
  readonly size: number
  /** Every file with its raw leaves, in manifest order. */
  readonly planned: readonly PlannedFile[]
  /** The DAG's other blocks (file nodes and directories, the root included), by CID. */
  readonly nodes: ReadonlyMap<string, { readonly cid: CID; readonly bytes: Uint8Array }>
}

/**
 * The root of `dir` with the files hashed on worker threads, their leaves left on disk: the raw
 * leaf CIDs of every file and the DAG's few other blocks are kept, so that the DAG can be sent
 * (`directoryCar`) by reading the files once more. The files' own sha256 is not computed here:
 * `directoryCar` computes it from the bytes it sends, so it certifies what the node received,
 * and the first pass, which nothing can overlap (the CAR's header and the signed upload
 * statement name the root), does half the hashing. Memory: 32 bytes per MiB of model, plus the
 * file and directory nodes. Throws as `importDirectory` does.
 */
export async function planDirectory(dir: string, options: PlanOptions = {}): Promise<DirectoryPlan> {
  const { files, total } = await listModel(dir, options)
  const outcomes = await hashFiles(files, {
    whole: false,
    leaves: true,
    chunkBytes: CHUNK_BYTES,
    signal: options.signal,
    onBytes: progress(total, options.onProgress),
  })
  const done: HashDone[] = outcomes.map((o) => {
    if (!o.ok) throw o.error
    return o.digest
  })
  const planned = files.map((file, i) => ({
    file,
    leaves: leafCids(file.path, done[i]!.size, done[i]!.leaves!),
    stamp: done[i]!.stamp,
  }))
  const nodes = new Map<string, { cid: CID; bytes: Uint8Array }>()
  const root = await rootOfHashed(
    planned.map((p) => ({ path: p.file.path, size: p.file.size, leaves: p.leaves })),
    {
      put: async (cid: CID, bytes: Uint8Array) => {
        nodes.set(cid.toString(), { cid, bytes })
        return cid
      },
    },
  )
  return { root, size: total, planned, nodes }
}
