/**
 * node/p2p.ts with real libp2p nodes on 127.0.0.1 TCP in one process:
 * gossip along a line, best-effort publishing, validator verdicts and peer
 * scores, content-hash message ids, peer keys, bootstrap re-dial, bitswap.
 * Every wait is bounded; every node is stopped in afterEach.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { FsBlockstore } from 'blockstore-fs'
import { LevelDatastore } from 'datastore-level'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterEach, describe, expect, it } from 'vitest'
import {
  createP2P,
  generatePeerKey,
  type LogLevel,
  type P2P,
  type P2POptions,
  peerKeyFromBytes,
  peerKeyToBytes,
  topicFor,
  type Verdict,
} from '../../node/p2p.js'
import { until } from '../support/until.js'

const TOPIC = topicFor('bafyreitestfederation')
const LISTEN = ['/ip4/127.0.0.1/tcp/0']
const text = new TextEncoder()
const untext = new TextDecoder()

interface TestNode {
  p2p: P2P
  id: string
  received: { data: string; from: string }[]
  validated: { data: string; from: string }[]
  logs: { level: LogLevel; event: string; fields?: object }[]
}

const running: P2P[] = []

afterEach(async () => {
  await Promise.allSettled(running.splice(0).map((p) => p.stop()))
})

interface StartOptions extends Partial<Omit<P2POptions, 'validate' | 'onMessage' | 'log'>> {
  validate?: (data: string, from: string) => Verdict
}

async function start(options: StartOptions = {}): Promise<TestNode> {
  const { validate, ...rest } = options
  const received: TestNode['received'] = []
  const validated: TestNode['validated'] = []
  const logs: TestNode['logs'] = []
  const p2p = await createP2P({
    listen: LISTEN,
    bootstrap: [],
    topic: TOPIC,
    helia: false,
    ...rest,
    validate: (bytes, from) => {
      const data = untext.decode(bytes)
      validated.push({ data, from })
      return validate ? validate(data, from) : 'accept'
    },
    onMessage: (bytes, from) => {
      received.push({ data: untext.decode(bytes), from })
    },
    log: (level, event, fields) => {
      logs.push({ level, event, ...(fields ? { fields } : {}) })
    },
  })
  running.push(p2p)
  return { p2p, id: p2p.peerId, received, validated, logs }
}

function addr(node: TestNode): string {
  const a = node.p2p.addresses().find((ma) => ma.startsWith('/ip4/127.0.0.1/tcp/'))
  if (a == null) throw new Error('no loopback address')
  return a
}

/** Waits until `node`'s topic mesh holds every one of `peers`. */
async function meshed(node: TestNode, ...peers: TestNode[]): Promise<void> {
  await until(
    () => peers.every((p) => node.p2p.meshPeers().includes(p.id)),
    `mesh of ${node.id} holds ${peers.map((p) => p.id).join(', ')}`,
  )
}

async function subscribed(node: TestNode, ...peers: TestNode[]): Promise<void> {
  await until(
    () => peers.every((p) => node.p2p.subscribers().includes(p.id)),
    `${node.id} sees subscribers ${peers.map((p) => p.id).join(', ')}`,
  )
}

function has(node: TestNode, data: string): boolean {
  return node.received.some((m) => m.data === data)
}

describe('p2p: helpers', () => {
  it('topicFor names the federation records topic', () => {
    expect(topicFor('bafyabc')).toBe('allmende/bafyabc/records/1')
  })

  it('peer keys round-trip through bytes and keep the peer id across restarts', async () => {
    const key = await generatePeerKey()
    const bytes = peerKeyToBytes(key)
    expect(bytes).toBeInstanceOf(Uint8Array)
    const back = peerKeyFromBytes(bytes)
    expect(back.equals(key)).toBe(true)

    const first = await start({ peerKey: peerKeyFromBytes(bytes) })
    const id = first.id
    await first.p2p.stop()
    const second = await start({ peerKey: peerKeyFromBytes(bytes) })
    expect(second.id).toBe(id)
    expect(second.p2p.addresses().every((a) => a.endsWith(`/p2p/${id}`))).toBe(true)

    const other = await start()
    expect(other.id).not.toBe(id)

    const secp = await generateKeyPair('secp256k1')
    expect(() => peerKeyFromBytes(peerKeyToBytes(secp))).toThrow(TypeError)
  })
})

describe('p2p: gossip', () => {
  it('A–B–C in a line: a message published at A reaches C via B, once per node', async () => {
    const a = await start({ helia: true })
    const b = await start({ helia: true, bootstrap: [addr(a)] })
    const c = await start({ helia: true, bootstrap: [addr(b)] })
    await subscribed(a, b)
    await subscribed(c, b)
    await meshed(b, a, c)
    expect(a.p2p.peers().map((p) => p.id)).toEqual([b.id])
    expect(c.p2p.peers().map((p) => p.id)).toEqual([b.id])

    const sent = await a.p2p.publish(text.encode('hello'))
    expect(sent.delivered).toBe(1)
    await until(() => has(c, 'hello'), 'C receives hello')
    // A second message flushes the B→C stream: anything duplicated would be there by now.
    await a.p2p.publish(text.encode('flush'))
    await until(() => has(c, 'flush'), 'C receives flush')

    expect(b.received).toEqual([
      { data: 'hello', from: a.id },
      { data: 'flush', from: a.id },
    ])
    expect(c.received).toEqual([
      { data: 'hello', from: b.id },
      { data: 'flush', from: b.id },
    ])
    expect(a.received).toEqual([])
    expect(b.validated.filter((v) => v.data === 'hello')).toEqual([{ data: 'hello', from: a.id }])
    expect(c.validated.filter((v) => v.data === 'hello')).toEqual([{ data: 'hello', from: b.id }])
  })

  it('publish with no peers resolves {delivered: 0}; the same bytes go out once a peer is there', async () => {
    const a = await start()
    await expect(a.p2p.publish(text.encode('lonely'))).resolves.toEqual({ delivered: 0 })

    const b = await start({ bootstrap: [addr(a)] })
    await subscribed(a, b)
    // Not stuck in the seen-cache: the earlier publish never left the node.
    await expect(a.p2p.publish(text.encode('lonely'))).resolves.toEqual({ delivered: 1 })
    await until(() => has(b, 'lonely'), 'B receives the re-published message')
  })

  it('rejected messages are not forwarded and lower the sender’s score below 0', async () => {
    const a = await start()
    const b = await start({
      bootstrap: [addr(a)],
      validate: (_data, from) => (from === a.id ? 'reject' : 'accept'),
    })
    const c = await start({ bootstrap: [addr(b)] })
    await subscribed(a, b)
    await meshed(b, a, c)
    expect(b.p2p.score(a.id)).toBeGreaterThanOrEqual(0)

    for (let i = 0; i < 20; i++) await a.p2p.publish(text.encode(`bad ${i}`))
    await until(() => b.p2p.score(a.id) < 0, 'score of A at B drops below 0')
    expect(b.validated.length).toBeGreaterThan(0)
    expect(b.validated.every((v) => v.from === a.id && v.data.startsWith('bad '))).toBe(true)

    // B's own message to C flushes the B→C stream: nothing of A's came before it.
    await b.p2p.publish(text.encode('sentinel'))
    await until(() => has(c, 'sentinel'), 'C receives the sentinel')
    expect(c.received).toEqual([{ data: 'sentinel', from: b.id }])
    expect(b.received).toEqual([])
    expect(b.p2p.score(c.id)).toBeGreaterThanOrEqual(0)
  })

  it('a validator that throws counts as ignore: nothing is delivered, nobody is penalised, nothing crashes', async () => {
    const a = await start()
    const b = await start({
      bootstrap: [addr(a)],
      validate: (data) => {
        if (data.startsWith('boom')) throw new Error('validator bug')
        return 'accept'
      },
    })
    await subscribed(a, b)

    await a.p2p.publish(text.encode('boom 1'))
    await a.p2p.publish(text.encode('boom 2'))
    await a.p2p.publish(text.encode('fine'))
    await until(() => has(b, 'fine'), 'B receives fine')
    expect(b.received).toEqual([{ data: 'fine', from: a.id }])
    expect(b.logs.filter((l) => l.event === 'gossip-validator-threw')).toHaveLength(2)
    expect(b.p2p.score(a.id)).toBeGreaterThanOrEqual(0)
  })

  it('message ids are content hashes: the same bytes are delivered once, whoever publishes them', async () => {
    const b = await start()
    const a = await start({ bootstrap: [addr(b)] })
    const c = await start({ bootstrap: [addr(b)] })
    await subscribed(b, a, c)
    await subscribed(a, b)
    await subscribed(c, b)

    expect((await a.p2p.publish(text.encode('same'))).delivered).toBe(1)
    expect(await a.p2p.publish(text.encode('same'))).toEqual({ delivered: 0 })
    await until(() => has(b, 'same'), 'B receives same')
    await c.p2p.publish(text.encode('same'))
    await a.p2p.publish(text.encode('after a'))
    await c.p2p.publish(text.encode('after c'))
    await until(() => has(b, 'after a') && has(b, 'after c'), 'B receives both sentinels')

    expect(b.received.filter((m) => m.data === 'same')).toHaveLength(1)
    expect(b.validated.filter((v) => v.data === 'same')).toHaveLength(1)
  })
})

describe('p2p: connections', () => {
  it('re-dials a bootstrap peer after a disconnect; bad bootstrap entries are logged, not thrown', async () => {
    const a = await start()
    const missing = (await start()).p2p
    const missingAddr = missing.addresses()[0]!
    await missing.stop()
    const b = await start({
      bootstrap: [addr(a), missingAddr, 'not a multiaddr', '/ip4/127.0.0.1/tcp/9'],
      redial: { initialMs: 100, maxMs: 400 },
    })
    await until(() => b.p2p.peers().some((p) => p.id === a.id), 'B connects to A')
    const connects = () => b.logs.filter((l) => l.event === 'bootstrap-connected').length
    expect(connects()).toBe(1)

    await b.p2p.hangUp(a.id)
    await until(() => connects() === 2 && b.p2p.peers().some((p) => p.id === a.id), 'B re-dials A')
    await until(
      () => b.logs.some((l) => l.event === 'bootstrap-dial-failed'),
      'failed dial to the stopped peer is logged',
    )
    expect(b.logs.some((l) => l.event === 'bootstrap-bad-multiaddr')).toBe(true)
    expect(b.logs.some((l) => l.event === 'bootstrap-no-peer-id')).toBe(true)

    // dial and hangUp by hand
    const c = await start()
    await b.p2p.dial(addr(c))
    expect(b.p2p.peers().map((p) => p.id)).toContain(c.id)
    await b.p2p.hangUp(c.id)
    await until(() => !b.p2p.peers().some((p) => p.id === c.id), 'B hangs up on C')
  })
})

describe('p2p: helia', () => {
  it('a block put on A is fetched by B over bitswap', async () => {
    const a = await start({ helia: true })
    const b = await start({ helia: true, bootstrap: [addr(a)] })
    const ha = a.p2p.helia
    const hb = b.p2p.helia
    if (ha == null || hb == null) throw new Error('helia missing')
    expect(ha.libp2p).toBe(a.p2p.libp2p)
    await until(() => b.p2p.peers().some((p) => p.id === a.id), 'B connects to A')

    const bytes = text.encode('a small raw block for bitswap')
    const cid = CID.createV1(raw.code, await sha256.digest(bytes))
    await ha.blockstore.put(cid, bytes)

    const chunks: Uint8Array[] = []
    for await (const chunk of hb.blockstore.get(cid, { signal: AbortSignal.timeout(10_000) }))
      chunks.push(chunk)
    expect(untext.decode(Buffer.concat(chunks))).toBe('a small raw block for bitswap')
    expect(await hb.blockstore.has(cid)).toBe(true)
  })

  it('uses the stores it is given, and leaves them open after stop', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'allmende-p2p-'))
    const blockstore = new FsBlockstore(join(dir, 'blocks'))
    const datastore = new LevelDatastore(join(dir, 'data'))
    await blockstore.open()
    await datastore.open()
    try {
      const key = await generatePeerKey()
      const bytes = text.encode('persisted block')
      const cid = CID.createV1(raw.code, await sha256.digest(bytes))
      const first = await start({ helia: true, peerKey: key, blockstore, datastore })
      await first.p2p.helia?.blockstore.put(cid, bytes)
      await first.p2p.stop()
      // Still open: the node closes nothing it did not open.
      expect(await blockstore.has(cid)).toBe(true)

      const second = await start({ helia: true, peerKey: key, blockstore, datastore })
      expect(second.id).toBe(first.id)
      const chunks: Uint8Array[] = []
      const hb = second.p2p.helia!
      for await (const chunk of hb.blockstore.get(cid, {
        offline: true,
        signal: AbortSignal.timeout(2_000),
      })) {
        chunks.push(chunk)
      }
      expect(untext.decode(Buffer.concat(chunks))).toBe('persisted block')
      await second.p2p.stop()
    } finally {
      await blockstore.close()
      await datastore.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
