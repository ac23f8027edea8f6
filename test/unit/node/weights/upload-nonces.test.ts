/**
 * The nonce file of upload statements (node/weights/upload-nonces.ts) on a real file: a nonce is taken
 * once, kept across a reopen while its statement can be fresh and forgotten after; the live set
 * is bounded (one more than the cap is refused, not forgotten); a torn last entry and entries no
 * window allows are dropped on open; the file is rewritten before it grows past twice the cap.
 */
import { randomBytes } from 'node:crypto'
import { appendFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { openUploadNonces } from '../../../../node/weights/upload-nonces.js'
import { tempDirForFile } from '../../../support/temp-dir.js'

const WINDOW = 10 * 60_000
const dir = tempDirForFile('allmende-upload-nonces-')
const nonce = () => new Uint8Array(randomBytes(16))
let files = 0
const fresh = () => join(dir(), `nonces-${files++}`)

describe('upload nonces', () => {
  it('takes a nonce once, also after a reopen, and forgets it once its window has passed', async () => {
    const path = fresh()
    let now = 1_767_225_600_000
    const clock = () => now
    const first = await openUploadNonces(path, { clock, windowMs: WINDOW })
    const n = nonce()
    await first.take(n, now)
    expect(first.has(n)).toBe(true)
    await expect(first.take(n, now)).rejects.toMatchObject({ code: 'upload-replayed', status: 401 })
    await first.close()

    const reopened = await openUploadNonces(path, { clock, windowMs: WINDOW })
    expect(reopened.has(n)).toBe(true)
    await expect(reopened.take(n, now)).rejects.toMatchObject({ code: 'upload-replayed' })
    await reopened.close()

    // Past `at + window` the statement is stale anyway: the nonce is dropped on the next open.
    now += WINDOW + 1
    const later = await openUploadNonces(path, { clock, windowMs: WINDOW })
    expect(later.has(n)).toBe(false)
    await later.close()
    expect((await stat(path)).size).toBe(0)
  })

  it('a second take of the same nonce is refused before the first is on disk', async () => {
    const nonces = await openUploadNonces(fresh(), { clock: Date.now, windowMs: WINDOW })
    const n = nonce()
    const first = nonces.take(n, Date.now())
    await expect(nonces.take(n, Date.now())).rejects.toMatchObject({ code: 'upload-replayed' })
    await first
    await nonces.close()
  })

  it('holds at most maxEntries live nonces: one more is refused until some expire', async () => {
    let now = 1_767_225_600_000
    const nonces = await openUploadNonces(fresh(), { clock: () => now, windowMs: WINDOW, maxEntries: 3 })
    for (let i = 0; i < 3; i++) await nonces.take(nonce(), now)
    await expect(nonces.take(nonce(), now)).rejects.toMatchObject({
      code: 'upload-replay-cache-full',
      status: 503,
    })
    now += WINDOW + 1
    await nonces.take(nonce(), now)
    await nonces.close()
  })

  it('drops a torn last entry and entries no window allows when it opens', async () => {
    const path = fresh()
    const now = 1_767_225_600_000
    const kept = nonce()
    const first = await openUploadNonces(path, { clock: () => now, windowMs: WINDOW })
    await first.take(kept, now)
    await first.close()
    // An entry expiring a day ahead (a damaged file), then half an entry (a crash mid-append).
    const farAhead = Buffer.alloc(24)
    farAhead.writeBigUInt64BE(BigInt(now + 24 * 60 * 60_000), 0)
    await appendFile(path, farAhead)
    await appendFile(path, Buffer.alloc(11, 0xff))
    const reopened = await openUploadNonces(path, { clock: () => now, windowMs: WINDOW })
    expect(reopened.has(kept)).toBe(true)
    expect(reopened.has(new Uint8Array(16))).toBe(false)
    await reopened.close()
    expect((await stat(path)).size).toBe(24)
  })

  it('rewrites the file before it holds more than twice maxEntries entries', async () => {
    const path = fresh()
    let now = 1_767_225_600_000
    const nonces = await openUploadNonces(path, { clock: () => now, windowMs: WINDOW, maxEntries: 4 })
    const taken: Uint8Array[] = []
    for (let i = 0; i < 20; i++) {
      const n = nonce()
      taken.push(n)
      await nonces.take(n, now)
      // Each nonce outlives the next three takes only: four are live at a time.
      now += WINDOW / 4 + 1
      expect((await stat(path)).size).toBeLessThanOrEqual(2 * 4 * 24)
    }
    await nonces.close()
    const reopened = await openUploadNonces(path, { clock: () => now, windowMs: WINDOW, maxEntries: 4 })
    expect(taken.filter((n) => reopened.has(n)).length).toBeLessThanOrEqual(4)
    expect(reopened.has(taken.at(-1)!)).toBe(true)
    await reopened.close()
  })

  it('starts on a file that does not exist yet and one left empty', async () => {
    const path = fresh()
    await writeFile(path, '')
    const nonces = await openUploadNonces(path, { clock: Date.now, windowMs: WINDOW })
    await nonces.take(nonce(), Date.now())
    await nonces.close()
    expect((await stat(path)).size).toBe(24)
  })
})
