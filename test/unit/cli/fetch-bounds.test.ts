/**
 * The bounds and small parts of `allmende fetch`'s multi-source engine (node/weights/multi-fetch*):
 * each limit taken at its value and refused (or left out) one past it; the spans a resume keeps;
 * the journal read only for its own file.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  gatewayBase,
  holderGateways,
  MAX_SOURCE_URL_CHARS,
  MAX_SOURCES,
  sourceList,
} from '../../../node/weights/multi-fetch-holders.js'
import { includeMatcher, MAX_GLOB_CHARS, MAX_GLOBS } from '../../../node/weights/multi-fetch-include.js'
import {
  type JournalKey,
  MAX_JOURNAL_BYTES,
  readJournal,
  writeJournal,
} from '../../../node/weights/multi-fetch-journal.js'
import { SpanSet } from '../../../node/weights/multi-fetch-spans.js'
import { codeOf } from '../../support/weights-files.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'allmende-fetch-bounds-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

const key: JournalKey = { weights: 'bafyroot', path: 'a.safetensors', size: 10_000, sha256: 'ab'.repeat(32) }

describe('the journal beside a .partial file', () => {
  it('gives back the spans written, for the same file only', async () => {
    const path = join(dir, 'same.journal')
    await writeJournal(path, key, [
      { start: 0, end: 100 },
      { start: 200, end: 300 },
    ])
    expect(await readJournal(path, key)).toEqual([
      { start: 0, end: 100 },
      { start: 200, end: 300 },
    ])
    expect(await readJournal(path, { ...key, sha256: 'cd'.repeat(32) })).toBeUndefined()
    expect(await readJournal(path, { ...key, size: 10_001 })).toBeUndefined()
  })

  it('a span past the file, or malformed JSON, is no journal', async () => {
    const path = join(dir, 'bad.journal')
    await writeFile(path, JSON.stringify({ version: 1, ...key, done: [[0, 10_001]] }))
    expect(await readJournal(path, key)).toBeUndefined()
    await writeFile(path, '{"version":1,')
    expect(await readJournal(path, key)).toBeUndefined()
  })

  it(`is read at ${MAX_JOURNAL_BYTES} bytes and not at one byte more`, async () => {
    const path = join(dir, 'big.journal')
    const body = JSON.stringify({ version: 1, ...key, done: [[0, 100]] })
    await writeFile(path, body + ' '.repeat(MAX_JOURNAL_BYTES - body.length))
    expect(await readJournal(path, key)).toEqual([{ start: 0, end: 100 }])
    await writeFile(path, body + ' '.repeat(MAX_JOURNAL_BYTES - body.length + 1))
    expect(await readJournal(path, key)).toBeUndefined()
  })

  it('leaves spans out, from the last, rather than write more than the bound', async () => {
    const path = join(dir, 'many.journal')
    const spans = Array.from({ length: 10_000 }, (_, i) => ({ start: i * 2, end: i * 2 + 1 }))
    await writeJournal(path, { ...key, size: 100_000 }, spans)
    const read = await readJournal(path, { ...key, size: 100_000 })
    expect(read!.length).toBeGreaterThan(0)
    expect(read).toEqual(spans.slice(0, read!.length))
  })
})

describe('spans', () => {
  it('merge what meets or touches, and tell what is missing', () => {
    const spans = new SpanSet([{ start: 10, end: 20 }])
    spans.add(20, 30)
    spans.add(0, 5)
    expect(spans.list()).toEqual([
      { start: 0, end: 5 },
      { start: 10, end: 30 },
    ])
    expect(spans.prefixEnd).toBe(5)
    expect(spans.missing({ start: 0, end: 40 })).toEqual([
      { start: 5, end: 10 },
      { start: 30, end: 40 },
    ])
    spans.add(5, 10)
    expect(spans.prefixEnd).toBe(30)
    expect(spans.bytes).toBe(30)
  })
})

describe('--include', () => {
  it('* and ? stay in a segment, ** crosses them', () => {
    const m = includeMatcher(['*.json', 'shards/**/*.bin', 'model-0000?-*'])
    expect(m('config.json')).toBe(true)
    expect(m('sub/config.json')).toBe(false)
    expect(m('shards/a.bin')).toBe(true)
    expect(m('shards/x/y/a.bin')).toBe(true)
    expect(m('model-00001-of-00002.safetensors')).toBe(true)
    expect(m('model-00010-of-00020.safetensors')).toBe(false)
    expect(includeMatcher([])('anything')).toBe(true)
    expect(includeMatcher(['**'])('a/b/c')).toBe(true)
    expect(includeMatcher(['a/**/c', 'x*y'])('a/c')).toBe(true)
    expect(includeMatcher(['[ab].json'])('a.json')).toBe(false)
  })

  it('answers a pattern that would make a regular expression backtrack for ages', () => {
    // Built as a regular expression, this pattern against 200 a's would outlast the test's timeout.
    expect(includeMatcher([`${'*a'.repeat(100)}b`])('a'.repeat(200))).toBe(false)
    expect(includeMatcher([`${'*a'.repeat(100)}`])('a'.repeat(200))).toBe(true)
  })

  it(`takes a glob of ${MAX_GLOB_CHARS} characters and refuses one more`, async () => {
    expect(includeMatcher(['a'.repeat(MAX_GLOB_CHARS)])('a'.repeat(MAX_GLOB_CHARS))).toBe(true)
    expect(await codeOf(Promise.resolve().then(() => includeMatcher(['a'.repeat(MAX_GLOB_CHARS + 1)])))).toBe(
      'bad-include',
    )
  })

  it(`takes ${MAX_GLOBS} globs and refuses one more`, async () => {
    const globs = Array.from({ length: MAX_GLOBS }, (_, i) => `f${i}`)
    expect(includeMatcher(globs)(`f${MAX_GLOBS - 1}`)).toBe(true)
    expect(await codeOf(Promise.resolve().then(() => includeMatcher([...globs, 'one-more'])))).toBe(
      'bad-include',
    )
  })
})

describe('sources', () => {
  const node = 'http://127.0.0.1:7070'
  const given = (n: number) => Array.from({ length: n }, (_, i) => `http://10.0.0.${i + 1}:7070`)

  it('the node first, then the given, then the holders, each once, as bases', () => {
    expect(
      sourceList(
        node,
        ['http://10.0.0.1:7070/', node],
        ['http://10.0.0.2:7070', 'ftp://x', 'http://10.0.0.1:7070'],
      ),
    ).toEqual([node, 'http://10.0.0.1:7070', 'http://10.0.0.2:7070'])
  })

  it(`takes ${MAX_SOURCES} sources and refuses one more given by hand; holders past it are left out`, async () => {
    expect(sourceList(node, given(MAX_SOURCES - 1), [])).toHaveLength(MAX_SOURCES)
    expect(await codeOf(Promise.resolve().then(() => sourceList(node, given(MAX_SOURCES), [])))).toBe(
      'bad-gateway',
    )
    expect(sourceList(node, given(MAX_SOURCES - 1), ['http://10.1.0.1:7070'])).toHaveLength(MAX_SOURCES)
  })

  it(`takes a URL of ${MAX_SOURCE_URL_CHARS} characters and not one more`, () => {
    const url = (n: number) => `http://h/${'p'.repeat(n - 'http://h/'.length)}`
    expect(gatewayBase(url(MAX_SOURCE_URL_CHARS))).toBeDefined()
    expect(gatewayBase(url(MAX_SOURCE_URL_CHARS + 1))).toBeUndefined()
    expect(gatewayBase('http://h:1/?q=1')).toBeUndefined()
  })

  it("reads the holders' gateways of the version's weights from a replication answer", () => {
    const answer = {
      minHolders: 3,
      versions: [
        { model: 'm@1', weights: 'bafyA', holders: [{ gateways: ['http://a:1', 5] }, { gateways: 'x' }] },
        { model: 'm@2', weights: 'bafyB', holders: [{ gateways: ['http://b:1'] }] },
      ],
    }
    expect(holderGateways(answer, 'bafyA')).toEqual(['http://a:1'])
    expect(holderGateways({ error: 'x' }, 'bafyA')).toEqual([])
    expect(holderGateways(null, 'bafyA')).toEqual([])
  })
})
