/**
 * Live settings (node/config-live.ts): a value is checked as the start-up parser would, written
 * atomically beside the operator's other settings, applied, and told to listeners; changes run
 * one at a time; a broken file is not overwritten.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { type NodeConfig, parseConfig } from '../../../node/config.js'
import { createLiveConfig } from '../../../node/config-live.js'
import { isNodeError } from '../../../node/errors.js'
import { tempDirForFile } from '../../support/temp-dir.js'

const root = tempDirForFile('allmende-config-live-')
const FEDERATION = 'bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'

async function home(
  name: string,
  extra: Record<string, unknown> = {},
): Promise<{ dir: string; config: NodeConfig }> {
  const dir = join(root(), name)
  const raw = {
    version: 1,
    federation: FEDERATION,
    listen: [],
    bootstrap: [],
    api: '127.0.0.1:7070',
    ...extra,
  }
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'config.json'), JSON.stringify(raw))
  return { dir, config: parseConfig(JSON.stringify(raw), 'test') }
}

const onDisk = async (dir: string) => JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'))

describe('createLiveConfig', () => {
  it('checks, persists beside the other settings, applies and tells', async () => {
    const { dir, config } = await home('apply', { importRoots: ['/srv/models'] })
    const live = createLiveConfig(dir, config)
    const told: string[] = []
    live.onChange((c, key) => told.push(`${key}=${JSON.stringify(c[key])}`))
    await live.set('mirror', ['occiglot/*'])
    expect(live.current().mirror).toEqual(['occiglot/*'])
    expect(await onDisk(dir)).toMatchObject({ importRoots: ['/srv/models'], mirror: ['occiglot/*'] })
    await live.set('mirror', null)
    expect(live.current().mirror).toBeUndefined()
    expect('mirror' in (await onDisk(dir))).toBe(false)
    expect(told).toEqual(['mirror=["occiglot/*"]', 'mirror=undefined'])
  })

  it('refuses a value the config would refuse, and changes nothing', async () => {
    const { dir, config } = await home('refuse')
    const live = createLiveConfig(dir, config)
    const error = await live.set('holdingRenewMs', 999).catch((e: unknown) => e)
    expect(isNodeError(error) && error.code).toBe('config-invalid')
    expect(isNodeError(error) && error.status).toBe(400)
    expect(live.current().holdingRenewMs).toBeUndefined()
    expect('holdingRenewMs' in (await onDisk(dir))).toBe(false)
  })

  it('runs changes one at a time: both land', async () => {
    const { dir, config } = await home('turns')
    const live = createLiveConfig(dir, config)
    await Promise.all([
      live.set('minHolders', 5),
      live.set('scrubBytesPerSecond', 1024),
      live.set('minHolders', 7),
    ])
    expect(await onDisk(dir)).toMatchObject({ minHolders: 7, scrubBytesPerSecond: 1024 })
    expect(live.current()).toMatchObject({ minHolders: 7, scrubBytesPerSecond: 1024 })
  })

  it('does not overwrite a config.json that is no JSON object any more', async () => {
    const { dir, config } = await home('broken')
    await writeFile(join(dir, 'config.json'), '{ "version": 1, ')
    const live = createLiveConfig(dir, config)
    const error = await live.set('minHolders', 4).catch((e: unknown) => e)
    expect(isNodeError(error) && `${error.status} ${error.code}`).toBe('409 config-invalid')
    expect(await readFile(join(dir, 'config.json'), 'utf8')).toBe('{ "version": 1, ')
    // The next change is not stuck behind the failed one.
    await writeFile(join(dir, 'config.json'), JSON.stringify({ version: 1, federation: FEDERATION }))
    await live.set('minHolders', 4)
    expect(live.current().minHolders).toBe(4)
  })
})
