/**
 * Building a certificate (SPEC.md §12.1) from a node's fold: the genesis, every copy of the
 * newest counted checkpoint with its list, the governance chain, the proof for the model and the
 * ratification with its seals and votes.
 */

import * as CarBufferWriter from '@ipld/car/buffer-writer'
import type { CID } from 'multiformats/cid'
import { equalBytes } from '../bytes.js'
import { encode } from '../cbor.js'
import { checkpointFor } from '../checkpoint.js'
import { cidKey, cidOfBlock, compareCids } from '../cid.js'
import { type Block, buildList } from '../cidlist.js'
import type { Fold } from '../fold/index.js'
import type { AnyVerified, Verified } from '../record.js'
import { proveKey, verifyProof } from '../stateroot.js'

interface Collector {
  readonly blocks: Map<string, Block>
  add(b: Block): void
  record(v: AnyVerified): void
}

function collector(): Collector {
  const blocks = new Map<string, Block>()
  const c: Collector = {
    blocks,
    add: (b) => {
      blocks.set(cidKey(b.cid), b)
    },
    record: (v) => {
      c.add({ cid: v.cid, bytes: v.bytes })
      if (v.record.kind === 'seal' && v.lists) {
        for (const b of buildList(v.lists.votes).blocks) c.add(b)
        for (const b of buildList(v.lists.attestations).blocks) c.add(b)
      }
      if (v.record.kind === 'checkpoint' && v.finalized)
        for (const b of buildList(v.finalized).blocks) c.add(b)
    },
  }
  return c
}

/** A proposal with its valid seals and every vote and attestation they name. */
function collectDecision(fold: Fold, c: Collector, proposal: CID): void {
  const p = fold.get(proposal)
  if (!p) return
  c.record(p)
  for (const r of fold.records()) {
    if (r.record.kind !== 'seal' || !r.record.body.proposal.equals(proposal)) continue
    if (fold.report(r.cid)?.status !== 'applied') continue
    c.record(r)
    for (const named of [...(r.lists?.votes ?? []), ...(r.lists?.attestations ?? [])]) {
      const v = fold.get(named)
      if (v) c.record(v)
    }
  }
}

/**
 * Builds the certificate for `model` (name@version) from a node's fold,
 * with the newest counted checkpoint. Throws if there is no counted
 * checkpoint (nothing to certify yet).
 */
export function buildCertificate(fold: Fold, model: string): Uint8Array {
  const state = fold.state()
  const cp = state.checkpoint
  if (!cp)
    throw new Error(
      'no checkpoint has been counted yet: a certificate needs one signed by the seal threshold of stewards',
    )
  const c = collector()
  const anchor = fold.get(cp.cid) as Verified<'checkpoint'>
  c.record(state.genesis)
  // Every identical copy of the checkpoint (one per signer).
  const same = (v: AnyVerified) =>
    v.record.kind === 'checkpoint' &&
    equalBytes(encode(v.record.body), encode(anchor.record.body)) &&
    fold.report(v.cid)?.status === 'applied'
  for (const r of fold.records()) if (same(r)) c.record(r)
  // The chain from the head back to the genesis.
  for (let head = cp.head; !head.equals(state.federation); ) {
    collectDecision(fold, c, head)
    const p = fold.get(head) as Verified<'proposal'> | undefined
    if (!p) break
    head = p.record.body.basis
  }
  // The proof, from the checkpoint's own content rebuilt (it is deterministic).
  const content = checkpointFor(state, cp.epoch)
  if (!content.root.root.equals(cp.stateRoot)) {
    throw new Error(
      'this node cannot rebuild the checkpointed state root; it may lack records the checkpoint covers',
    )
  }
  for (const b of proveKey(content.root, model)) c.add(b)
  const entry = content.root.paths.has(model)
    ? verifyProof(cp.stateRoot, model, content.root.blocks)
    : undefined
  const value = entry?.ok ? entry.value.value : null
  for (const m of value?.manifests ?? []) {
    const rec = fold.get(m)
    if (rec) c.record(rec)
    for (const r of fold.records())
      if (r.record.kind === 'attestation' && r.record.body.subject.equals(m)) c.record(r)
  }
  if (value?.decision) collectDecision(fold, c, value.decision)
  // The header.
  const header = encode({
    certificate: 1,
    federation: state.federation,
    model,
    genesis: state.genesis.cid,
    checkpoint: cp.cid,
  })
  const headerBlock = { cid: cidOfBlock(header), bytes: header }
  const blocks = [...c.blocks.values()].sort((a, b) => compareCids(a.cid, b.cid))
  const size =
    CarBufferWriter.headerLength({ roots: [headerBlock.cid] }) +
    CarBufferWriter.blockLength(headerBlock) +
    blocks.reduce((n, b) => n + CarBufferWriter.blockLength(b), 0)
  const writer = CarBufferWriter.createWriter(new ArrayBuffer(size), { roots: [headerBlock.cid] })
  writer.write(headerBlock)
  for (const b of blocks) writer.write(b)
  return writer.close({ resize: true })
}
