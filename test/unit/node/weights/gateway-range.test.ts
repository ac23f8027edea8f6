/**
 * entity-bytes as the gateway reads it (node/weights/gateway-range.ts): the parse, the range
 * resolved against a file's size as the spec and the reference gateway (boxo) read it, and which
 * links of a file node hold the range, a node with data of its own included.
 */
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { GatewayError, WalkError } from '../../../../node/weights/gateway-errors.js'
import {
  fileSize,
  linksInSpan,
  parseEntityBytes,
  resolveEntityBytes,
} from '../../../../node/weights/gateway-range.js'

function refusal(f: () => unknown): { status: number; code: string; message: string } {
  try {
    f()
  } catch (e) {
    if (e instanceof GatewayError) return { status: e.status, code: e.code, message: e.message }
    throw e
  }
  throw new Error('not refused')
}

const leafCid = async (n: number) => CID.createV1(raw.code, await sha256.digest(new Uint8Array([n])))

describe('entity-bytes', () => {
  it('parses offsets, * and negative numbers', () => {
    expect(parseEntityBytes('0:*')).toEqual({ from: 0, to: '*' })
    expect(parseEntityBytes('101:202')).toEqual({ from: 101, to: 202 })
    expect(parseEntityBytes('-1024:*')).toEqual({ from: -1024, to: '*' })
    expect(parseEntityBytes('499:-1000')).toEqual({ from: 499, to: -1000 })
    expect(parseEntityBytes('-101:-5')).toEqual({ from: -101, to: -5 })
    expect(parseEntityBytes('-0:*')).toEqual({ from: 0, to: '*' })
    expect(parseEntityBytes('0:0')).toEqual({ from: 0, to: 0 })
    // A positive from with a negative to, or the other way round: known only against the size.
    expect(parseEntityBytes('-10:5')).toEqual({ from: -10, to: 5 })
  })

  it('refuses what names no bytes with 400 bad-entity-bytes, saying how to ask', () => {
    for (const text of [
      '',
      '0',
      ':2000',
      '0:',
      '*:*',
      'aaa:123',
      '123:bbb',
      '1234:123:123',
      '1.5:9',
      ' 1:2',
      '+1:2',
      '10000:500',
      '-1000:-2000',
      '99999999999999999:*',
    ]) {
      const r = refusal(() => parseEntityBytes(text))
      expect(r.status, text).toBe(400)
      expect(r.code, text).toBe('bad-entity-bytes')
      expect(r.message, text).toContain('from:to')
    }
  })

  it('resolves a range against the size, clamping what runs past either end', () => {
    const at = (text: string, size: number) => resolveEntityBytes(parseEntityBytes(text), size)
    expect(at('0:*', 100)).toEqual({ start: 0, end: 100 })
    expect(at('10:19', 100)).toEqual({ start: 10, end: 20 })
    expect(at('99:99', 100)).toEqual({ start: 99, end: 100 })
    expect(at('50:1000', 100)).toEqual({ start: 50, end: 100 })
    expect(at('-10:*', 100)).toEqual({ start: 90, end: 100 })
    expect(at('-1000:*', 100)).toEqual({ start: 0, end: 100 })
    expect(at('-10:94', 100)).toEqual({ start: 90, end: 95 })
    // A negative to ends before the last -to bytes (boxo): 0:-1 is all but the last byte.
    expect(at('0:-1', 100)).toEqual({ start: 0, end: 99 })
    expect(at('10:-10', 100)).toEqual({ start: 10, end: 90 })
    // No bytes: null (the root alone is sent).
    expect(at('0:-100', 100)).toBeNull()
    expect(at('50:-60', 100)).toBeNull()
    expect(at('0:*', 0)).toBeNull()
    expect(at('-5:*', 0)).toBeNull()
    expect(at('-10:80', 100)).toBeNull()
  })

  it('refuses a from at or past the end with 400 entity-bytes-out-of-range, naming the size', () => {
    for (const text of ['100:*', '100:200', '5000:-1']) {
      const r = refusal(() => resolveEntityBytes(parseEntityBytes(text), 100))
      expect(r.status, text).toBe(400)
      expect(r.code, text).toBe('entity-bytes-out-of-range')
      expect(r.message, text).toContain('100 bytes')
    }
  })

  it('finds the links of a file node that hold the range; the edges carry their offset', async () => {
    const leaves = await Promise.all([1, 2, 3, 4].map(leafCid))
    // 10 bytes of the node's own data, then leaves of 10, 0, 10 and 10 bytes.
    const fs = new UnixFS({ type: 'file', data: new Uint8Array(10), blockSizes: [10n, 0n, 10n, 10n] })
    const node: dagPb.PBNode = { Data: fs.marshal(), Links: leaves.map((Hash) => ({ Hash, Tsize: 10 })) }
    const decoded = UnixFS.unmarshal(node.Data!)
    const links = (start: number, end: number, at = 0) =>
      linksInSpan(leaves[0]!, node, decoded, at, { start, end }).map((l) => ({
        n: leaves.findIndex((c) => c.equals(l.cid)),
        ...(l.at === undefined ? {} : { at: l.at }),
      }))
    // The node's own data only: no link.
    expect(links(0, 10)).toEqual([])
    // The first leaf whole; the empty leaf holds no byte and is left out.
    expect(links(10, 20)).toEqual([{ n: 0 }])
    expect(links(5, 25)).toEqual([{ n: 0 }, { n: 2, at: 20 }])
    expect(links(5, 31)).toEqual([{ n: 0 }, { n: 2 }, { n: 3, at: 30 }])
    expect(links(19, 40)).toEqual([{ n: 0, at: 10 }, { n: 2 }, { n: 3 }])
    // Offsets are the file's: a node whose bytes begin at 1000.
    expect(links(1035, 1036, 1000)).toEqual([{ n: 3, at: 1030 }])
    expect(links(1040, 2000, 1000)).toEqual([])
  })

  it('refuses a file node whose block sizes do not match its links', async () => {
    const fs = new UnixFS({ type: 'file', blockSizes: [10n] })
    const cid = await leafCid(9)
    const node: dagPb.PBNode = { Data: fs.marshal(), Links: [] }
    expect(() => linksInSpan(cid, node, UnixFS.unmarshal(node.Data!), 0, { start: 0, end: 1 })).toThrow(
      WalkError,
    )
  })

  it('knows a file by its UnixFS type or raw codec, and nothing else as one', async () => {
    const file = dagPb.encode({
      Data: new UnixFS({ type: 'file', blockSizes: [7n, 5n] }).marshal(),
      Links: [],
    })
    const dir = dagPb.encode({ Data: new UnixFS({ type: 'directory' }).marshal(), Links: [] })
    const pb = async (bytes: Uint8Array) => CID.createV1(dagPb.code, await sha256.digest(bytes))
    expect(fileSize(await pb(file), file)).toBe(12)
    expect(fileSize(await pb(dir), dir)).toBeNull()
    expect(fileSize(await leafCid(1), new Uint8Array(33))).toBe(33)
    expect(
      fileSize(CID.parse('bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'), new Uint8Array(1)),
    ).toBeNull()
    const notPb = new Uint8Array([0xff, 0xff])
    expect(fileSize(await pb(notPb), notPb)).toBeNull()
  })
})
