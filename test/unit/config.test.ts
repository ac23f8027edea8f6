/**
 * The node's config file (node/config.ts): what it accepts, and one clear `config-invalid`
 * message per mistake an operator can make by hand.
 */
import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../node/config.js'

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
})
