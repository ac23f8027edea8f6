/**
 * The state-root entry value (SPEC.md §11.1): exactly `{status, decision, manifests}`, each
 * manifest exactly `{cid, ratified, revoked, suspension, taint}`, sorted by CID, and a status and
 * decision that agree with the manifests. A value off this layout is `proof-shape`; the §9 shapes
 * of suspension and taint are accepted now, so a later version can fill them.
 */
import { describe, expect, it } from 'vitest'
import {
  type Block,
  buildStateRoot,
  CID,
  cidOfBlock,
  compareCids,
  encode,
  encodeValue,
  type ManifestEntry,
  type MapValue,
  plainManifestEntry,
  proveKey,
  RAW_CODE,
  resolvedManifest,
  soleManifest,
  verifyProof,
} from '../../../protocol/index.js'

const HEAD = cidOfBlock(encode({ head: 1 }))
const [A, B, C] = [1, 2, 3].map((i) => cidOfBlock(encode({ manifest: i }))).sort(compareCids) as [
  CID,
  CID,
  CID,
]
const DECISION = cidOfBlock(encode({ decision: 1 }))
const KEY = 'llama@1.0.0'

const blockOf = (value: unknown): Block => {
  const bytes = encode(value)
  return { cid: cidOfBlock(bytes), bytes }
}

type Encoded = Record<string, unknown>
const entry = (cid: CID, ratified: boolean, revoked: boolean, more: Encoded = {}): Encoded => ({
  cid,
  ratified,
  revoked,
  suspension: null,
  taint: null,
  ...more,
})
const ratifiedValue = (more: Encoded = {}, manifest: Encoded = {}): Encoded => ({
  status: 'ratified',
  decision: DECISION,
  manifests: [entry(A, true, true), entry(B, true, false, manifest)],
  ...more,
})

/** Verifies `key` in a one-leaf map holding `value` under KEY (and `others` beside it). */
function verifyValue(value: unknown, others: [string, unknown][] = [], key = KEY) {
  const items = ([[KEY, value], ...others] as [string, unknown][]).sort(([x], [y]) => (x < y ? -1 : 1))
  const leaf = blockOf([0, items])
  const root = blockOf({ head: HEAD, height: 1, count: items.length, map: leaf.cid })
  return verifyProof(root.cid, key, [root, leaf])
}

function refusedValue(value: unknown, message?: RegExp): void {
  const r = verifyValue(value)
  expect(
    r.ok,
    JSON.stringify(value, (_, v) => (CID.asCID(v) ? String(v) : v)),
  ).toBe(false)
  if (r.ok) return
  expect(r.code).toBe('proof-shape')
  if (message) expect(r.message).toMatch(message)
}

describe('the entry layout', () => {
  it('the honest layout verifies, manifests included', () => {
    const r = verifyValue(ratifiedValue())
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.value.value).toEqual({
      status: 'ratified',
      decision: DECISION,
      manifests: [plainManifestEntry(A, true, true), plainManifestEntry(B, true, false)],
    })
  })

  it('suspension {since, until} and taint {ancestor, reason} are read', () => {
    for (const reason of ['base-revoked', 'base-suspended']) {
      const r = verifyValue(
        ratifiedValue({}, { suspension: { since: 5, until: 9 }, taint: { ancestor: C, reason } }),
      )
      expect(r.ok).toBe(true)
      if (!r.ok) return
      const resolved = resolvedManifest(r.value.value!)
      expect(resolved?.suspension).toEqual({ since: 5, until: 9 })
      expect(resolved?.taint?.ancestor.equals(C)).toBe(true)
      expect(resolved?.taint?.reason).toBe(reason)
    }
  })

  it('exact keys: an extra or a missing key is refused, in the value and in a manifest', () => {
    refusedValue(ratifiedValue({ note: 'x' }))
    const { decision: _, ...withoutDecision } = ratifiedValue()
    refusedValue(withoutDecision)
    refusedValue(ratifiedValue({}, { extra: 1 }))
    const noTaint = entry(B, true, false)
    delete noTaint.taint
    refusedValue(ratifiedValue({ manifests: [entry(A, true, true), noTaint] }))
    // The layout before this version: manifests as bare CIDs.
    refusedValue({ status: 'ratified', decision: DECISION, manifests: [B] })
  })

  it('types: status, decision, flags, CIDs', () => {
    refusedValue(ratifiedValue({ status: 'approved' }))
    refusedValue(ratifiedValue({ decision: DECISION.toString() }))
    refusedValue(ratifiedValue({ decision: CID.createV1(RAW_CODE, DECISION.multihash) }))
    refusedValue(ratifiedValue({ manifests: 'none' }))
    refusedValue(ratifiedValue({}, { ratified: 1 }))
    refusedValue(ratifiedValue({}, { revoked: null }))
    refusedValue(ratifiedValue({}, { cid: B.toString() }))
    refusedValue(ratifiedValue({}, { cid: CID.createV1(RAW_CODE, B.multihash) }))
  })

  it('suspension and taint: null or their exact shapes', () => {
    for (const suspension of [
      { since: 5 },
      { since: 5, until: 9, why: 'x' },
      { since: 9, until: 5 },
      { since: -1, until: 5 },
      { since: '5', until: 9 },
      5,
      [5, 9],
    ])
      refusedValue(ratifiedValue({}, { suspension }))
    // A float is not even strict DAG-CBOR here: the block itself is refused.
    expect(verifyValue(ratifiedValue({}, { suspension: { since: 1.5, until: 5 } })).ok).toBe(false)
    for (const taint of [
      { ancestor: C },
      { ancestor: C, reason: 'base-tainted' },
      { ancestor: 'x', reason: 'base-revoked' },
      { ancestor: C, reason: 'base-revoked', depth: 1 },
      C,
    ])
      refusedValue(ratifiedValue({}, { taint }))
  })

  it('manifests sorted by CID, no CID twice', () => {
    refusedValue(ratifiedValue({ manifests: [entry(B, true, false), entry(A, true, true)] }), /sorted/)
    refusedValue(ratifiedValue({ manifests: [entry(B, true, false), entry(B, true, false)] }), /sorted/)
  })

  it('the status agrees with the manifests, the decision with the status', () => {
    const live = entry(A, true, false)
    const live2 = entry(B, true, false)
    const gone = entry(C, true, true)
    const seen = entry(C, false, false)
    const value = (status: string, decision: CID | null, manifests: Encoded[]) => ({
      status,
      decision,
      manifests,
    })
    // Agreeing.
    for (const v of [
      value('ratified', DECISION, [live, gone]),
      value('conflicted', null, [live, live2]),
      value('revoked', DECISION, [gone]),
      value('proposed', null, [seen]),
      value('proposed', null, []),
    ])
      expect(verifyValue(v).ok).toBe(true)
    // Disagreeing.
    for (const v of [
      value('ratified', DECISION, [live, live2]),
      value('ratified', DECISION, [gone]),
      value('conflicted', null, [live, gone]),
      value('revoked', DECISION, [live, gone]),
      value('revoked', DECISION, [seen]),
      value('proposed', null, [live]),
    ])
      refusedValue(v, /disagrees/)
    for (const v of [
      value('ratified', null, [live]),
      value('revoked', null, [gone]),
      value('conflicted', DECISION, [live, live2]),
      value('proposed', DECISION, [seen]),
    ])
      refusedValue(v, /decision/)
  })

  it('only the value under the key asked is read', () => {
    const r = verifyValue(ratifiedValue(), [['zzz@1.0.0', { malformed: true }]])
    expect(r.ok).toBe(true)
    const other = verifyValue(ratifiedValue(), [['zzz@1.0.0', { malformed: true }]], 'zzz@1.0.0')
    expect(other.ok).toBe(false)
  })
})

describe('building and reading entries', () => {
  const value = (status: MapValue['status'], decision: CID | null, manifests: ManifestEntry[]): MapValue => ({
    status,
    decision,
    manifests,
  })

  it('the builder sorts manifests by CID and refuses one CID twice', () => {
    const given = value('ratified', DECISION, [
      plainManifestEntry(B, true, false),
      plainManifestEntry(A, true, true),
    ])
    const built = buildStateRoot({ head: HEAD, height: 1, entries: [{ key: KEY, value: given }] })
    const r = verifyProof(built.root, KEY, proveKey(built, KEY))
    expect(r.ok && r.value.value?.manifests.map((m) => m.cid.toString())).toEqual([
      A.toString(),
      B.toString(),
    ])
    expect(() =>
      encodeValue(
        value('ratified', DECISION, [plainManifestEntry(B, true, false), plainManifestEntry(B, true, false)]),
      ),
    ).toThrow(TypeError)
  })

  it('resolvedManifest is the one live manifest of a ratified entry; soleManifest the one a status speaks of', () => {
    const ratified = value('ratified', DECISION, [
      plainManifestEntry(A, true, true),
      plainManifestEntry(B, true, false),
    ])
    expect(resolvedManifest(ratified)?.cid.equals(B)).toBe(true)
    expect(soleManifest(ratified)?.equals(B)).toBe(true)
    const conflicted = value('conflicted', null, [
      plainManifestEntry(A, true, false),
      plainManifestEntry(B, true, false),
    ])
    expect(resolvedManifest(conflicted)).toBeUndefined()
    expect(soleManifest(conflicted)).toBeUndefined()
    const revoked = value('revoked', DECISION, [plainManifestEntry(A, true, true)])
    expect(resolvedManifest(revoked)).toBeUndefined()
    expect(soleManifest(revoked)?.equals(A)).toBe(true)
    const twiceRevoked = value('revoked', DECISION, [
      plainManifestEntry(A, true, true),
      plainManifestEntry(B, false, true),
    ])
    expect(soleManifest(twiceRevoked)).toBeUndefined()
  })
})
