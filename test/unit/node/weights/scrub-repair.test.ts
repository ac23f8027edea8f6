/**
 * The scrub's repair (node/weights/scrub-repair.ts) against trustless gateways on 127.0.0.1 that
 * misbehave: a damaged block is asked of each source in turn as one raw block; a body over the
 * largest block (2 MiB + 1 byte) and bytes that do not hash to the CID are both refused, and the
 * next source is asked (a block of exactly 2 MiB is taken); with no source sending the block, the repair fails with the fetch's code.
 */
import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import * as dagPb from '@ipld/dag-pb'
import { MemoryBlockstore } from 'blockstore-core'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterEach, describe, expect, it } from 'vitest'
import type { LocalBlockstore } from '../../../../node/weights/fetch-verify.js'
import { MAX_BLOCK_BYTES, unixfsRoot } from '../../../../node/weights/profile.js'
import { repairRoot } from '../../../../node/weights/scrub-repair.js'

const MiB = 1024 * 1024

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes
}

async function read(store: MemoryBlockstore, cid: CID): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const p of store.get(cid)) parts.push(p)
  return Buffer.concat(parts)
}

/** A one-file model of 2.5 MiB; its first leaf. */
async function model(): Promise<{ store: MemoryBlockstore; root: CID; leaf: CID; leafBytes: Uint8Array }> {
  const store = new MemoryBlockstore()
  const bytes = createHash('sha512').update('repair').digest()
  const content = new Uint8Array(2.5 * MiB).map((_, i) => bytes[i % bytes.length]! ^ (i >> 10))
  const root = await unixfsRoot([{ path: 'w.bin', content: once(content) }], store)
  const file = dagPb.decode(await read(store, root)).Links[0]!.Hash
  const leaf = dagPb.decode(await read(store, file)).Links[0]!.Hash
  return { store, root, leaf, leafBytes: await read(store, leaf) }
}

const servers: Server[] = []
afterEach(async () => {
  // Kept-alive connections would hold `close` for the client's idle timeout.
  for (const s of servers) s.closeAllConnections()
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))))
})

/** A gateway answering every raw block request with `body`; its URL and the paths it was asked. */
async function gateway(body: () => Uint8Array): Promise<{ url: string; asked: string[] }> {
  const asked: string[] = []
  const server = createServer((req, res) => {
    asked.push(req.url ?? '')
    if (!req.url?.includes('format=raw')) {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'application/vnd.ipld.raw' }).end(Buffer.from(body()))
  })
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, asked }
}

const options = (store: MemoryBlockstore, sources: string[]) => ({
  blockstore: store as unknown as LocalBlockstore,
  sources: () => sources,
  manifestOf: () => undefined,
  maxModelBytes: () => 64 * MiB,
})

describe('a repair from gateways', () => {
  it('refuses a body over the largest block and bytes of another hash, and takes the next source’s', async () => {
    const { store, root, leaf, leafBytes } = await model()
    await store.delete(leaf)
    const oversize = await gateway(() => new Uint8Array(MAX_BLOCK_BYTES + 1))
    const wrong = await gateway(() => leafBytes.map((b, i) => (i === 0 ? b ^ 1 : b)))
    const right = await gateway(() => leafBytes)
    const outcome = await repairRoot(
      root,
      [leaf],
      options(store, [oversize.url, wrong.url, right.url]),
      new AbortController().signal,
    )
    expect(outcome).toEqual({ ok: true, fromSources: 1, fetched: 0, checked: false })
    for (const g of [oversize, wrong, right]) expect(g.asked).toEqual([`/ipfs/${leaf}?format=raw`])
    expect(Buffer.from(await read(store, leaf)).equals(leafBytes)).toBe(true)
  })

  it('takes a block of exactly the largest size the profile allows, and not one byte more', async () => {
    for (const [size, taken] of [
      [MAX_BLOCK_BYTES, true],
      [MAX_BLOCK_BYTES + 1, false],
    ] as const) {
      const bytes = new Uint8Array(size).fill(3)
      const block = CID.createV1(raw.code, await sha256.digest(bytes))
      const store = new MemoryBlockstore()
      const source = await gateway(() => bytes)
      const outcome = await repairRoot(
        block,
        [block],
        options(store, [source.url]),
        new AbortController().signal,
      )
      expect(outcome.ok, `${size} bytes`).toBe(taken)
      expect(await store.has(block)).toBe(taken)
    }
  })

  it('fails, naming why, when no source sends the block (and no peer is there to ask)', async () => {
    const { store, root, leaf } = await model()
    await store.delete(leaf)
    const wrong = await gateway(() => new Uint8Array(10))
    const outcome = await repairRoot(root, [leaf], options(store, [wrong.url]), new AbortController().signal)
    expect(outcome.ok).toBe(false)
    // The whole DAG was then asked of the source as a CAR (it answered 404).
    expect(wrong.asked.some((p) => p.startsWith(`/ipfs/${root}?format=car`))).toBe(true)
    expect(outcome.ok === false && outcome.error.code).toMatch(/^(block-missing|gateway-refused)$/)
  })
})
