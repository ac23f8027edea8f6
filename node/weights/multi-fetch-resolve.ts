/**
 * Where a manifest file's bytes start in the weights DAG: one `dag-scope=block` CAR of
 * `<root>/<path>` from a source (the directory blocks on the path, sharded ones too, and the
 * file's root block), each block checked against its CID, the path then followed by
 * ipfs-unixfs-exporter over those blocks alone. A file of one raw block is whole here
 * (docs/adr/0030-multi-source-fetch.md).
 */
import { exporter } from 'ipfs-unixfs-exporter'
import type { CID } from 'multiformats/cid'
import { equalBytes } from '../../protocol/bytes.js'
import { DAG_PB_CODE, RAW_CODE, SHA2_256_CODE } from '../../protocol/cid.js'
import { isNodeError, NodeError } from '../errors.js'
import { nativeSha256 } from '../sha256.js'
import { carSections } from './car-sections.js'
import { openCar } from './multi-fetch-http.js'
import { MAX_BLOCK_BYTES } from './profile.js'

/** A path's CAR holds a few directory (or shard) blocks and one file block; far less than this. */
export const MAX_RESOLVE_BYTES = 16 * 1024 * 1024

export interface ResolvedFile {
  /** The file's root block. */
  readonly cid: CID
  /** Keys of the blocks on the path to it: a range's CAR carries them again. */
  readonly pathBlocks: ReadonlySet<string>
  /** The file's bytes, when its root is a raw block (the whole file). */
  readonly whole?: Uint8Array
}

export interface ResolveOptions {
  readonly source: string
  readonly weights: CID
  readonly path: string
  readonly signal: AbortSignal
  readonly idleMs: number
}

/** The URL path of `path` under `weights`, each segment escaped. */
export function ipfsPath(weights: CID, path: string): string {
  return `/ipfs/${weights}/${path.split('/').map(encodeURIComponent).join('/')}`
}

export async function resolveFile(options: ResolveOptions): Promise<ResolvedFile> {
  const { source, weights, path } = options
  const blocks = await pathBlocks(options)
  const store = {
    async *get(cid: CID): AsyncGenerator<Uint8Array> {
      const bytes = blocks.get(cid.toString())
      if (bytes === undefined)
        throw new NodeError('block-missing', `${source} did not send block ${cid} of ${path}`)
      yield bytes
    },
  }
  let entry: Awaited<ReturnType<typeof exporter>>
  try {
    entry = await exporter(`${weights}/${path}`, store)
  } catch (e) {
    if (isNodeError(e)) throw e
    throw new NodeError('not-unixfs', `${path} does not resolve in ${weights}: ${(e as Error).message}`, {
      status: 422,
    })
  }
  if (entry.type !== 'file' && entry.type !== 'raw')
    throw new NodeError('not-unixfs', `${path}: the weights hold a ${entry.type}, not a file`, {
      status: 422,
    })
  const onPath = new Set(blocks.keys())
  onPath.delete(entry.cid.toString())
  return entry.type === 'raw'
    ? { cid: entry.cid, pathBlocks: onPath, whole: blocks.get(entry.cid.toString())! }
    : { cid: entry.cid, pathBlocks: onPath }
}

/** The blocks of the path's CAR, each checked against its CID, by key. */
async function pathBlocks(options: ResolveOptions): Promise<Map<string, Uint8Array>> {
  const { source, weights, path, signal, idleMs } = options
  const url = `${source}${ipfsPath(weights, path)}?format=car&dag-scope=block&car-version=1&car-order=dfs&car-dups=n`
  const stream = await openCar(url, source, signal, idleMs)
  const blocks = new Map<string, Uint8Array>()
  try {
    const sections = carSections(stream.body, {
      maxBlockBytes: MAX_BLOCK_BYTES,
      maxBytes: MAX_RESOLVE_BYTES,
      place: (_cid, length) => new Uint8Array(length),
    })
    for await (const { cid, bytes } of sections) {
      checkBlock(cid, bytes, source)
      blocks.set(cid.toString(), bytes)
    }
  } finally {
    stream.close()
  }
  return blocks
}

/** A block of the profile (sha2-256, dag-pb or raw) whose bytes hash to its CID, else a NodeError. */
export function checkBlock(cid: CID, bytes: Uint8Array, source: string): void {
  if (cid.multihash.code !== SHA2_256_CODE || (cid.code !== RAW_CODE && cid.code !== DAG_PB_CODE))
    throw new NodeError('not-unixfs', `${source} sent ${cid}, not a sha2-256 dag-pb or raw block`, {
      status: 422,
    })
  if (!equalBytes(nativeSha256(bytes), cid.multihash.digest))
    throw new NodeError('block-corrupt', `${source} sent ${cid} with other bytes`, { status: 502 })
}
