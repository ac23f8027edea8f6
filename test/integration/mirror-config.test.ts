/**
 * Live settings through the admin routes (node/api/config.ts) and the CLI over them
 * (cli/commands/node-mirror.ts), on one node on 127.0.0.1: each bound with one item or byte
 * more, the token, keys a running node does not change, a value applied at once and persisted
 * to config.json (read again by a restart), and `node pin`'s refusals.
 */
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CONFIG_BODY_BYTES, MAX_MODEL_KEY_CHARS } from '../../node/api/config.js'
import { adminToken, initHome } from '../../node/config.js'
import { MAX_MIRROR_PATTERN_CHARS, MAX_MIRROR_PATTERNS } from '../../node/config-weights.js'
import { type AllmendeNode, startNode } from '../../node/index.js'
import { silentLogger } from '../../node/log.js'
import { closedPort } from '../support/cli.js'
import { stewardFederation } from '../support/stewards.js'
import { tempDirForFile } from '../support/temp-dir.js'

const root = tempDirForFile('allmende-mirror-config-')
const run = promisify(execFile)
const sim = stewardFederation({
  name: 'mirror-config',
  keyPrefix: 'allmende-mirror-config:',
  base: Date.now(),
})

/** The fields of the answers these tests read (an error, or the settings). */
interface Answer {
  readonly error: { code: string; message: string }
  readonly settings: Record<string, unknown>
  readonly live: string[]
  readonly [field: string]: unknown
}

let node: AllmendeNode
let home: string

async function request(method: string, path: string, body?: unknown, token?: string | null) {
  const bearer = token === null ? undefined : (token ?? (await adminToken(home)).trim())
  const res = await fetch(`${node.apiUrl}${path}`, {
    method,
    headers: {
      ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  })
  return { status: res.status, body: (await res.json()) as Answer }
}

const onDisk = async () =>
  JSON.parse(await readFile(join(home, 'config.json'), 'utf8')) as Record<string, unknown>
const start = () => startNode({ home, genesis: sim.genesis, log: silentLogger, helia: true, sync: false })

/** The CLI as a user runs it, against this node's home. */
async function cli(...args: string[]) {
  try {
    const r = await run(
      join(process.cwd(), 'node_modules/.bin/tsx'),
      ['cli/run.ts', ...args, '--home', home],
      {
        cwd: process.cwd(),
      },
    )
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string }
    return { code: x.code, stdout: x.stdout, stderr: x.stderr }
  }
}

beforeAll(async () => {
  home = join(root(), 'node')
  // A fixed port: the CLI finds the node by the "api" of its home's config.
  await initHome(home, {
    genesis: sim.genesis,
    api: `127.0.0.1:${await closedPort()}`,
    listen: ['/ip4/127.0.0.1/tcp/0'],
  })
  node = await start()
})
afterAll(async () => {
  await node?.stop()
})

describe('GET /admin/config and PUT /admin/config/:key', () => {
  it('need the admin token', async () => {
    expect(await request('GET', '/admin/config', undefined, null)).toMatchObject({
      status: 401,
      body: { error: { code: 'unauthorized' } },
    })
    expect((await request('PUT', '/admin/config/mirror', { value: 'ratified' }, 'x'.repeat(43))).status).toBe(
      401,
    )
    expect((await onDisk()).mirror).toBeUndefined()
  })

  it('show each live setting with its default', async () => {
    const r = await request('GET', '/admin/config')
    expect(r.status).toBe(200)
    expect(r.body.settings.mirror).toEqual({ value: 'none', default: 'none', set: false })
    expect(r.body.settings.minHolders).toEqual({ value: 3, default: 3, set: false })
    expect(r.body.live).toContain('unpinRevokedAfterMs')
  })

  it(`take ${MAX_MIRROR_PATTERNS} patterns and refuse ${MAX_MIRROR_PATTERNS + 1}, leaving config.json as it was`, async () => {
    const patterns = (n: number, chars = 12) =>
      Array.from({ length: n }, (_, i) => `${String(i).padStart(4, '0')}/`.padEnd(chars, 'x'))
    const most = patterns(MAX_MIRROR_PATTERNS, MAX_MIRROR_PATTERN_CHARS)
    expect(await request('PUT', '/admin/config/mirror', { value: most })).toMatchObject({
      status: 200,
      body: { key: 'mirror', value: most },
    })
    expect((await onDisk()).mirror).toEqual(most)
    expect(node.liveConfig.current().mirror).toEqual(most)
    const over = await request('PUT', '/admin/config/mirror', { value: patterns(MAX_MIRROR_PATTERNS + 1) })
    expect(over).toMatchObject({ status: 400, body: { error: { code: 'config-invalid' } } })
    expect(over.body.error.message).toContain(`over ${MAX_MIRROR_PATTERNS} patterns`)
    const long = await request('PUT', '/admin/config/mirror', {
      value: ['x'.repeat(MAX_MIRROR_PATTERN_CHARS + 1)],
    })
    expect(long).toMatchObject({ status: 400, body: { error: { code: 'config-invalid' } } })
    expect((await onDisk()).mirror).toEqual(most)
  })

  it(`take a body of ${CONFIG_BODY_BYTES} bytes and refuse one more`, async () => {
    const body = (bytes: number) => {
      const frame = JSON.stringify({ value: 'ratified', pad: '' })
      return JSON.stringify({ value: 'ratified', pad: 'x'.repeat(bytes - frame.length) })
    }
    expect(Buffer.byteLength(body(CONFIG_BODY_BYTES))).toBe(CONFIG_BODY_BYTES)
    expect((await request('PUT', '/admin/config/mirror', body(CONFIG_BODY_BYTES))).status).toBe(200)
    expect(await request('PUT', '/admin/config/mirror', body(CONFIG_BODY_BYTES + 1))).toMatchObject({
      status: 413,
      body: { error: { code: 'body-too-large' } },
    })
  })

  it('refuse settings a running node does not change, and a body without a value', async () => {
    for (const key of ['api', 'listen', 'nonsense']) {
      const r = await request('PUT', `/admin/config/${key}`, { value: 1 })
      expect(r).toMatchObject({ status: 400, body: { error: { code: 'config-not-live' } } })
      expect(r.body.error.message).toContain('restart')
    }
    expect(await request('PUT', '/admin/config/minHolders', { v: 5 })).toMatchObject({
      status: 400,
      body: { error: { code: 'bad-request' } },
    })
  })

  it('apply a value at once, restore the default with null, and persist across a restart', async () => {
    expect(await request('PUT', '/admin/config/unpinRevokedAfterMs', { value: 5_000 })).toMatchObject({
      status: 200,
      body: { value: 5_000, previous: null },
    })
    expect(node.liveConfig.current().unpinRevokedAfterMs).toBe(5_000)
    expect(await request('PUT', '/admin/config/minHolders', { value: 0 })).toMatchObject({ status: 400 })
    expect(await request('PUT', '/admin/config/minHolders', { value: 5 })).toMatchObject({ status: 200 })
    expect(await request('PUT', '/admin/config/minHolders', { value: null })).toMatchObject({
      status: 200,
      body: { value: 3, previous: 5 },
    })
    expect('minHolders' in (await onDisk())).toBe(false)
    await node.stop()
    node = await start()
    expect(node.config.unpinRevokedAfterMs).toBe(5_000)
    expect(node.config.mirror).toBe('ratified')
  })
})

describe('POST /admin/pin', () => {
  it('refuses what is not name@version, over the length, or unknown, each with its code', async () => {
    expect(await request('POST', '/admin/pin', { model: 'no-version' })).toMatchObject({
      status: 400,
      body: { error: { code: 'bad-request' } },
    })
    const longest = `${'a'.repeat(MAX_MODEL_KEY_CHARS - 6)}@1.0.0`
    expect(await request('POST', '/admin/pin', { model: longest })).toMatchObject({
      status: 404,
      body: { error: { code: 'unknown-model' } },
    })
    expect(await request('POST', '/admin/pin', { model: `a${longest}` })).toMatchObject({
      status: 400,
      body: { error: { code: 'bad-request' } },
    })
    expect((await request('POST', '/admin/pin', { model: 'tiny@1.0.0' }, null)).status).toBe(401)
  })
})

describe('the CLI', () => {
  it('edits the mirror policy and the live settings of the running node', async () => {
    expect((await cli('node', 'mirror', 'rm', 'ratified')).code).toBe(0)
    const added = await cli('node', 'mirror', 'add', 'occiglot/*')
    expect(added.code).toBe(0)
    expect(added.stdout).toContain('occiglot/*')
    expect((await onDisk()).mirror).toEqual(['occiglot/*'])
    const absent = await cli('--json', 'node', 'mirror', 'rm', 'other/*')
    expect(absent.code).toBe(1)
    expect(absent.stderr).toContain('not-mirrored')
    const set = await cli('node', 'config', 'set', 'unpinRevokedAfterMs', '14d')
    expect(set.code).toBe(0)
    expect(node.liveConfig.current().unpinRevokedAfterMs).toBe(14 * 86_400_000)
    const bad = await cli('--json', 'node', 'config', 'set', 'minHolders', '0')
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain('config-invalid')
    const unknown = await cli('--json', 'node', 'pin', 'tiny@1.0.0')
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain('unknown-model')
    const unpinUnknown = await cli('--json', 'node', 'unpin', 'tiny@1.0.0')
    expect(unpinUnknown.code).toBe(1)
    expect(unpinUnknown.stderr).toContain('unknown-model')
  }, 60_000)
})

describe('POST /admin/config/mirror/add|rm', () => {
  it('applies edits sent at once one after another, so every one lands', async () => {
    expect((await request('PUT', '/admin/config/mirror', { value: null })).status).toBe(200)
    const patterns = Array.from({ length: 8 }, (_, i) => `org-${i}/*`)
    const added = await Promise.all(
      patterns.map((pattern) => request('POST', '/admin/config/mirror/add', { pattern })),
    )
    expect(added.map((a) => a.status)).toEqual(patterns.map(() => 200))
    const policy = node.liveConfig.current().mirror as string[]
    expect([...policy].sort()).toEqual(patterns)
    expect(((await onDisk()).mirror as string[]).sort()).toEqual(patterns)
    // Adding one already there changes nothing, and says so.
    expect(await request('POST', '/admin/config/mirror/add', { pattern: 'org-0/*' })).toMatchObject({
      status: 200,
      body: { changed: false },
    })
    const removed = await Promise.all(
      patterns.map((pattern) => request('POST', '/admin/config/mirror/rm', { pattern })),
    )
    expect(removed.map((r) => r.status)).toEqual(patterns.map(() => 200))
    expect(node.liveConfig.current().mirror).toBe('none')
    expect((await onDisk()).mirror).toBe('none')
  })

  it('refuses a pattern not in the policy, a bad pattern, another verb, and no token', async () => {
    expect(await request('POST', '/admin/config/mirror/rm', { pattern: 'other/*' })).toMatchObject({
      status: 409,
      body: { error: { code: 'not-mirrored' } },
    })
    for (const pattern of ['', 'a b', 'x@1', 'a'.repeat(MAX_MIRROR_PATTERN_CHARS + 1), 7])
      expect(await request('POST', '/admin/config/mirror/add', { pattern })).toMatchObject({
        status: 400,
        body: { error: { code: 'config-invalid' } },
      })
    expect(
      (await request('POST', '/admin/config/mirror/add', { pattern: 'a'.repeat(MAX_MIRROR_PATTERN_CHARS) }))
        .status,
    ).toBe(200)
    expect((await request('POST', '/admin/config/mirror/swap', { pattern: 'a/*' })).status).toBe(404)
    expect((await request('POST', '/admin/config/mirror/add', { pattern: 'a/*' }, null)).status).toBe(401)
    expect((await request('PUT', '/admin/config/mirror', { value: null })).status).toBe(200)
  })
})

describe('POST /admin/unpin', () => {
  it('refuses what is not name@version, or unknown, each with its code', async () => {
    expect(await request('POST', '/admin/unpin', { model: 'no-version' })).toMatchObject({
      status: 400,
      body: { error: { code: 'bad-request' } },
    })
    expect(await request('POST', '/admin/unpin', { model: 'tiny@1.0.0' })).toMatchObject({
      status: 404,
      body: { error: { code: 'unknown-model' } },
    })
    expect((await request('POST', '/admin/unpin', { model: 'tiny@1.0.0' }, null)).status).toBe(401)
  })
})
