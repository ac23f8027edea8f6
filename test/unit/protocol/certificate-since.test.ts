/**
 * `--since` certificates and the trusted head (SPEC.md §12.1–§12.3; docs/adr/0021). A verifier
 * keeps the head of the checkpoint it last accepted with that head's state, as TUF keeps its
 * trusted root; a certificate since that head holds only the chain after it, and verifies only
 * from it. The exporter writes one only when it verifies from that head, else it starts at the
 * genesis and says why.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { fastEd25519 } from '../../../node/ed25519-native.js'
import {
  buildCertificate,
  type CertificateVerdict,
  decodeTrustedHead,
  encode,
  encodeTrustedHead,
  exportCertificate,
  type TrustedHead,
  verifyCertificate,
} from '../../../protocol/index.js'
import { codes, operate } from '../../support/certificate-surgery.js'
import {
  buildFixture,
  type Decision,
  decide,
  type Fixture,
  HOUR,
  hasBlock,
  MODEL,
  member,
} from '../../support/federation.js'
import { DEFAULT_RULES } from '../../support/simulator.js'

const SEAL_DEADLINE = DEFAULT_RULES.sealDeadlineMs

interface Later {
  readonly fx: Fixture
  /** What a verifier kept from the fixture's certificate: head chain[3], height 4. */
  readonly trusted: TrustedHead
  /** Two admissions after the fixture's checkpoint, then a checkpoint at 2 h over them. */
  readonly steps: readonly Decision[]
  readonly now: number
}

let later: Later
beforeAll(() => {
  const fx = buildFixture()
  const first = verifyCertificate(fx.sim.federation, fx.car, { now: fx.now, ed25519: fastEd25519 })
  const trusted = first.trusted as TrustedHead
  const steps = ['n3', 'n4'].map((name, i) =>
    decide(fx.sim, {
      by: 's1',
      at: fx.epoch + 10_000 + i * 1500,
      action: { type: 'admit-member', member: member(fx.sim, name, ['voter']) },
      voters: ['s1', 's2', 's3b', 'n1', 'n2'],
      sealers: ['s1', 's3b'],
    }),
  )
  const at = 2 * HOUR + SEAL_DEADLINE + 100
  fx.sim.add(fx.sim.checkpoint('s1', at, 2 * HOUR), fx.sim.checkpoint('s3b', at + 1, 2 * HOUR))
  later = { fx, trusted, steps, now: fx.sim.base + 2 * HOUR + SEAL_DEADLINE + 60_000 }
})

const verify = (
  car: Uint8Array,
  trusted?: TrustedHead | { height: number; epoch: number },
): CertificateVerdict =>
  verifyCertificate(later.fx.sim.federation, car, {
    now: later.now,
    ed25519: fastEd25519,
    ...(trusted ? { trusted } : {}),
  })

describe('a certificate since the trusted head', () => {
  it('holds only the chain after it, and verifies from it', () => {
    const { fx, trusted, steps } = later
    expect(trusted.head.equals(fx.chain[3]!.proposal.cid)).toBe(true)
    for (const mode of ['compact', 'full'] as const) {
      const made = exportCertificate(fx.sim.fold, MODEL, { mode, since: trusted.head })
      expect(made.since?.equals(trusted.head)).toBe(true)
      expect(made.sinceRefused).toBeUndefined()
      for (const step of fx.chain) expect(hasBlock(made.bytes, step.proposal.cid)).toBe(false)
      for (const step of steps) expect(hasBlock(made.bytes, step.proposal.cid)).toBe(true)
      expect(made.bytes.length).toBeLessThan(buildCertificate(fx.sim.fold, MODEL, { mode }).length)
      const v = verify(made.bytes, trusted)
      expect(v.problems).toEqual([])
      expect(v.ok).toBe(true)
      expect(v.mode).toBe(mode)
      expect(v.since?.equals(trusted.head)).toBe(true)
    }
  })

  it('moves the trusted head on to the new checkpoint’s head, with its state', () => {
    const { fx, trusted, steps } = later
    const v = verify(buildCertificate(fx.sim.fold, MODEL, { since: trusted.head }), trusted)
    const next = v.trusted as TrustedHead
    expect(next.head.equals(steps[1]!.proposal.cid)).toBe(true)
    expect(next.height).toBe(6)
    expect(next.state.height).toBe(6)
    expect(next.state.members.has(fx.sim.did('n4'))).toBe(true)
    expect(next.epoch).toBe(fx.sim.base + 2 * HOUR)
  })

  it('without a trusted head, with a bare mark or with another head → cert-since, and nothing else', () => {
    const { fx, trusted } = later
    const car = buildCertificate(fx.sim.fold, MODEL, { since: trusted.head })
    const other = { ...trusted, head: fx.chain[2]!.proposal.cid }
    for (const given of [undefined, { height: trusted.height, epoch: trusted.epoch }, other]) {
      const v = verify(car, given)
      expect(codes(v)).toEqual(['cert-since'])
      expect(v.problems[0]!.message).toMatch(/without --since/)
      expect(v.trusted).toEqual(given)
    }
  })

  it('a trusted head whose state is not the head’s (other stewards) proves nothing', () => {
    const { fx, trusted } = later
    const car = buildCertificate(fx.sim.fold, MODEL, { since: trusted.head })
    const members = new Map(trusted.state.members)
    for (const name of ['s1', 's3b']) {
      const m = members.get(fx.sim.did(name))!
      members.set(m.id, { ...m, roles: m.roles.filter((r) => r !== 'steward') })
    }
    members.set(fx.sim.did('v1'), {
      ...members.get(fx.sim.did('v1'))!,
      roles: ['publisher', 'steward', 'voter'],
    })
    members.set(fx.sim.did('n1'), { ...members.get(fx.sim.did('n1'))!, roles: ['steward', 'voter'] })
    const forged = { ...trusted, state: { ...trusted.state, members } }
    const v = verify(car, forged)
    expect(v.ok).toBe(false)
    expect(v.status).not.toBe('ratified')
  })
})

describe('when the exporter falls back to the genesis', () => {
  it('a since that is not on the checkpoint’s chain: the genesis chain, and why', () => {
    const { fx } = later
    const made = exportCertificate(fx.sim.fold, MODEL, { since: fx.llama.proposal.cid })
    expect(made.since).toBeNull()
    expect(made.sinceRefused).toMatch(/not a governance head on the chain/)
    expect(made.bytes).toEqual(buildCertificate(fx.sim.fold, MODEL))
  })

  it('a since after the deciding proposal’s basis: it would not verify from there', () => {
    const { fx, steps } = later
    const made = exportCertificate(fx.sim.fold, MODEL, { since: steps[0]!.proposal.cid })
    expect(made.since).toBeNull()
    expect(made.sinceRefused).toMatch(/would not verify from that head/)
    expect(verify(made.bytes).ok).toBe(true)
  })

  it('such a file made by hand → cert-ratification-unproven (its electorate is before the chain)', () => {
    const { fx, trusted, steps } = later
    const car = buildCertificate(fx.sim.fold, MODEL, { since: trusted.head })
    const step = steps[0]!
    const since = step.proposal.cid
    const atStep: TrustedHead = {
      height: 5,
      epoch: 0,
      head: since,
      state: fx.sim.fold.electorate(steps[1]!.proposal.cid)!,
    }
    const cut = operate(car, {
      remove: [since, ...step.seals.map((s) => s.cid)],
      header: { since },
    })
    expect(codes(verify(cut, atStep))).toContain('cert-ratification-unproven')
  })
})

describe('the trusted head as bytes', () => {
  it('round-trips', () => {
    const { trusted } = later
    const back = decodeTrustedHead(encodeTrustedHead(trusted))
    if (!back.ok) throw new Error(back.message)
    expect(back.value.head.equals(trusted.head)).toBe(true)
    expect({ ...back.value, head: undefined }).toEqual({ ...trusted, head: undefined })
    expect(encodeTrustedHead(back.value)).toEqual(encodeTrustedHead(trusted))
  })

  it('refuses what it did not write', () => {
    const { trusted } = later
    const value = {
      v: 1,
      height: trusted.height,
      epoch: trusted.epoch,
      head: trusted.head,
      members: [...trusted.state.members.values()].sort((a, b) => (a.id < b.id ? -1 : 1)),
      rules: trusted.state.rules,
      retired: [...trusted.state.retired].sort(),
    }
    expect(decodeTrustedHead(encode(value)).ok).toBe(true)
    const broken: Record<string, unknown>[] = [
      { ...value, v: 2 },
      { ...value, extra: 1 },
      { ...value, head: 'x' },
      { ...value, members: [...value.members].reverse() },
      { ...value, members: value.members.filter((m) => !m.roles.includes('steward')) },
      { ...value, retired: ['not a did'] },
    ]
    for (const bad of broken) expect(decodeTrustedHead(encode(bad)).ok).toBe(false)
    expect(decodeTrustedHead(new Uint8Array([0xff])).ok).toBe(false)
  })
})
