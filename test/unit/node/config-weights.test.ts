/**
 * The weights settings of a node's config (node/config-weights.ts): every bound is tested with
 * the value at it and the one just past it, and the mirror policy's patterns and edits.
 */
import { describe, expect, it } from 'vitest'
import {
  announcedGateways,
  MAX_MIRROR_PATTERN_CHARS,
  MAX_MIRROR_PATTERNS,
  mirrorAdded,
  mirrorPolicyProblem,
  mirrorRemoved,
  mirrors,
  parseWeightsConfig,
} from '../../../node/config-weights.js'
import { isNodeError } from '../../../node/errors.js'

function refusal(raw: Record<string, unknown>): { code: string; message: string } | undefined {
  try {
    parseWeightsConfig(raw, 'config.json')
    return undefined
  } catch (e) {
    if (!isNodeError(e)) throw e
    return { code: e.code, message: e.message }
  }
}

const patterns = (n: number) => Array.from({ length: n }, (_, i) => `org${i}/*`)

describe('mirror', () => {
  it('takes none, ratified and lists of patterns', () => {
    expect(parseWeightsConfig({ mirror: 'none' }, 'c')).toEqual({ mirror: 'none' })
    expect(parseWeightsConfig({ mirror: 'ratified' }, 'c')).toEqual({ mirror: 'ratified' })
    expect(parseWeightsConfig({ mirror: ['occiglot/*', '*-de'] }, 'c')).toEqual({
      mirror: ['occiglot/*', '*-de'],
    })
    expect(parseWeightsConfig({}, 'c')).toEqual({})
  })

  it(`takes ${MAX_MIRROR_PATTERNS} patterns and refuses ${MAX_MIRROR_PATTERNS + 1}`, () => {
    expect(refusal({ mirror: patterns(MAX_MIRROR_PATTERNS) })).toBeUndefined()
    expect(refusal({ mirror: patterns(MAX_MIRROR_PATTERNS + 1) })).toEqual({
      code: 'config-invalid',
      message: `config.json: "mirror" holds over ${MAX_MIRROR_PATTERNS} patterns`,
    })
  })

  it(`takes a pattern of ${MAX_MIRROR_PATTERN_CHARS} characters and refuses ${MAX_MIRROR_PATTERN_CHARS + 1}`, () => {
    expect(refusal({ mirror: ['a'.repeat(MAX_MIRROR_PATTERN_CHARS)] })).toBeUndefined()
    expect(refusal({ mirror: ['a'.repeat(MAX_MIRROR_PATTERN_CHARS + 1)] })?.message).toContain(
      `1 to ${MAX_MIRROR_PATTERN_CHARS} characters`,
    )
  })

  it('refuses anything else, saying what it takes', () => {
    for (const bad of ['all', '', 7, null, {}, [''], [7], ['a b'], ['tiny@1.0.0']])
      expect(refusal({ mirror: bad })?.code).toBe('config-invalid')
    expect(mirrorPolicyProblem('all')).toBe('must be "none", "ratified" or a list of name patterns')
    expect(mirrorPolicyProblem(['tiny@1.0.0'])).toContain('patterns match model names only')
  })

  it('matches names: * is any run of characters, / included; the rest is literal', () => {
    expect(mirrors('none', 'occiglot/x')).toBe(false)
    expect(mirrors('ratified', 'anything')).toBe(true)
    expect(mirrors(['occiglot/*'], 'occiglot/mistral-7b')).toBe(true)
    expect(mirrors(['occiglot/*'], 'occiglot/a/b')).toBe(true)
    expect(mirrors(['occiglot/*'], 'other/mistral')).toBe(false)
    expect(mirrors(['*-de'], 'occiglot/mistral-de')).toBe(true)
    expect(mirrors(['a.b'], 'axb')).toBe(false)
    expect(mirrors(['a.b'], 'a.b')).toBe(true)
    expect(mirrors(['(x)+'], '(x)+')).toBe(true)
  })

  it('matches and refuses as a wildcard should, with repeated and trailing stars', () => {
    const table: [string, string, boolean][] = [
      ['*', '', true],
      ['*', 'a/b', true],
      ['', '', true],
      ['', 'a', false],
      ['a', 'a', true],
      ['a', 'ab', false],
      ['ab', 'a', false],
      ['a*', 'a', true],
      ['*a', 'ba', true],
      ['*a', 'ab', false],
      ['a**b', 'ab', true],
      ['a***b', 'axxb', true],
      ['a*b*c', 'abbbc', true],
      ['a*b*c', 'acb', false],
      ['*ab*', 'aab', true],
      ['*aab', 'aaab', true],
      ['a*a', 'a', false],
      ['*x*y*', 'yx', false],
      ['open/*-de', 'open/m-7b-de', true],
      ['open/*-de', 'open/m-7b-den', false],
      ['?', 'x', false],
      ['?', '?', true],
    ]
    for (const [pattern, name, expected] of table)
      expect([pattern, name, mirrors([pattern], name)]).toEqual([pattern, name, expected])
  })

  it('matches a pattern that makes a backtracking regex exponential, at once', () => {
    // As a backtracking regex (^.*a.*a….*b$) this took minutes on the 40-character name, past
    // the test's timeout; the linear matcher answers in microseconds.
    const pattern = `${'*a'.repeat(12)}*b`
    expect(mirrors([pattern], 'a'.repeat(40))).toBe(false)
    expect(mirrors([pattern], `${'a'.repeat(40)}b`)).toBe(true)
    expect(mirrors([`${'*'.repeat(200)}`], 'a'.repeat(200))).toBe(true)
  })

  it('is edited by add and rm as `node mirror` does', () => {
    expect(mirrorAdded('none', 'occiglot/*')).toEqual(['occiglot/*'])
    expect(mirrorAdded(['occiglot/*'], 'occiglot/*')).toEqual(['occiglot/*'])
    expect(mirrorAdded(['occiglot/*'], '*-de')).toEqual(['occiglot/*', '*-de'])
    expect(mirrorAdded(['occiglot/*'], 'ratified')).toBe('ratified')
    expect(mirrorAdded('ratified', 'occiglot/*')).toBe('ratified')
    expect(mirrorRemoved(['occiglot/*', '*-de'], '*-de')).toEqual(['occiglot/*'])
    expect(mirrorRemoved(['occiglot/*'], 'occiglot/*')).toBe('none')
    expect(mirrorRemoved('ratified', 'ratified')).toBe('none')
    expect(mirrorRemoved('ratified', 'occiglot/*')).toBeUndefined()
    expect(mirrorRemoved(['occiglot/*'], '*-de')).toBeUndefined()
    expect(mirrorRemoved('none', 'occiglot/*')).toBeUndefined()
  })
})

describe('announceGateways', () => {
  const urls = (n: number) => Array.from({ length: n }, (_, i) => `https://mirror${i}.example:443`)

  it('takes 8 http(s) base URLs and refuses 9', () => {
    expect(refusal({ announceGateways: urls(8) })).toBeUndefined()
    expect(refusal({ announceGateways: urls(9) })?.message).toContain('at most 8')
  })

  it('refuses URLs with a path, user information, a query or fragment, other schemes and non-strings', () => {
    for (const bad of [
      ['http://a.example/ipfs'],
      ['ftp://a.example'],
      [7],
      'http://a.example',
      ['http://u@a.example'],
      ['http://a.example?x'],
      ['http://a.example#f'],
    ])
      expect(refusal({ announceGateways: bad })?.code).toBe('config-invalid')
  })

  it('defaults to the API address unless it is a wildcard', () => {
    expect(announcedGateways({ api: '10.0.0.5:7070' })).toEqual(['http://10.0.0.5:7070'])
    expect(announcedGateways({ api: '0.0.0.0:7070' })).toEqual([])
    expect(announcedGateways({ api: '[::]:7070' })).toEqual([])
    expect(announcedGateways({ api: '0.0.0.0:7070', announceGateways: ['https://g.example'] })).toEqual([
      'https://g.example',
    ])
  })
})

describe('whole-number settings', () => {
  const bounds = [
    ['unratifiedRetentionMs', 0],
    ['minHolders', 1],
    ['holdingRenewMs', 1000],
    ['scrubBytesPerSecond', 0],
  ] as const

  for (const [key, min] of bounds) {
    it(`${key}: takes ${min} and refuses ${min - 1}, fractions and text`, () => {
      expect(parseWeightsConfig({ [key]: min }, 'c')).toEqual({ [key]: min })
      expect(refusal({ [key]: min - 1 })).toEqual({
        code: 'config-invalid',
        message: `config.json: "${key}" must be a whole number, ${min} or more`,
      })
      expect(refusal({ [key]: min + 0.5 })?.code).toBe('config-invalid')
      expect(refusal({ [key]: String(min) })?.code).toBe('config-invalid')
      expect(refusal({ [key]: Number.MAX_SAFE_INTEGER + 1 })?.code).toBe('config-invalid')
    })
  }
})
