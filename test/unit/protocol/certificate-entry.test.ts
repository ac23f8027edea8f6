/**
 * The proven entry (SPEC.md §11.1, §12.2 steps 7–8): state roots forged by the federation's own
 * stewards — t of them sign a checkpoint over a root of the test's making — are refused when the
 * root breaks a shape rule (`cert-proof`), and a resolved manifest that is suspended or tainted is
 * refused with its own code. Among them the disagreements a second implementation found: a
 * `count` that contradicts the nodes (2 said, 1 present; 129 said, 65 present), a branch naming
 * the wrong first key for a child, a root block carrying its top node inline.
 */
import type { CID } from 'multiformats/cid'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  type Block,
  type CertificateVerdict,
  cidOfBlock,
  encode,
  encodeValue,
  type MapValue,
  verifyProof,
} from '../../../protocol/index.js'
import {
  codeSet,
  codes,
  type ForgedRoot,
  operate,
  partsOf,
  verifyWith,
  withForgedRoot,
} from '../../support/certificate-surgery.js'
import { buildFixture, type Fixture, MODEL } from '../../support/federation.js'

let fx: Fixture
/** llama@1.0.0's honest entry. */
let llama: MapValue
let head: CID
let height: number

beforeAll(() => {
  fx = buildFixture()
  const cp = fx.sim.fold.state().checkpoint!
  const proof = verifyProof(cp.stateRoot, MODEL, partsOf(fx.car).blocks)
  if (!proof.ok || !proof.value.value) throw new Error('no honest entry')
  llama = proof.value.value
  head = cp.head
  height = cp.height
})

function block(value: unknown): Block {
  const bytes = encode(value)
  return { cid: cidOfBlock(bytes), bytes }
}

/** A filler entry that sorts before llama: a version proposed, no manifest. */
const PROPOSED: MapValue = { status: 'proposed', decision: null, manifests: [] }
const fillerKeys = (n: number) => Array.from({ length: n }, (_, i) => `a${String(i).padStart(3, '0')}@1.0.0`)

/**
 * Leaves of 64 over `entries` (sorted by the caller), a branch over them if more than one; the
 * blocks on llama's path.
 */
function forgedMap(
  entries: readonly (readonly [string, MapValue])[],
  options: { count?: number; firstKeys?: readonly string[]; key?: string } = {},
): ForgedRoot {
  const leaves: { first: string; block: Block; onPath: boolean }[] = []
  for (let i = 0; i < entries.length; i += 64) {
    const chunk = entries.slice(i, i + 64)
    const leaf = block([0, chunk.map(([k, v]) => [k, encodeValue(v)])])
    leaves.push({
      first: chunk[0]![0],
      block: leaf,
      onPath: chunk.some(([k]) => k === (options.key ?? MODEL)),
    })
  }
  const top =
    leaves.length === 1
      ? leaves[0]!.block
      : block([1, leaves.map((leaf, i) => [options.firstKeys?.[i] ?? leaf.first, leaf.block.cid])])
  const root = block({ head, height, count: options.count ?? entries.length, map: top.cid })
  // A certificate holds the path to llama only (another leaf would be a block it does not list).
  const path = leaves.length > 1 ? leaves.filter((l) => l.onPath).map((l) => l.block) : []
  return { root: root.cid, blocks: [root, top, ...path] }
}

/** Refused by a shape rule of the proof, not by anything else about the file. */
function expectShapeRefused(v: CertificateVerdict): void {
  expect(codeSet(v)).toEqual(['cert-proof'])
  expect(v.problems[0]!.message).toMatch(/proof-shape/)
}

const verifyForged = (forged: ForgedRoot) => verifyWith(fx, withForgedRoot(fx, fx.car, forged))

describe('a control: an honest-shaped root the stewards signed verifies', () => {
  it('one entry', () => {
    expect(verifyForged(forgedMap([[MODEL, llama]])).problems).toEqual([])
  })

  it('65 entries over two leaves', () => {
    const entries = [...fillerKeys(64).map((k) => [k, PROPOSED] as const), [MODEL, llama] as const]
    expect(verifyForged(forgedMap(entries)).problems).toEqual([])
  })
})

describe('state-root shapes (proof-shape) → cert-proof', () => {
  it('count 2, one entry present', () => {
    const v = verifyForged(forgedMap([[MODEL, llama]], { count: 2 }))
    expectShapeRefused(v)
    expect(v.ok).toBe(false)
  })

  it('count 129, 65 entries present', () => {
    const entries = [...fillerKeys(64).map((k) => [k, PROPOSED] as const), [MODEL, llama] as const]
    const v = verifyForged(forgedMap(entries, { count: 129 }))
    expectShapeRefused(v)
    expect(v.ok).toBe(false)
  })

  it('a branch naming the wrong first key for the child the path enters', () => {
    const entries = [...fillerKeys(64).map((k) => [k, PROPOSED] as const), [MODEL, llama] as const]
    const v = verifyForged(forgedMap(entries, { firstKeys: [fillerKeys(1)[0]!, 'kz@1.0.0'] }))
    expectShapeRefused(v)
    expect(v.ok).toBe(false)
  })

  it('a root block carrying its top map node inline instead of a link', () => {
    const inline = block({ head, height, count: 1, map: [0, [[MODEL, encodeValue(llama)]]] })
    const v = verifyForged({ root: inline.cid, blocks: [inline] })
    expectShapeRefused(v)
    expect(v.ok).toBe(false)
  })
})

describe('the resolved manifest’s news', () => {
  const withNews = (news: Partial<MapValue['manifests'][number]>): MapValue => ({
    ...llama,
    manifests: llama.manifests.map((m) => ({ ...m, ...news })),
  })

  it('suspended → cert-suspended', () => {
    const v = verifyForged(forgedMap([[MODEL, withNews({ suspension: { since: 0, until: fx.now + 1000 } })]]))
    expect(codeSet(v)).toEqual(['cert-suspended'])
    expect(v.status).toBe('ratified')
    expect(v.ok).toBe(false)
  })

  it('tainted → cert-tainted', () => {
    const taint = { ancestor: fx.other.manifest.cid, reason: 'base-revoked' as const }
    const v = verifyForged(forgedMap([[MODEL, withNews({ taint })]]))
    expect(codeSet(v)).toEqual(['cert-tainted'])
    expect(v.ok).toBe(false)
  })

  it('neither is an integrity problem: the mark still moves', () => {
    const v = verifyForged(forgedMap([[MODEL, withNews({ suspension: { since: 0, until: 1 } })]]))
    expect(v.trusted?.height).toBe(height)
  })
})

describe('the proven entry is for the header’s name@version', () => {
  it('a forged root, signed by t stewards, proving llama’s manifest under other@1.0.0 → cert-wrong-model', () => {
    const car = withForgedRoot(fx, fx.car, forgedMap([['other@1.0.0', llama]], { key: 'other@1.0.0' }))
    const v = verifyWith(fx, operate(car, { header: { model: 'other@1.0.0' } }))
    expect(codeSet(v)).toEqual(['cert-wrong-model'])
    expect(v.status).toBe('ratified')
  })

  it('a forged root, signed by t stewards, with llama’s entry under another key → cert-not-ratified', () => {
    const v = verifyForged(forgedMap([['other@1.0.0', llama]]))
    expect(codes(v)).toContain('cert-not-ratified')
    expect(v.ok).toBe(false)
  })
})
