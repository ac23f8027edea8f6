/**
 * Helpers of the certificate tests (SPEC.md §12): take a certificate apart and write it back as a
 * canonical file (header first, the other blocks by CID bytes, none twice), so that a test breaks
 * exactly the one rule it is about; and forge a checkpoint over a state root of the test's making,
 * signed by the federation's own stewards.
 */
import type { CID } from 'multiformats/cid'
import { expect } from 'vitest'
import { fastEd25519 } from '../../node/ed25519-native.js'
import {
  type Block,
  type CertificateVerdict,
  cidKey,
  cidOfBlock,
  compareCids,
  decodeStrict,
  encode,
  signRecord,
  type Verified,
  type VerifyCertificateOptions,
  verifyCertificate,
} from '../../protocol/index.js'
import { type Fixture, readCar, writeCar } from './federation.js'

export interface CertificateParts {
  readonly header: Record<string, unknown>
  /** Every block but the header, as written. */
  readonly blocks: Block[]
}

export function partsOf(car: Uint8Array): CertificateParts {
  const { roots, blocks } = readCar(car)
  const root = roots[0]!
  const headerBytes = blocks.find((b) => b.cid.equals(root))!.bytes
  const header = decodeStrict(headerBytes)
  if (!header.ok) throw new Error('unreadable header')
  return {
    header: header.value as Record<string, unknown>,
    blocks: blocks.filter((b) => !b.cid.equals(root)),
  }
}

/** A canonical file of `header` (encoded as given) and `blocks` (sorted, each once). */
export function canonicalCar(header: Record<string, unknown>, blocks: readonly Block[]): Uint8Array {
  const bytes = encode(header)
  const headerBlock = { cid: cidOfBlock(bytes), bytes }
  const unique = new Map(blocks.map((b) => [cidKey(b.cid), b]))
  const sorted = [...unique.values()].sort((a, b) => compareCids(a.cid, b.cid))
  return writeCar([headerBlock.cid], [headerBlock, ...sorted])
}

export interface Surgery {
  readonly remove?: readonly CID[]
  readonly add?: readonly Block[]
  readonly header?: Record<string, unknown>
  /** Header keys to drop. */
  readonly dropKeys?: readonly string[]
}

/** The certificate with blocks removed or added and header fields changed, written canonically. */
export function operate(car: Uint8Array, surgery: Surgery): Uint8Array {
  const parts = partsOf(car)
  const removed = new Set((surgery.remove ?? []).map(cidKey))
  for (const key of removed)
    if (!parts.blocks.some((b) => cidKey(b.cid) === key))
      throw new Error('operate: a block to remove is not there')
  const header: Record<string, unknown> = { ...parts.header, ...surgery.header }
  for (const key of surgery.dropKeys ?? []) delete header[key]
  const kept = parts.blocks.filter((b) => !removed.has(cidKey(b.cid)))
  return canonicalCar(header, [...kept, ...(surgery.add ?? [])])
}

export function blockOf(v: { cid: CID; bytes: Uint8Array }): Block {
  return { cid: v.cid, bytes: v.bytes }
}

export function codes(v: CertificateVerdict): string[] {
  return v.problems.map((p) => p.code)
}

/** The distinct codes of a verdict, sorted: what the vectors compare. */
export function codeSet(v: CertificateVerdict): string[] {
  return [...new Set(codes(v))].sort()
}

export function expectRefused(v: CertificateVerdict, ...expected: string[]): void {
  expect(v.ok).toBe(false)
  for (const code of expected) expect(codes(v)).toContain(code)
}

export function verifyWith(
  fx: Fixture,
  car: Uint8Array,
  extra: Partial<VerifyCertificateOptions> = {},
  federation?: CID,
): CertificateVerdict {
  return verifyCertificate(federation ?? fx.sim.federation, car, {
    now: fx.now,
    ed25519: fastEd25519,
    ...extra,
  })
}

/** A state root of the test's making: its root CID and every block of it. */
export interface ForgedRoot {
  readonly root: CID
  readonly blocks: readonly Block[]
}

/**
 * The fixture's certificate with its checkpoint replaced by one over `forged`, signed by the
 * fixture's checkpoint signers (t stewards of the head state) at a later `at` so the copies are
 * new records; the honest copies and proof blocks go.
 */
export function withForgedRoot(fx: Fixture, car: Uint8Array, forged: ForgedRoot): Uint8Array {
  const honest = fx.checkpoints
  const body = { ...honest[0]!.record.body, stateRoot: forged.root }
  const copies = honest.map((c) =>
    signRecord(
      { kind: 'checkpoint', federation: fx.sim.federation, at: c.record.at + 7, body },
      fx.sim.signer(fx.sim.nameOf(c.record.author)!),
      { finalized: c.finalized! },
    ),
  )
  const honestRoot = honest[0]!.record.body.stateRoot
  const parts = partsOf(car)
  const proofBlocks = parts.blocks.filter((b) => isStateRootBlock(b, honestRoot))
  const smallest = [...copies].sort((a, b) => compareCids(a.cid, b.cid))[0]!
  return operate(car, {
    remove: [...honest.map((c) => c.cid), ...proofBlocks.map((b) => b.cid)],
    add: [...copies.map(blockOf), ...forged.blocks],
    header: { checkpoint: smallest.cid },
  })
}

/** The root block, or a map node (an array whose items are [text, …] pairs). */
function isStateRootBlock(block: Block, root: CID): boolean {
  if (block.cid.equals(root)) return true
  const node = decodeStrict(block.bytes, {
    maxBytes: 1 << 20,
    maxDepth: 8,
    maxStringBytes: 1024,
    maxBytesLength: 128,
    maxCollectionItems: 4096,
  })
  if (!node.ok || !Array.isArray(node.value) || node.value.length !== 2) return false
  const items = node.value[1]
  return (
    Array.isArray(items) && items.length > 0 && Array.isArray(items[0]) && typeof items[0][0] === 'string'
  )
}

/** The copies of the newest counted checkpoint in a fixture, smallest CID first. */
export function copiesOf(fx: Fixture): Verified<'checkpoint'>[] {
  return [...fx.checkpoints].sort((a, b) => compareCids(a.cid, b.cid))
}
