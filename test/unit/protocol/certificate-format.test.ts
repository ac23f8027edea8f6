/**
 * The certificate file (SPEC.md §12.1, §12.2 step 1; docs/adr/0020): the header of each version
 * with exactly its keys, the canonical order and block set, the form of every block's CID, and
 * which problems stop verification. Each test breaks one rule of a canonical file and names the
 * code; the file is otherwise rewritten canonically so that nothing else is wrong with it.
 */
import { sha256, sha512 } from '@noble/hashes/sha2.js'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  buildCertificate,
  buildList,
  cidOfBlock,
  compareCids,
  createFold,
  encode,
  exportCertificate,
  rawCidOfDigest,
  utf8,
} from '../../../protocol/index.js'
import {
  blockOf,
  canonicalCar,
  codeSet,
  codes,
  copiesOf,
  expectRefused,
  operate,
  partsOf,
  verifyWith,
} from '../../support/certificate-surgery.js'
import {
  buildFixture,
  type Fixture,
  MEMBERS,
  MODEL,
  readCar,
  simulator,
  writeCar,
} from '../../support/federation.js'

let fx: Fixture
let full: Uint8Array
const verify = (car: Uint8Array, extra = {}, federation?: CID) => verifyWith(fx, car, extra, federation)

beforeAll(() => {
  fx = buildFixture()
  full = buildCertificate(fx.sim.fold, MODEL, { mode: 'full' })
})

describe('the header, version 2 (what the exporter writes)', () => {
  it('has exactly certificate, federation, model, genesis, checkpoint, mode, since', () => {
    const { header } = partsOf(fx.car)
    expect(Object.keys(header).sort()).toEqual(
      ['certificate', 'checkpoint', 'federation', 'genesis', 'mode', 'model', 'since'].sort(),
    )
    expect(header.certificate).toBe(2)
    expect(header.mode).toBe('compact')
    expect(header.since).toBeNull()
    expect((header.checkpoint as CID).equals(copiesOf(fx)[0]!.cid)).toBe(true)
    expect(partsOf(full).header.mode).toBe('full')
  })

  const refusals: [string, Parameters<typeof operate>[1]][] = [
    ['an extra key', { header: { note: 'hello' } }],
    ['no checkpoint', { dropKeys: ['checkpoint'] }],
    ['no mode', { dropKeys: ['mode'] }],
    ['no since', { dropKeys: ['since'] }],
    ['no genesis', { dropKeys: ['genesis'] }],
    ['a model that is not a text', { header: { model: 7 } }],
    ['a genesis that is not a CID', { header: { genesis: 'bafy' } }],
    ['a checkpoint that is not a CID', { header: { checkpoint: 1 } }],
    ['a mode that is neither full nor compact', { header: { mode: 'partial' } }],
    ['a since that is neither null nor a CID', { header: { since: 'trusted' } }],
    ['a federation that is not a CID', { header: { federation: 'x' } }],
  ]
  for (const [what, surgery] of refusals) {
    it(`${what} → cert-header, and nothing else is checked`, () => {
      expect(codes(verify(operate(fx.car, surgery)))).toEqual(['cert-header'])
    })
  }

  it('another federation named in the header → cert-header', () => {
    const other = simulator(MEMBERS, 'another federation').federation
    expect(codes(verify(operate(fx.car, { header: { federation: other } })))).toEqual(['cert-header'])
  })

  it('an unknown certificate version → cert-header, telling to upgrade', () => {
    const v = verify(operate(fx.car, { header: { certificate: 3 } }))
    expect(codes(v)).toEqual(['cert-header'])
    expect(v.problems[0]!.message).toMatch(/upgrade/)
  })

  it('a checkpoint that is not the smallest steward-signed copy → cert-header', () => {
    const [, larger] = copiesOf(fx)
    expect(codes(verify(operate(fx.car, { header: { checkpoint: larger!.cid } })))).toEqual(['cert-header'])
  })

  it('a header that is not strict DAG-CBOR, or not a map → cert-header', () => {
    const { blocks } = partsOf(fx.car)
    const list = encode([1, 2])
    const notMap = { cid: cidOfBlock(list), bytes: list }
    expect(codes(verify(writeCar([notMap.cid], [notMap, ...blocks])))).toEqual(['cert-header'])
  })
})

describe('the header, version 1 (full, from the genesis; still read)', () => {
  const v1 = (car: Uint8Array, extra: Record<string, unknown> = {}) => {
    const { header, blocks } = partsOf(car)
    const { mode: _m, since: _s, ...rest } = header
    return canonicalCar({ ...rest, certificate: 1, ...extra }, blocks)
  }

  it('a full certificate under a version 1 header verifies, as full', () => {
    const v = verify(v1(full))
    expect(v.problems).toEqual([])
    expect(v.ok).toBe(true)
    expect(v.mode).toBe('full')
  })

  it('a compact certificate under a version 1 header is refused (its steps lack their votes)', () => {
    expectRefused(verify(v1(fx.car)), 'cert-block-missing')
  })

  it('a version 1 header with the keys of version 2 → cert-header', () => {
    const { header, blocks } = partsOf(full)
    expect(codes(verify(canonicalCar({ ...header, certificate: 1 }, blocks)))).toEqual(['cert-header'])
    expect(codes(verify(v1(full, { mode: 'full' })))).toEqual(['cert-header'])
  })
})

describe('canonical files', () => {
  it('two nodes holding the same records write byte-identical files, whatever the order they got them in', () => {
    const again = createFold(fx.sim.genesis)
    const records = [...fx.sim.fold.records()].slice(1).reverse()
    for (const r of records) again.add(r)
    for (const mode of ['compact', 'full'] as const) {
      const mine = buildCertificate(fx.sim.fold, MODEL, { mode })
      expect(buildCertificate(again, MODEL, { mode })).toEqual(mine)
      expect(buildCertificate(fx.sim.fold, MODEL, { mode })).toEqual(mine)
    }
  })

  it('an export says what it made', () => {
    const made = exportCertificate(fx.sim.fold, MODEL)
    expect(made.mode).toBe('compact')
    expect(made.since).toBeNull()
    expect(made.sinceRefused).toBeUndefined()
    expect(made.bytes).toEqual(fx.car)
  })

  it('an export over the cap throws, naming --since, with code cert-too-large', () => {
    const over = () => exportCertificate(fx.sim.fold, MODEL, { maxBytes: fx.car.length - 1 })
    expect(over).toThrow(/--since/)
    expect(over).toThrow(expect.objectContaining({ code: 'cert-too-large' }))
    expect(exportCertificate(fx.sim.fold, MODEL, { maxBytes: fx.car.length }).bytes).toEqual(fx.car)
  })

  it('the header after another block → cert-not-canonical', () => {
    const { roots, blocks } = readCar(fx.car)
    const v = verify(writeCar(roots, [...blocks.slice(1, 3), blocks[0]!, ...blocks.slice(3)]))
    expect(codeSet(v)).toEqual(['cert-not-canonical'])
  })

  it('two blocks swapped → cert-not-canonical', () => {
    const { roots, blocks } = readCar(fx.car)
    const swapped = [blocks[0]!, blocks[2]!, blocks[1]!, ...blocks.slice(3)]
    expect(codeSet(verify(writeCar(roots, swapped)))).toEqual(['cert-not-canonical'])
  })

  it('a block twice → cert-not-canonical, once', () => {
    const { roots, blocks } = readCar(fx.car)
    const twice = [...blocks.slice(0, 4), blocks[3]!, ...blocks.slice(4)]
    expect(codes(verify(writeCar(roots, twice)))).toEqual(['cert-not-canonical'])
  })

  it('a stray list block, a raw block, a valid record of the federation that proves nothing → cert-not-canonical each', () => {
    const stray = buildList([fx.other.proposal.cid]).blocks[0]!
    const raw = utf8.encode('weights')
    const rawBlock = { cid: rawCidOfDigest(sha256(raw)), bytes: raw }
    const other = [blockOf(fx.other.manifest), blockOf(fx.other.proposal)]
    for (const extra of [[stray], [rawBlock], [blockOf(fx.other.manifest)], other]) {
      const v = verify(operate(fx.car, { add: extra }))
      expect(codes(v)).toEqual(extra.map(() => 'cert-not-canonical'))
      expect(v.status).toBe('ratified')
    }
  })

  it('an unrelated record waiting for a block the file lacks fails it → cert-block-missing (once)', () => {
    const v = verify(operate(fx.car, { add: [blockOf(fx.twins[0].votes[0]!)] }))
    expect(codes(v)).toEqual(['cert-block-missing'])
  })

  it('a compact file holding a chain step’s votes or list blocks → cert-not-canonical', () => {
    const step = fx.chain[1]!
    const lists = buildList(step.seals[0]!.lists!.votes).blocks
    expect(codeSet(verify(operate(fx.car, { add: [...lists] })))).toEqual(['cert-not-canonical'])
    expect(codeSet(verify(operate(fx.car, { add: [blockOf(step.votes[0]!)] })))).toEqual([
      'cert-not-canonical',
    ])
  })

  it('a full file without a chain step’s seal lists → cert-block-missing', () => {
    const list = fx.chain[1]!.seals[0]!.record.body.votes.root
    expectRefused(verify(operate(full, { remove: [list] })), 'cert-block-missing')
  })
})

describe('blocks: CIDv1, sha2-256, dag-cbor or raw, matching their bytes', () => {
  const withBlock = (cid: CID, bytes: Uint8Array) => {
    const { roots, blocks } = readCar(fx.car)
    const all = [...blocks.slice(1), { cid, bytes }].sort((a, b) => compareCids(a.cid, b.cid))
    return verify(writeCar(roots, [blocks[0]!, ...all]))
  }
  const bytes = encode({ any: 'map' })

  it('a CIDv0 block → cert-block-invalid', () => {
    const v0 = CID.createV0(Digest.create(0x12, sha256(encode([1]))) as never)
    expect(codes(withBlock(v0 as unknown as CID, encode([1])))).toContain('cert-block-invalid')
  })

  it('a sha2-512 block → cert-block-invalid', () => {
    const cid = CID.createV1(0x71, Digest.create(0x13, sha512(bytes)))
    expect(codes(withBlock(cid, bytes))).toContain('cert-block-invalid')
  })

  it('a dag-pb block → cert-block-invalid', () => {
    const cid = CID.createV1(0x70, Digest.create(0x12, sha256(bytes)))
    expect(codes(withBlock(cid, bytes))).toContain('cert-block-invalid')
  })

  it('a raw block whose bytes do not match its CID → cert-block-invalid', () => {
    const cid = rawCidOfDigest(sha256(utf8.encode('x')))
    expect(codes(withBlock(cid, utf8.encode('y')))).toEqual(['cert-block-invalid'])
  })
})

describe('problems that stop verification', () => {
  it('cert-too-large, cert-car and cert-header come alone', () => {
    expect(codes(verify(fx.car, { maxBytes: 100 }))).toEqual(['cert-too-large'])
    expect(codes(verify(fx.car.subarray(0, 40)))).toEqual(['cert-car'])
    expect(codes(verify(operate(fx.car, { header: { extra: 1 } })))).toEqual(['cert-header'])
  })

  it('cert-genesis-mismatch stops too: nothing after it is checked', () => {
    const other = simulator(MEMBERS, 'another federation').federation
    const { roots, blocks } = readCar(operate(fx.car, { header: { federation: other } }))
    const v = verify(writeCar(roots, [...blocks].reverse()), {}, other)
    expect(codes(v)).toEqual(['cert-genesis-mismatch'])
    expect(v.status).toBe('unknown')
  })

  it('the header’s genesis missing or not a genesis → cert-header, before the order is judged', () => {
    const { roots, blocks } = readCar(operate(fx.car, { header: { genesis: fx.llama.manifest.cid } }))
    expect(codes(verify(writeCar(roots, [...blocks].reverse())))).toEqual(['cert-header'])
    expect(codes(verify(operate(fx.car, { remove: [fx.sim.genesis.cid] })))).toEqual(['cert-header'])
  })

  it('a CAR with no root, two roots or a root that is not the header → cert-header alone', () => {
    const { roots, blocks } = readCar(fx.car)
    const shuffled = [...blocks].reverse()
    for (const given of [[], [roots[0]!, fx.sim.genesis.cid], [fx.sim.genesis.cid]])
      expect(codes(verify(writeCar(given, shuffled)))).toEqual(['cert-header'])
  })

  it('problems found before a stop are kept: a bad block, then a bad header', () => {
    const { roots, blocks } = readCar(operate(fx.car, { header: { extra: 1 } }))
    const vote = fx.llama.votes[0]!
    const bad = blocks.map((b) =>
      b.cid.equals(vote.cid) ? { cid: b.cid, bytes: fx.llama.votes[1]!.bytes } : b,
    )
    expect(codes(verify(writeCar(roots, bad)))).toEqual(['cert-block-invalid', 'cert-header'])
  })

  it('cert-wrong-model no longer stops: the rest is checked beside it', () => {
    const v = verify(fx.car, { model: 'other@1.0.0' })
    expect(codes(v)).toEqual(['cert-wrong-model'])
    expect(v.status).toBe('ratified')
  })

  it('problems hold one entry per occurrence', () => {
    const v = verify(operate(fx.car, { add: [blockOf(fx.other.manifest), blockOf(fx.other.proposal)] }))
    expect(codes(v)).toEqual(['cert-not-canonical', 'cert-not-canonical'])
    const twice = verify(
      operate(fx.car, { add: [blockOf(fx.twins[0].votes[0]!), blockOf(fx.twins[1].votes[0]!)] }),
    )
    expect(codes(twice)).toEqual(['cert-block-missing', 'cert-block-missing'])
  })
})
