/**
 * What the node does with what strangers may say (docs/adr/0029-holding-announcements.md): the
 * holders' gateways become at most 16 sources, affiliated first, one per host, never
 * link-local; a loopback API is not announced unless set; a deferred peer is asked again after a
 * wait that doubles up to a minute; a scrape builds one report; bindings of former members leave the datastore.
 */
import { Key } from 'interface-datastore'
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { announcedGateways } from '../../../../node/config-weights.js'
import {
  DEFERRED_FIRST_RETRY_MS,
  DEFERRED_MAX_RETRY_MS,
  DeferredPeers,
} from '../../../../node/holdings/deferred.js'
import { createIntake } from '../../../../node/holdings/intake.js'
import { createHoldingsMetrics } from '../../../../node/holdings/metrics.js'
import { bindingWriter, loadBindings } from '../../../../node/holdings/persist.js'
import type { Holder } from '../../../../node/holdings/report.js'
import { holderSources, isLinkLocal, MAX_HOLDER_SOURCES } from '../../../../node/holdings/sources.js'
import { HoldingsStore } from '../../../../node/holdings/store.js'
import { createLogger } from '../../../../node/log.js'
import { createSigner } from '../../../../protocol/index.js'
import { FEDERATION, rawBinding } from '../../../support/holdings.js'
import { fakeClock } from '../../../support/stewards.js'

function holder(peer: string, gateways: string[], verifiedAt: number, member: string | null = null): Holder {
  return { peer, member: member as Holder['member'], name: null, gateways, verifiedAt }
}

describe('holder sources', () => {
  it('are at most 16: the 17th host is left out', () => {
    const holders = Array.from({ length: MAX_HOLDER_SOURCES + 1 }, (_, i) =>
      holder(`p${i}`, [`http://h${i}.example:80`], 100 - i),
    )
    expect(MAX_HOLDER_SOURCES).toBe(16)
    const sources = holderSources(holders)
    expect(sources).toHaveLength(16)
    expect(sources).not.toContain('http://h16.example:80')
  })

  it('put affiliated holders first, then the most recently verified, one URL per host', () => {
    const sources = holderSources([
      holder('a', ['http://old.example:1'], 1),
      holder('b', ['http://new.example:1', 'http://new.example:2'], 9),
      holder('c', ['http://bound.example:1', 'http://old.example:2'], 0, 'did:key:m'),
    ])
    expect(sources).toEqual(['http://bound.example:1', 'http://old.example:2', 'http://new.example:1'])
  })

  it('never name a link-local host, in any spelling', () => {
    const sources = holderSources([
      holder('a', ['http://169.254.169.254:80', 'http://2852039166:80', 'http://[fe80::1]:80'], 9),
      holder('b', ['http://[::ffff:169.254.169.254]:80', 'http://[febf::1]:80', 'http://ok.example:80'], 8),
    ])
    expect(sources).toEqual(['http://ok.example:80'])
    expect(isLinkLocal('169.253.255.255')).toBe(false)
    expect(isLinkLocal('fec0::1')).toBe(false)
  })
})

describe('the announced gateway by default', () => {
  it('is nothing for a loopback or wildcard API, unless announceGateways is set', () => {
    for (const api of [
      '127.0.0.1:7070',
      '127.8.9.10:1',
      '[::1]:7070',
      'localhost:7070',
      'LOCALHOST:1',
      '0.0.0.0:1',
    ])
      expect(announcedGateways({ api })).toEqual([])
    expect(announcedGateways({ api: '128.0.0.1:7070' })).toEqual(['http://128.0.0.1:7070'])
    expect(announcedGateways({ api: '127.0.0.1:7070', announceGateways: ['http://127.0.0.1:7070'] })).toEqual(
      ['http://127.0.0.1:7070'],
    )
  })
})

describe('deferred peers', () => {
  it('are asked again once records arrived, after a wait that doubles up to a minute', () => {
    const clock = fakeClock(0)
    const deferred = new DeferredPeers(clock.fn)
    expect([DEFERRED_FIRST_RETRY_MS, DEFERRED_MAX_RETRY_MS]).toEqual([2_000, 60_000])
    let records = 10
    const waits: number[] = []
    for (let answer = 0; answer < 8; answer++) {
      deferred.answered('p', 1, records)
      records++
      let waited = 0
      while (deferred.due(records).length === 0) {
        clock.set(clock.now() + 1_000)
        waited += 1_000
      }
      waits.push(waited)
    }
    expect(waits).toEqual([2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000])
    // Not before records arrived, and not at all once an answer held nothing deferred.
    deferred.answered('p', 1, records)
    clock.set(clock.now() + DEFERRED_MAX_RETRY_MS)
    expect(deferred.due(records)).toEqual([])
    deferred.answered('p', 0, records)
    expect(deferred.due(records + 1)).toEqual([])
  })
})

describe('a metrics scrape', () => {
  it('builds the replication report once', async () => {
    const registry = new Registry()
    let built = 0
    createHoldingsMetrics(registry, {
      report: () => {
        built++
        return { minHolders: 3, versions: [] }
      },
      liveAnnouncements: () => 0,
    })
    await registry.metrics()
    expect(built).toBe(1)
    await new Promise((resolve) => setImmediate(resolve))
    await registry.metrics()
    expect(built).toBe(2)
  })
})

describe('kept bindings', () => {
  it('of one no longer a member are deleted at start and when pruned', async () => {
    const rows = new Map<string, Uint8Array>()
    const datastore = {
      put: async (key: Key, value: Uint8Array) => rows.set(key.toString(), value),
      delete: async (key: Key) => rows.delete(key.toString()),
      query: ({ prefix }: { prefix: string }) =>
        [...rows].filter(([k]) => k.startsWith(prefix)).map(([k, value]) => ({ key: new Key(k), value })),
    }
    const log = createLogger({ level: 'error', name: 'test', write: () => {} })
    const writer = bindingWriter(datastore, log)
    const former = createSigner(new Uint8Array(32).fill(3))
    const current = createSigner(new Uint8Array(32).fill(4))
    const sign = (signer: typeof former) =>
      rawBinding({ federation: FEDERATION, member: signer.did, peers: [], at: 1_000 }, signer)
    writer.stored(former.did, sign(former))
    writer.stored(current.did, sign(current))
    await writer.settled()
    const store = new HoldingsStore({ clock: fakeClock(2_000).fn, ttlMs: 60_000 })
    const members = new Set([current.did])
    const intake = createIntake({
      federation: FEDERATION,
      store,
      isMember: (did) => members.has(did),
      isKnownWeights: () => true,
      onBindingStored: writer.stored,
    })
    expect(await loadBindings(datastore, intake, writer)).toBe(1)
    await writer.settled()
    expect([...rows.keys()]).toEqual([`/allmende/holdings/binding/${current.did}`])
    members.clear()
    for (const member of store.pruneBindings((did) => members.has(did))) writer.dropped(member)
    await writer.settled()
    expect(rows.size).toBe(0)
  })
})
