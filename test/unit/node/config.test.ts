/**
 * The node's config file (node/config.ts): what it accepts, and one clear `config-invalid`
 * message per mistake an operator can make by hand; and the admin token file: refused when
 * empty or short, replaced whole by a rotation, read again by a running node when it changes.
 */
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  API_LIMIT_DEFAULTS,
  adminToken,
  apiLimitsOf,
  checkToken,
  FILES,
  MIN_TOKEN_CHARS,
  parseConfig,
  rotateToken,
  tokenSource,
} from '../../../node/config.js'
import { tempDirForFile } from '../../support/temp-dir.js'
import { codeOf } from '../../support/weights-files.js'

const federation = 'bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'
const base = {
  version: 1,
  federation,
  listen: ['/ip4/127.0.0.1/tcp/0'],
  bootstrap: [],
  api: '127.0.0.1:7070',
}
const parse = (c: Record<string, unknown>) => parseConfig(JSON.stringify(c), 'config.json')

describe('parseConfig', () => {
  it('takes the minimal config with defaults, and gateways and the unpin delay when given', () => {
    const c = parse(base)
    expect(c.logLevel).toBe('info')
    expect(c.gateways).toBeUndefined()
    expect(c.unpinRevokedAfterMs).toBeUndefined()
    const d = parse({
      ...base,
      gateways: ['http://steward-b.example.org:7070', 'https://gw.example.org/'],
      unpinRevokedAfterMs: 0,
    })
    expect(d.gateways).toEqual(['http://steward-b.example.org:7070', 'https://gw.example.org/'])
    expect(d.unpinRevokedAfterMs).toBe(0)
  })

  it.each([
    [{ gateways: 'http://a:1' }, /"gateways" must be a list of http\(s\):\/\/host:port URLs/],
    [{ gateways: ['ftp://a:1'] }, /"gateways"/],
    [{ gateways: ['http://a:1/ipfs/x'] }, /"gateways"/],
    [{ unpinRevokedAfterMs: -1 }, /"unpinRevokedAfterMs" must be a whole number of milliseconds/],
    [{ unpinRevokedAfterMs: '7d' }, /"unpinRevokedAfterMs"/],
    [{ gateway: ['http://a:1'] }, /unknown setting "gateway"/],
    [{ api: 'localhost' }, /"api" must be host:port/],
  ])('refuses %j with config-invalid', (change, message) => {
    expect(() => parse({ ...base, ...change })).toThrow(message)
    try {
      parse({ ...base, ...change })
    } catch (e) {
      expect((e as { code: string }).code).toBe('config-invalid')
    }
  })

  it('refuses text that is not JSON, naming the file', () => {
    expect(() => parseConfig('{', 'HOME/config.json')).toThrow(/HOME\/config.json is not valid JSON/)
  })

  it('takes import roots, trusted proxies and the API limits; fills in the defaults of the rest', () => {
    expect(apiLimitsOf(parse(base))).toEqual(API_LIMIT_DEFAULTS)
    expect(API_LIMIT_DEFAULTS).toMatchObject({
      idleTimeoutMs: 30_000,
      headersTimeoutMs: 20_000,
      keepAliveTimeoutMs: 5_000,
      maxRequestsPerConnection: 1_000,
      maxConnections: 1_024,
      maxConnectionsPerAddress: 32,
      maxBufferedBytes: 64 * 1024 * 1024,
      trustedProxies: [],
    })
    expect(parse(base).importRoots).toBeUndefined()
    const c = parse({
      ...base,
      importRoots: ['/srv/models', '/data/incoming'],
      trustedProxies: ['10.0.0.5', '10.1.0.0/16', '::1', 'fd00::/8'],
      apiIdleTimeoutMs: 1,
      apiHeadersTimeoutMs: 10_000,
      apiKeepAliveTimeoutMs: 2_000,
      apiMaxRequestsPerConnection: 10,
      apiMaxConnections: 64,
      apiMaxConnectionsPerAddress: 4,
      apiMaxBufferedBytes: 1024,
    })
    expect(c.importRoots).toEqual(['/srv/models', '/data/incoming'])
    expect(apiLimitsOf(c)).toEqual({
      idleTimeoutMs: 1,
      headersTimeoutMs: 10_000,
      keepAliveTimeoutMs: 2_000,
      maxRequestsPerConnection: 10,
      maxConnections: 64,
      maxConnectionsPerAddress: 4,
      maxBufferedBytes: 1024,
      trustedProxies: ['10.0.0.5', '10.1.0.0/16', '::1', 'fd00::/8'],
    })
  })

  it.each([
    [{ importRoots: ['models'] }, /"importRoots" must be a list of absolute directory paths/],
    [{ importRoots: '/srv/models' }, /"importRoots"/],
    [{ trustedProxies: ['proxy.example.org'] }, /"trustedProxies" must be a list of IP addresses or ranges/],
    [{ trustedProxies: ['10.0.0.0/33'] }, /"trustedProxies"/],
    [{ trustedProxies: ['::1/129'] }, /"trustedProxies"/],
    [{ trustedProxies: ['10.0.0.0/8/1'] }, /"trustedProxies"/],
    [{ trustedProxies: '10.0.0.1' }, /"trustedProxies"/],
    [{ apiIdleTimeoutMs: 0 }, /"apiIdleTimeoutMs" must be a whole number, 1 or more/],
    [{ apiHeadersTimeoutMs: 1.5 }, /"apiHeadersTimeoutMs"/],
    [{ apiKeepAliveTimeoutMs: '5s' }, /"apiKeepAliveTimeoutMs"/],
    [{ apiMaxConnections: -1 }, /"apiMaxConnections"/],
    [{ apiMaxConnectionsPerAddress: null }, /"apiMaxConnectionsPerAddress"/],
    [{ apiMaxBufferedBytes: 2 ** 60 }, /"apiMaxBufferedBytes"/],
    [{ apiMaxRequestsPerConnection: 0 }, /"apiMaxRequestsPerConnection"/],
  ])('refuses %j with config-invalid', (change, message) => {
    expect(() => parse({ ...base, ...change })).toThrow(message)
    expect(() => parse({ ...base, ...change })).toThrow(expect.objectContaining({ code: 'config-invalid' }))
  })
})

describe('the admin token', () => {
  const tmp = tempDirForFile('allmende-token-')
  let n = 0
  const home = async () => {
    const dir = join(tmp(), `home-${n++}`)
    await mkdir(dir)
    return dir
  }
  const tokenPath = (dir: string) => join(dir, FILES.token)

  it(`is refused when empty or shorter than ${MIN_TOKEN_CHARS} characters, saying how to make a new one`, () => {
    const codeFor = (text: string) => {
      try {
        return checkToken(text, 'HOME/api.token', 'HOME')
      } catch (e) {
        expect((e as Error).message).toContain('allmende node token --rotate --home HOME')
        return (e as { code: string }).code
      }
    }
    expect(codeFor('')).toBe('token-empty')
    expect(codeFor(' \n\t ')).toBe('token-empty')
    expect(codeFor('x'.repeat(MIN_TOKEN_CHARS - 1))).toBe('token-too-short')
    expect(codeFor(`${'x'.repeat(MIN_TOKEN_CHARS)}\n`)).toBe('x'.repeat(MIN_TOKEN_CHARS))
  })

  it('is made on first use, never replaced when it is short, and rotated whole (0600, 43 characters)', async () => {
    const dir = await home()
    const made = await adminToken(dir)
    expect(made).toHaveLength(43)
    expect(await adminToken(dir)).toBe(made)
    await writeFile(tokenPath(dir), 'short\n', { mode: 0o600 })
    expect(await codeOf(adminToken(dir))).toBe('token-too-short')
    expect(await readFile(tokenPath(dir), 'utf8')).toBe('short\n')
    const rotated = await rotateToken(dir)
    expect(rotated.path).toBe(tokenPath(dir))
    expect(rotated.token).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect((await stat(tokenPath(dir))).mode & 0o777).toBe(0o600)
    expect(await adminToken(dir)).toBe(rotated.token)
    expect((await rotateToken(dir)).token).not.toBe(rotated.token)
  })

  it('is read again by a running node when the file changes, and is undefined while it is not valid', async () => {
    const dir = await home()
    const first = await adminToken(dir)
    const problems: string[] = []
    const current = tokenSource(dir, (e) => problems.push((e as { code?: string }).code ?? 'error'))
    expect(current()).toBe(first)
    const { token: second } = await rotateToken(dir)
    expect(current()).toBe(second)
    await writeFile(tokenPath(dir), '', { mode: 0o600 })
    expect(current()).toBeUndefined()
    await writeFile(tokenPath(dir), 'y'.repeat(40))
    await chmod(tokenPath(dir), 0o644)
    expect(current()).toBeUndefined()
    expect(problems).toEqual(['token-empty', 'token-permissions'])
  })
})
