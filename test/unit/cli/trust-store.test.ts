/**
 * The trust store keeps the TrustedHead beside the mark (docs/adr/0026): mark and head in one
 * file, written in one atomic write; a mark kept by an older version, without a head, keeps
 * working; a head that does not decode, or names another checkpoint than the mark, is refused.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { keepTrust, readTrust, trustPath } from '../../../cli/trust-marks.js'
import {
  encodeTrustedHead,
  isTrustedHead,
  MAX_CLOCK_SKEW_MS,
  type TrustedHead,
} from '../../../protocol/index.js'
import { stewardFederation } from '../../support/stewards.js'
import { tempDirForFile } from '../../support/temp-dir.js'

const home = tempDirForFile('allmende-trust-store-')
// keepTrust reads the kept mark with the real clock, so the marks here are placed around it.
const NOW = Date.now()
const sim = stewardFederation({ name: 'trust store', keyPrefix: 'allmende-trust-store-test:', base: NOW })

/** A trusted head at `height`/`epoch`: the genesis's state, with the genesis as its head. */
function trustedHead(height: number, epoch: number): TrustedHead {
  return { height, epoch, head: sim.federation, state: sim.fold.headState() }
}

async function writeFileOf(federation: string, fields: Record<string, unknown>): Promise<void> {
  const path = trustPath(federation, home())
  await mkdir(join(path, '..'), { recursive: true })
  await writeFile(path, `${JSON.stringify(fields)}\n`)
}

describe('the trust store', () => {
  it('keeps mark and head in one file and reads the head back', async () => {
    expect(await keepTrust('fed-a', trustedHead(2, NOW - 60_000), home())).toBe(true)
    const kept = await readTrust('fed-a', home(), NOW)
    expect(isTrustedHead(kept)).toBe(true)
    expect(kept).toMatchObject({ height: 2, epoch: NOW - 60_000 })
    if (!isTrustedHead(kept)) throw new Error('no head')
    expect(kept.head.equals(sim.federation)).toBe(true)
    expect([...kept.state.members.keys()].sort()).toEqual([...sim.fold.headState().members.keys()].sort())
    const file = JSON.parse(await readFile(trustPath('fed-a', home()), 'utf8'))
    expect(Object.keys(file).sort()).toEqual(['epoch', 'height', 'trustedHead'])
    // A lower mark never replaces it; the same checkpoint without its head does not either.
    expect(await keepTrust('fed-a', { height: 1, epoch: NOW }, home())).toBe(false)
    expect(await keepTrust('fed-a', { height: 2, epoch: NOW - 60_000 }, home())).toBe(false)
    expect(isTrustedHead(await readTrust('fed-a', home(), NOW))).toBe(true)
  })

  it('an old mark without a head keeps working, and takes the head of the same checkpoint', async () => {
    await writeFileOf('fed-b', { height: 4, epoch: NOW - 1_000 })
    expect(await readTrust('fed-b', home(), NOW)).toEqual({ height: 4, epoch: NOW - 1_000 })
    expect(await keepTrust('fed-b', trustedHead(3, NOW), home())).toBe(false)
    expect(await keepTrust('fed-b', trustedHead(4, NOW - 1_000), home())).toBe(true)
    expect(isTrustedHead(await readTrust('fed-b', home(), NOW))).toBe(true)
  })

  it('a head that does not decode, or is of another checkpoint than the mark, is trust-corrupt', async () => {
    await writeFileOf('fed-c', {
      height: 1,
      epoch: NOW,
      trustedHead: Buffer.from('not cbor').toString('base64'),
    })
    await expect(readTrust('fed-c', home(), NOW)).rejects.toMatchObject({ code: 'trust-corrupt' })
    const other = Buffer.from(encodeTrustedHead(trustedHead(5, NOW))).toString('base64')
    await writeFileOf('fed-d', { height: 1, epoch: NOW, trustedHead: other })
    await expect(readTrust('fed-d', home(), NOW)).rejects.toMatchObject({ code: 'trust-corrupt' })
  })

  it('a future-dated mark keeps its height only, without its head', async () => {
    const ahead = NOW + MAX_CLOCK_SKEW_MS + 60_000
    await writeFileOf('fed-e', {
      height: 3,
      epoch: ahead,
      trustedHead: Buffer.from(encodeTrustedHead(trustedHead(3, ahead))).toString('base64'),
    })
    expect(await readTrust('fed-e', home(), NOW)).toEqual({ height: 3, epoch: 0 })
  })
})
