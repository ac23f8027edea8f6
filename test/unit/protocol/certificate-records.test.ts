/**
 * The records of a certificate (SPEC.md §12.2 steps 3–4): every record in the file is decoded as
 * a record of this federation, and any §5 failure is `cert-record-invalid` — not ignored, as a
 * second implementation found it was for a correctly signed record with an extra body key. A
 * record of a later version is `cert-version-unsupported`; a checkpoint copy the fold finds
 * inapplicable for its head, labels or epoch is `cert-checkpoint-invalid`. Each added block is
 * one occurrence with one code.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import {
  type Block,
  buildList,
  type CheckpointBody,
  cidOfBlock,
  encode,
  type FinalizedEntry,
  signRecord,
} from '../../../protocol/index.js'
import { blockOf, codes, operate, verifyWith } from '../../support/certificate-surgery.js'
import { buildFixture, type Fixture, HOUR, MEMBERS, simulator } from '../../support/federation.js'

let fx: Fixture
beforeAll(() => {
  fx = buildFixture()
})

const verify = (car: Uint8Array) => verifyWith(fx, car)

function bytesBlock(value: unknown): Block {
  const bytes = encode(value)
  return { cid: cidOfBlock(bytes), bytes }
}

/** A vote of the ratification with `change` applied, signed by its author over its own signing bytes. */
function forgedVote(change: (record: Record<string, unknown>) => Record<string, unknown>): Block {
  const vote = fx.llama.votes[0]!
  const { sig: _sig, ...unsigned } = vote.record as unknown as Record<string, unknown>
  const record = change({ ...unsigned, at: vote.record.at + 1 })
  return bytesBlock(fx.sim.forge(record, fx.sim.nameOf(vote.record.author)!))
}

describe('every record passes §5 → else cert-record-invalid, once', () => {
  const cases: [string, () => Block][] = [
    [
      'a correctly signed vote with an extra body key (schema-unknown-field)',
      () => forgedVote((r) => ({ ...r, body: { ...(r.body as object), note: 'x' } })),
    ],
    ['a vote with a text v (schema-version)', () => forgedVote((r) => ({ ...r, v: '1' }))],
    [
      'a vote whose author is no did:key (did-prefix)',
      () => forgedVote((r) => ({ ...r, author: 'did:web:x' })),
    ],
    [
      'a flipped signature (sig-invalid)',
      () => {
        const vote = fx.llama.votes[1]!
        const sig = Uint8Array.from(vote.record.sig)
        sig[3]! ^= 1
        return bytesBlock({ ...vote.record, at: vote.record.at + 1, sig })
      },
    ],
    [
      'a valid vote of another federation (federation-mismatch)',
      () => {
        const other = simulator(MEMBERS, 'another federation')
        const p = other.proposal('s1', 10, {
          closesAt: 1200,
          action: { type: 'change-rules', rules: other.genesis.record.body.rules },
        })
        return blockOf(other.vote('s1', 20, { proposal: p.cid, choice: 'yes' }))
      },
    ],
    [
      'a map too large for a record (record-too-large)',
      () =>
        bytesBlock({
          v: 1,
          kind: 'vote',
          pad: Array.from({ length: 3000 }, (_, i) => `padding ${i}`.padEnd(24)),
        }),
    ],
    ['a map with a kind and nothing else (schema-missing-field)', () => bytesBlock({ kind: 'vote' })],
    [
      'a seal whose list does not hold its count (list-shape)',
      () => {
        const seal = fx.llama.seals[0]!
        const body = {
          ...seal.record.body,
          votes: { ...seal.record.body.votes, count: seal.lists!.votes.length + 1 },
        }
        return blockOf(
          signRecord(
            { kind: 'seal', federation: fx.sim.federation, at: seal.record.at + 1, body },
            fx.sim.signer(fx.sim.nameOf(seal.record.author)!),
            { lists: seal.lists! },
          ),
        )
      },
    ],
  ]
  for (const [what, make] of cases) {
    it(what, () => {
      const v = verify(operate(fx.car, { add: [make()] }))
      expect(codes(v)).toEqual(['cert-record-invalid'])
      expect(v.status).toBe('ratified')
    })
  }

  it('a map without a kind is no record: outside the set → cert-not-canonical', () => {
    const v = verify(operate(fx.car, { add: [bytesBlock({ hello: 'world' })] }))
    expect(codes(v)).toEqual(['cert-not-canonical'])
  })

  it('a counted vote replaced by a §5-invalid copy → cert-record-invalid and the seals wait for it', () => {
    const vote = fx.llama.votes[0]!
    const bad = forgedVote((r) => ({ ...r, body: { ...(r.body as object), note: 'x' } }))
    const v = verify(operate(fx.car, { remove: [vote.cid], add: [bad] }))
    expect(codes(v)).toContain('cert-record-invalid')
    expect(codes(v)).toContain('cert-block-missing')
    expect(codes(v)).toContain('cert-ratification-unproven')
  })
})

describe('a record of a later version → cert-version-unsupported', () => {
  it('a well-signed v 2 record of this federation', () => {
    const record = {
      v: 2,
      kind: 'delegation',
      federation: fx.sim.federation,
      author: fx.sim.did('s1'),
      at: fx.sim.base + 100,
      body: { to: fx.sim.did('v1') },
    }
    const v = verify(operate(fx.car, { add: [bytesBlock(fx.sim.forge(record, 's1'))] }))
    expect(codes(v)).toEqual(['cert-version-unsupported'])
    expect(v.problems[0]!.message).toMatch(/upgrade/)
  })
})

describe('checkpoint copies the fold finds inapplicable → cert-checkpoint-invalid', () => {
  const honest = () => fx.checkpoints[0]!
  /** A copy by s2 (a steward of the head state) of a checkpoint with `body` and `finalized`. */
  const copy = (body: CheckpointBody, finalized: readonly FinalizedEntry[], at = 0) =>
    signRecord(
      { kind: 'checkpoint', federation: fx.sim.federation, at: fx.sim.base + fx.signedAt + 50 + at, body },
      fx.sim.signer('s2'),
      { finalized },
    )

  it('a head its list does not reach by sealed decisions (checkpoint-head)', () => {
    const body = { ...honest().record.body, height: 2 }
    const v = verify(operate(fx.car, { add: [blockOf(copy(body, honest().finalized!))] }))
    expect(codes(v)).toEqual(['cert-checkpoint-invalid'])
    expect(v.problems[0]!.message).toMatch(/checkpoint-head/)
    expect(v.status).toBe('ratified')
  })

  it('a label that is no decided phase (checkpoint-label)', () => {
    const finalized = honest().finalized!.map(([cid]) => [cid, 'open'] as const)
    const list = buildList(finalized)
    const body = { ...honest().record.body, finalized: { root: list.root, count: list.count } }
    const v = verify(operate(fx.car, { add: [blockOf(copy(body, finalized)), ...list.blocks] }))
    expect(codes(v).filter((c) => c !== 'cert-not-canonical')).toEqual(['cert-checkpoint-invalid'])
    expect(v.problems.find((p) => p.code === 'cert-checkpoint-invalid')!.message).toMatch(/checkpoint-label/)
  })

  it('an epoch that is no multiple of checkpointIntervalMs (checkpoint-epoch)', () => {
    const body = { ...honest().record.body, epoch: honest().record.body.epoch + 1 }
    const v = verify(operate(fx.car, { add: [blockOf(copy(body, honest().finalized!))] }))
    expect(codes(v)).toEqual(['cert-checkpoint-invalid'])
    expect(v.problems[0]!.message).toMatch(/checkpoint-epoch/)
  })

  it('a list naming proposals that close after the epoch (checkpoint-epoch)', () => {
    const body = { ...honest().record.body, epoch: honest().record.body.epoch - HOUR }
    const v = verify(operate(fx.car, { add: [blockOf(copy(body, honest().finalized!))] }))
    expect(codes(v)).toEqual(['cert-checkpoint-invalid'])
    expect(v.problems[0]!.message).toMatch(/checkpoint-epoch/)
  })

  it('the only copies such → cert-checkpoint-invalid and cert-checkpoint-unsigned', () => {
    const body = { ...honest().record.body, epoch: honest().record.body.epoch + 1 }
    const forged = [copy(body, honest().finalized!), copy(body, honest().finalized!, 1)]
    const car = operate(fx.car, { remove: fx.checkpoints.map((c) => c.cid), add: forged.map(blockOf) })
    const v = verify(car)
    expect([...new Set(codes(v))].sort()).toEqual(['cert-checkpoint-invalid', 'cert-checkpoint-unsigned'])
  })
})
