/** What people type on the command line: durations, sizes, member specs and rule options. */
import { describe, expect, it } from 'vitest'
import { CliError } from '../../../cli/context.js'
import { formatDuration, parseDuration, parseSize } from '../../../cli/durations.js'
import { applyRuleOptions, defaultRules, parseMemberSpec, parseMembers } from '../../../cli/rules.js'
import { createSigner } from '../../../protocol/index.js'

const did = (n: number) => createSigner(new Uint8Array(32).fill(n)).did

function usageError(f: () => unknown): CliError {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(CliError)
    expect((e as CliError).exit).toBe(2)
    return e as CliError
  }
  throw new Error('expected a usage error')
}

describe('durations', () => {
  it('reads units, compounds and plain milliseconds', () => {
    expect(parseDuration('30s')).toBe(30_000)
    expect(parseDuration('5m')).toBe(300_000)
    expect(parseDuration('2h')).toBe(7_200_000)
    expect(parseDuration('7d')).toBe(604_800_000)
    expect(parseDuration('1w')).toBe(604_800_000)
    expect(parseDuration('250ms')).toBe(250)
    expect(parseDuration('1h30m')).toBe(5_400_000)
    expect(parseDuration('1500')).toBe(1500)
    expect(parseDuration(' 2H ')).toBe(7_200_000)
  })
  it('refuses what is not a duration', () => {
    for (const bad of ['', 's', '1.5h', '-1s', '3y', '1h 30m', '2hours', '1e3', `${'9'.repeat(20)}d`])
      expect(parseDuration(bad), bad).toBeUndefined()
  })
  it('formats back', () => {
    expect(formatDuration(0)).toBe('0ms')
    expect(formatDuration(90_061_000)).toBe('1d1h1m1s')
    expect(formatDuration(7 * 86_400_000)).toBe('7d')
    expect(parseDuration(formatDuration(5_400_000))).toBe(5_400_000)
  })
  it('sizes', () => {
    expect(parseSize('1TiB')).toBe(2 ** 40)
    expect(parseSize('500GB')).toBe(500e9)
    expect(parseSize('4096')).toBe(4096)
    expect(parseSize('10 mib')).toBe(10 * 2 ** 20)
    expect(parseSize('1.5GB')).toBeUndefined()
    expect(parseSize('10XB')).toBeUndefined()
  })
})

describe('member specs', () => {
  it('are parsed from the right', () => {
    expect(parseMemberSpec(`${did(1)}:steward,voter:2`)).toEqual({
      id: did(1),
      roles: ['steward', 'voter'],
      weight: 2,
    })
    expect(parseMemberSpec(`${did(2)}:voter,publisher,voter`)).toEqual({
      id: did(2),
      roles: ['publisher', 'voter'],
      weight: 1,
    })
  })
  it('refuse unknown roles, bad weights, bad keys and repeats', () => {
    expect(usageError(() => parseMemberSpec(`${did(1)}:admin`)).message).toMatch(/unknown role "admin"/)
    expect(usageError(() => parseMemberSpec(`${did(1)}:voter:0`)).message).toMatch(/weight/)
    expect(usageError(() => parseMemberSpec(did(1))).message).toMatch(/expected DID:ROLES/)
    expect(usageError(() => parseMemberSpec('did:key:zNope:voter')).message).toMatch(/not a member key/)
    expect(usageError(() => parseMemberSpec('voter:1')).message).toMatch(/DID:ROLES/)
    usageError(() => parseMembers([`${did(1)}:voter`, `${did(1)}:steward`]))
  })
  it('come out sorted by id', () => {
    const ids = parseMembers([1, 2, 3, 4].map((n) => `${did(n)}:voter`)).map((m) => m.id)
    expect(ids).toEqual([...ids].sort())
  })
})

describe('rule options', () => {
  it('change only what is given', () => {
    const base = defaultRules(3)
    expect(base.sealThreshold).toBe(2)
    const r = applyRuleOptions(base, {
      votingPeriod: '14d',
      rule: ['ratify-model:threshold=2/3', 'default:quorum=1/3'],
      require: ['ratify-model:eval=2', 'ratify-model:bias-audit=1'],
      maxModelBytes: '500GB',
    })
    expect(r.votingPeriodMs).toBe(14 * 86_400_000)
    expect(r.sealGraceMs).toBe(base.sealGraceMs)
    expect(r.maxModelBytes).toBe(500e9)
    expect(r.actions['*']).toEqual({ quorum: [1, 3], threshold: [1, 2], requiredAttestations: [] })
    expect(r.actions['ratify-model']).toEqual({
      quorum: [1, 2],
      threshold: [2, 3],
      requiredAttestations: [
        { kind: 'bias-audit', min: 1 },
        { kind: 'eval', min: 2 },
      ],
    })
  })
  it('refuse bad fractions, actions and durations', () => {
    usageError(() => applyRuleOptions(defaultRules(1), { rule: ['ratify-model:quorum=3/2'] }))
    usageError(() => applyRuleOptions(defaultRules(1), { rule: ['vote:quorum=1/2'] }))
    usageError(() => applyRuleOptions(defaultRules(1), { rule: ['ratify-model:majority=1/2'] }))
    usageError(() => applyRuleOptions(defaultRules(1), { require: ['ratify-model:eval'] }))
    expect(usageError(() => applyRuleOptions(defaultRules(1), { sealGrace: '1.5s' })).message).toMatch(
      /--seal-grace: not a duration/,
    )
  })
})
