/**
 * The `unixfs-v1-2025` profile (IPIP-499: CIDv1, sha2-256, raw leaves, 1 MiB chunks, balanced
 * layout with 1024 links, HAMT sharding above 256 KiB directory blocks), the files wrapped in one
 * directory, no mode or mtime (SPEC.md's manifest `weights`): its constants, the importer's
 * options for it, and the root it gives over a set of files.
 */
import { type ImporterOptions, importer, type WritableStorage } from 'ipfs-unixfs-importer'
import type { CID } from 'multiformats/cid'
import { isNodeError, NodeError } from '../errors.js'

export const CID_PROFILE = 'unixfs-v1-2025' as const
/** The profile's chunk size; files are also read in chunks of this size, so none is copied. */
export const CHUNK_BYTES = 1024 * 1024
/**
 * The largest block a DAG in the profile holds: a leaf is one chunk and directory and file
 * nodes are smaller; twice that leaves room and still bounds what a reader takes into memory.
 */
export const MAX_BLOCK_BYTES = 2 * CHUNK_BYTES

export type { WritableStorage }

/** A block sink that keeps nothing: for computing a root without storing the DAG. */
export const discardBlocks: WritableStorage = { put: async (cid: CID) => cid }

/** Fresh importer options for the profile (the importer writes into the object it is given). */
export function profileOptions(): ImporterOptions {
  return {
    profile: CID_PROFILE,
    wrapWithDirectory: true,
    // Files one after another: sequential reads, a progress that only grows, bounded memory.
    fileImportConcurrency: 1,
  }
}

export interface UnixfsEntry {
  readonly path: string
  readonly content: AsyncIterable<Uint8Array>
}

/**
 * The profile's root over `entries` (files by relative path, wrapped in one directory). Blocks
 * go to `blockstore`. Errors thrown by the content iterables come out as they are when they are
 * `NodeError`s; anything the importer throws becomes `NodeError('import-failed')`.
 */
export async function unixfsRoot(
  entries: Iterable<UnixfsEntry> | AsyncIterable<UnixfsEntry>,
  blockstore: WritableStorage = discardBlocks,
  options: ImporterOptions = profileOptions(),
): Promise<CID> {
  let root: CID | undefined
  try {
    for await (const entry of importer(entries, blockstore, options)) {
      if (entry.path === '') root = entry.cid
    }
  } catch (e) {
    if (isNodeError(e)) throw e
    // The importer's and the blockstore's own messages can name the node's directories: the
    // answer says what happened in general terms, the cause (logged by the caller) has the rest.
    const code = (e as NodeJS.ErrnoException)?.code
    throw new NodeError(
      'import-failed',
      `the UnixFS import failed${typeof code === 'string' && /^E[A-Z]+$/.test(code) ? ` (${code})` : ''}; the node's log has the details`,
      { cause: e },
    )
  }
  if (root === undefined) throw new NodeError('import-failed', 'the UnixFS importer gave no root')
  return root
}
