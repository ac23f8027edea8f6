import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { keepTrust, readTrust, trustPath } from '../../../cli/trust-marks.js'
import { MAX_CLOCK_SKEW_MS } from '../../../protocol/index.js'
import { tempDirForFile } from '../../support/temp-dir.js'

const home = tempDirForFile('allmende-trust-mark-')
// keepTrust reads the kept mark with the real clock, so the marks here are placed around it.
const NOW = Date.now()

async function writeMark(federation: string, mark: { height: number; epoch: number }) {
  const path = trustPath(federation, home())
  await mkdir(join(path, '..'), { recursive: true })
  await writeFile(path, `${JSON.stringify(mark)}\n`)
}

describe('the kept trust mark', () => {
  it('is read as kept when its epoch is at most now + the clock skew', async () => {
    await writeMark('fed-a', { height: 3, epoch: NOW + MAX_CLOCK_SKEW_MS })
    expect(await readTrust('fed-a', home(), NOW)).toEqual({ height: 3, epoch: NOW + MAX_CLOCK_SKEW_MS })
  })

  it('kept by an older version from a future-dated checkpoint: its height stays, its epoch does not', async () => {
    await writeMark('fed-b', { height: 3, epoch: NOW + MAX_CLOCK_SKEW_MS + 60_000 })
    expect(await readTrust('fed-b', home(), NOW)).toEqual({ height: 3, epoch: 0 })
    // An honest checkpoint of the same height is kept over it; a lower height never is.
    await keepTrust('fed-b', { height: 2, epoch: NOW }, home())
    expect(await readTrust('fed-b', home(), NOW)).toEqual({ height: 3, epoch: 0 })
    await keepTrust('fed-b', { height: 3, epoch: NOW - 60_000 }, home())
    expect(await readTrust('fed-b', home(), NOW)).toEqual({ height: 3, epoch: NOW - 60_000 })
  })
})
