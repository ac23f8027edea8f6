/**
 * `POST /holdings/bindings` under the API's bad-signature throttle (node/auth-throttle.ts,
 * docs/adr/0029-holding-announcements.md): a binding forged under a member's DID costs the node a
 * signature check, so after 20 from one address that address is told to wait (429) before any
 * more are checked, its well-signed ones too; another address is not held up. A stranger's
 * binding is refused before its signature is checked, so it costs nothing and counts nothing.
 */
import { request } from 'node:http'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initHome } from '../../node/config.js'
import { signBinding } from '../../node/holdings/binding.js'
import { type AllmendeNode, startNode } from '../../node/index.js'
import { silentLogger } from '../../node/log.js'
import { createSigner } from '../../protocol/index.js'
import { rawBinding, testPeer } from '../support/holdings.js'
import { Simulator } from '../support/simulator.js'
import { tempDirForFile } from '../support/temp-dir.js'

const sim = new Simulator({
  members: [
    { name: 'm', roles: ['steward', 'voter'], weight: 1 },
    { name: 'n', roles: ['voter'], weight: 1 },
  ],
  base: Date.now(),
  name: 'holdings-throttle',
})
const scratch = tempDirForFile('allmende-holdings-throttle-')
/** The throttle's burst (auth-throttle.ts default): failures an address may have at once. */
const BURST = 20

let node: AllmendeNode
let peer: string

beforeAll(async () => {
  const home = join(scratch(), 'node')
  const config = await initHome(home, {
    genesis: sim.genesis,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    api: '127.0.0.1:0',
    logLevel: 'warn',
  })
  // The node's clock stands still, so no failure is earned back while the test sends them.
  const now = Date.now()
  node = await startNode({
    home,
    config,
    genesis: sim.genesis,
    log: silentLogger,
    helia: false,
    clock: () => now,
  })
  peer = (await testPeer()).id
}, 60_000)

afterAll(async () => {
  await node?.stop()
})

/** POST a binding from a given loopback address; the status and error code. */
function post(from: string, body: Uint8Array): Promise<{ status: number; code?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(new URL('/holdings/bindings', node.apiUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/cbor' },
      localAddress: from,
    })
    req.on('error', reject)
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        const error = (JSON.parse(text || '{}') as { error?: { code?: string } }).error
        resolve({ status: res.statusCode ?? 0, ...(error?.code ? { code: error.code } : {}) })
      })
    })
    req.end(body)
  })
}

/** A binding naming member `name`, signed with `by`'s key, at `at`. */
function bindingOf(name: string, at: number, by = sim.signer(name)): Uint8Array {
  return rawBinding({ federation: sim.federation, member: sim.did(name), peers: [peer], at }, by)
}

describe('POST /holdings/bindings from one address', () => {
  it(`refuses the ${BURST + 1}th forged binding of a member unchecked, and the same address's honest one, not another address's`, async () => {
    const forged = bindingOf('m', Date.now(), sim.signer('n'))
    for (let i = 0; i < BURST; i++)
      expect(await post('127.0.0.2', forged)).toEqual({ status: 400, code: 'binding-signature' })
    expect(await post('127.0.0.2', forged)).toEqual({ status: 429, code: 'too-many-bad-signatures' })
    const honest = signBinding(
      { federation: sim.federation, member: sim.did('m'), peers: [peer], at: Date.now() },
      sim.signer('m'),
    )
    expect(await post('127.0.0.2', honest)).toEqual({ status: 429, code: 'too-many-bad-signatures' })
    expect(await post('127.0.0.1', honest)).toEqual({ status: 201 })
  })

  it('does not count bindings of strangers: refused before their signature is checked', async () => {
    const stranger = createSigner(new Uint8Array(32).fill(9))
    const strangers = rawBinding(
      { federation: sim.federation, member: stranger.did, peers: [peer], at: Date.now() },
      sim.signer('n'),
    )
    for (let i = 0; i < BURST + 5; i++)
      expect(await post('127.0.0.3', strangers)).toEqual({ status: 403, code: 'binding-not-member' })
    expect(await post('127.0.0.3', bindingOf('n', Date.now()))).toEqual({ status: 201 })
  })
})
