/**
 * The walk of an uploaded DAG (SPEC.md §7): every block under the root staged or already held,
 * every node UnixFS, and its logical size — the bytes every file yields when read, a block linked
 * N times counted N times — computed from the DAG itself, within `maxModelBytes`.
 */
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import type { CID } from 'multiformats/cid'
import { DAG_PB_CODE, IDENTITY_CODE, RAW_CODE } from '../../protocol/cid.js'
import type { NodeError } from '../errors.js'
import { bad } from './upload-car.js'

function missing(cid: CID): NodeError {
  return bad('dag-incomplete', `block ${cid} under the root is neither in the CAR nor held here`)
}

function notUnixfs(cid: CID, why: string): NodeError {
  return bad('not-unixfs', `block ${cid} ${why}`)
}

/** Where the walk finds a block: staged by this upload, or held in the blockstore before it. */
export interface DagBlocks {
  /** The bytes of a dag-pb block, or null when it is neither staged nor held. */
  node(cid: CID): Promise<Uint8Array | null>
  /** The size of a raw block, or null when it is neither staged nor held. */
  leafSize(cid: CID): Promise<number | null>
}

type NodeKind = 'leaf' | 'file' | 'directory'

interface Measured {
  readonly cid: CID
  readonly kind: NodeKind
  /** The logical size: the bytes reading it yields. */
  readonly size: number
}

/** A dag-pb node read, waiting for its links to be measured. */
interface Opened {
  readonly cid: CID
  readonly key: string
  readonly kind: 'file' | 'directory'
  readonly links: CID[]
  /** A file node's own data bytes, and what it declares of each link. */
  readonly inline: number
  readonly blockSizes: readonly bigint[]
}

export interface DagLimits {
  /** The most distinct nodes walked. */
  readonly maxNodes: number
  /** The largest logical size accepted; the walk stops as soon as it is passed. */
  readonly maxLogicalBytes: number
  readonly signal?: AbortSignal
}

export interface DagMeasure {
  /** The logical size of the DAG: every file's bytes as read, a block linked N times counted N times. */
  readonly size: number
  /** Every block reachable from the root, once each (identity CIDs aside: they are not stored). */
  readonly reachable: readonly CID[]
}

async function openNode(cid: CID, blocks: DagBlocks): Promise<Measured | Opened> {
  const identity = cid.multihash.code === IDENTITY_CODE ? cid.multihash.digest : undefined
  if (cid.code === RAW_CODE) {
    const size = identity ? identity.byteLength : await blocks.leafSize(cid)
    if (size === null) throw missing(cid)
    return { cid, kind: 'leaf', size }
  }
  if (cid.code !== DAG_PB_CODE) throw notUnixfs(cid, 'is neither raw nor dag-pb')
  const bytes = identity ?? (await blocks.node(cid))
  if (bytes === null) throw missing(cid)
  let node: dagPb.PBNode
  let fs: UnixFS
  try {
    node = dagPb.decode(bytes)
    if (!node.Data) throw new Error('it has no UnixFS data')
    fs = UnixFS.unmarshal(node.Data)
  } catch (e) {
    throw notUnixfs(cid, `is not a UnixFS node: ${(e as Error).message}`)
  }
  const links = node.Links.map((l) => l.Hash)
  if (fs.type === 'directory' || fs.type === 'hamt-sharded-directory')
    return { cid, key: cid.toString(), kind: 'directory', links, inline: 0, blockSizes: [] }
  if (fs.type !== 'file' && fs.type !== 'raw')
    throw notUnixfs(cid, `is a ${fs.type} node; weights are files and directories`)
  if (fs.blockSizes.length !== links.length)
    throw notUnixfs(cid, `declares ${fs.blockSizes.length} block sizes for ${links.length} links`)
  return {
    cid,
    key: cid.toString(),
    kind: 'file',
    links,
    inline: fs.data?.byteLength ?? 0,
    blockSizes: fs.blockSizes,
  }
}

function tooLarge(root: CID, max: number): NodeError {
  return bad(
    'upload-too-large',
    `the DAG under ${root} holds more than ${max} bytes when read (the federation's maxModelBytes; a block linked N times counts N times)`,
    413,
  )
}

/** The logical size of an opened node whose links are all measured. */
function sizeOf(opened: Opened, measured: ReadonlyMap<string, Measured>, root: CID, max: number): number {
  let size = opened.inline
  for (let i = 0; i < opened.links.length; i++) {
    const link = opened.links[i]!
    const child = measured.get(link.toString())!
    if (opened.kind === 'file') {
      if (child.kind === 'directory') throw notUnixfs(opened.cid, `is a file that links directory ${link}`)
      if (opened.blockSizes[i] !== BigInt(child.size))
        throw notUnixfs(
          opened.cid,
          `declares ${opened.blockSizes[i]} bytes for its link ${i}, which holds ${child.size}`,
        )
    }
    size += child.size
    if (size > max) throw tooLarge(root, max)
  }
  return size
}

/**
 * Walks the DAG under `root` once per distinct node (depth-first, each node measured after its
 * links), checks it is complete and UnixFS (files of raw leaves and file nodes whose declared
 * block sizes are what their links hold, directories of files and directories), and computes its
 * logical size from the DAG itself: a node's size is its own data plus the size of every link, so
 * a leaf linked 2,000 times counts 2,000 times without being read again.
 */
export async function measureDag(root: CID, blocks: DagBlocks, limits: DagLimits): Promise<DagMeasure> {
  const { maxLogicalBytes: max, signal } = limits
  const measured = new Map<string, Measured>()
  const open = new Set<string>()
  const stack: ({ cid: CID; key: string } | Opened)[] = [{ cid: root, key: root.toString() }]
  let nodes = 0
  while (stack.length > 0) {
    if (signal?.aborted) throw bad('aborted', 'the upload was aborted', 499)
    const top = stack[stack.length - 1]!
    if (measured.has(top.key)) {
      stack.pop()
      continue
    }
    if ('links' in top) {
      stack.pop()
      open.delete(top.key)
      measured.set(top.key, { cid: top.cid, kind: top.kind, size: sizeOf(top, measured, root, max) })
      continue
    }
    if (++nodes > limits.maxNodes)
      throw bad('dag-too-large', `the DAG under ${root} has more than ${limits.maxNodes} nodes`, 413)
    const opened = await openNode(top.cid, blocks)
    if (!('links' in opened)) {
      stack.pop()
      if (opened.size > max) throw tooLarge(root, max)
      measured.set(top.key, opened)
      continue
    }
    stack[stack.length - 1] = opened
    open.add(opened.key)
    const queued = new Set<string>()
    for (let i = opened.links.length - 1; i >= 0; i--) {
      const link = opened.links[i]!
      const key = link.toString()
      // Content addressing rules out cycles; refusing one keeps a broken hash from looping here.
      if (open.has(key)) throw notUnixfs(opened.cid, `links ${link}, a node above it`)
      if (measured.has(key) || queued.has(key)) continue
      queued.add(key)
      stack.push({ cid: link, key })
    }
  }
  const reachable: CID[] = []
  for (const m of measured.values()) if (m.cid.multihash.code !== IDENTITY_CODE) reachable.push(m.cid)
  return { size: measured.get(root.toString())!.size, reachable }
}
