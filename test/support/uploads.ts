/**
 * Building uploads by hand for the upload tests: small UnixFS DAGs (raw leaves under a file node,
 * files under a directory, one leaf linked many times), their CARs, and upload statement headers
 * (SPEC.md §7) with every field under the test's control.
 */
import { randomBytes } from 'node:crypto'
import { CarWriter } from '@ipld/car/writer'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { peerIdBytes, type Signer, UPLOAD_NONCE_BYTES, uploadStatementBytes } from '../../protocol/index.js'

export interface Block {
  readonly cid: CID
  readonly bytes: Uint8Array
}

/** A DAG: its root, every distinct block (root first), and its logical size. */
export interface Dag {
  readonly root: CID
  readonly blocks: readonly Block[]
  readonly size: number
}

export async function rawBlock(bytes: Uint8Array): Promise<Block> {
  return { cid: CID.createV1(raw.code, await sha256.digest(bytes)), bytes }
}

async function pbBlock(
  data: UnixFS,
  links: readonly { cid: CID; name?: string; size: number }[],
): Promise<Block> {
  const bytes = dagPb.encode(
    dagPb.prepare({
      Data: data.marshal(),
      Links: links.map((l) => ({ Hash: l.cid, Name: l.name ?? '', Tsize: l.size })),
    }),
  )
  return { cid: CID.createV1(dagPb.code, await sha256.digest(bytes)), bytes }
}

/** A file node over `leaves` in order (a leaf may appear many times: it is linked each time). */
export async function fileOf(leaves: readonly Block[]): Promise<Dag> {
  const fs = new UnixFS({ type: 'file', blockSizes: leaves.map((l) => BigInt(l.bytes.length)) })
  const node = await pbBlock(
    fs,
    leaves.map((l) => ({ cid: l.cid, size: l.bytes.length })),
  )
  const distinct = new Map<string, Block>()
  for (const l of leaves) distinct.set(l.cid.toString(), l)
  return {
    root: node.cid,
    blocks: [node, ...distinct.values()],
    size: leaves.reduce((s, l) => s + l.bytes.length, 0),
  }
}

/** A file of `count` leaves of `leafBytes` random bytes each. */
export async function randomFile(count: number, leafBytes: number): Promise<Dag> {
  const leaves = await Promise.all(Array.from({ length: count }, () => rawBlock(randomBytes(leafBytes))))
  return fileOf(leaves)
}

/** A directory of named DAGs. */
export async function directoryOf(entries: readonly { name: string; dag: Dag }[]): Promise<Dag> {
  const node = await pbBlock(
    new UnixFS({ type: 'directory' }),
    entries.map((e) => ({ cid: e.dag.root, name: e.name, size: e.dag.size })),
  )
  const distinct = new Map<string, Block>()
  for (const e of entries) for (const b of e.dag.blocks) distinct.set(b.cid.toString(), b)
  return {
    root: node.cid,
    blocks: [node, ...distinct.values()],
    size: entries.reduce((s, e) => s + e.dag.size, 0),
  }
}

/** One leaf linked `times` times by one file node: a small upload whose logical size is large. */
export async function repeatedLeaf(leafBytes: number, times: number): Promise<Dag> {
  const leaf = await rawBlock(randomBytes(leafBytes))
  return fileOf(Array.from({ length: times }, () => leaf))
}

/** A CARv1 naming `root`, with `blocks` in the order given (repeats and strays as given). */
export async function carOf(root: CID, blocks: Iterable<Block>): Promise<Uint8Array> {
  const { writer, out } = CarWriter.create([root])
  const collected = (async () => {
    const parts: Uint8Array[] = []
    for await (const c of out) parts.push(c)
    return new Uint8Array(Buffer.concat(parts))
  })()
  for (const b of blocks) await writer.put(b)
  await writer.close()
  return collected
}

export interface StatementFields {
  readonly federation: CID
  readonly peerId: string
  readonly root: CID
  readonly size: number
  readonly at?: number
  readonly nonce?: Uint8Array
}

/**
 * Version-2 statement headers signed by `signer` over `signed` (the headers' own fields unless
 * overridden: to send one thing and sign another).
 */
export function statementHeaders(
  signer: Signer,
  fields: StatementFields,
  signed: Partial<StatementFields> = {},
): Record<string, string> {
  const at = fields.at ?? Date.now()
  const nonce = fields.nonce ?? new Uint8Array(randomBytes(UPLOAD_NONCE_BYTES))
  const s = { ...fields, at, nonce, ...signed }
  const node = peerIdBytes(s.peerId)
  if (node === undefined) throw new Error(`not a peer id: ${s.peerId}`)
  const bytes = uploadStatementBytes({
    federation: s.federation,
    node,
    root: s.root,
    at: s.at ?? at,
    size: s.size,
    nonce: s.nonce ?? nonce,
  })
  return {
    'content-type': 'application/vnd.ipld.car',
    'allmende-upload-version': '2',
    'allmende-upload-author': signer.did,
    'allmende-upload-federation': fields.federation.toString(),
    'allmende-upload-node': fields.peerId,
    'allmende-upload-root': fields.root.toString(),
    'allmende-upload-at': String(at),
    'allmende-upload-size': String(fields.size),
    'allmende-upload-nonce': Buffer.from(nonce).toString('hex'),
    'allmende-upload-signature': Buffer.from(signer.sign(bytes)).toString('base64'),
  }
}
