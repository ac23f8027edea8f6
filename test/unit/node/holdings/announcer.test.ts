/**
 * The announcer (docs/adr/0029-holding-announcements.md): it announces a held root once a manifest
 * names it, withdraws at once when the root stops being complete or is forgotten, renews with a
 * later `at` (even on a clock that stands still), says nothing new for a scrub that passes, and
 * announces nothing the node withholds (a conflicted version's weights).
 */
import { MemoryDatastore } from 'datastore-core'
import { describe, expect, it } from 'vitest'
import { decodeAnnouncement, type SignedAnnouncement } from '../../../../node/holdings/announcement.js'
import { createAnnouncer } from '../../../../node/holdings/announcer.js'
import { createLogger } from '../../../../node/log.js'
import { HeldVersions } from '../../../../node/weights/held-versions.js'
import type { CID } from '../../../../protocol/index.js'
import { FEDERATION, testPeer, weightsCid } from '../../../support/holdings.js'
import { until } from '../../../support/until.js'

async function setUp(known: CID[], withheld: CID[] = []) {
  const peer = await testPeer()
  const held = await HeldVersions.open(new MemoryDatastore())
  const said: SignedAnnouncement[] = []
  const announcer = createAnnouncer({
    federation: FEDERATION,
    peerId: peer.id,
    peerKey: peer.key,
    held,
    isKnownWeights: (w) => known.some((k) => k.equals(w)),
    isWithheld: (w) => withheld.some((k) => k.equals(w)),
    gateways: () => ['http://127.0.0.1:7070'],
    // A clock that stands still: every `at` must still be later than the one before.
    clock: () => 50_000,
    publish: async (bytes) => {
      const decoded = decodeAnnouncement(bytes, FEDERATION)
      if (!decoded.ok) throw new Error(decoded.message)
      said.push(decoded.value)
    },
    log: createLogger({ level: 'error', write: () => {} }),
  })
  return { held, said, announcer }
}

describe('the announcer', () => {
  it('announces a verified root, withdraws it when a scrub fails, and again when it is forgotten', async () => {
    const root = weightsCid(1)
    const { held, said, announcer } = await setUp([root])
    await held.verified(root, 40_000)
    await until(() => said.length === 1, 'announced')
    expect(said[0]).toMatchObject({
      withdrawn: false,
      verifiedAt: 40_000,
      at: 50_000,
      gateways: ['http://127.0.0.1:7070'],
    })
    // A scrub that passes says nothing new; one that fails withdraws.
    await held.scrubbed(root, 45_000, true)
    await held.scrubbed(root, 46_000, false)
    await until(() => said.length === 2, 'withdrawn')
    expect(said[1]).toMatchObject({ withdrawn: true, gateways: [], at: 50_001 })
    // Verified again: announced again; forgotten: withdrawn again.
    await held.verified(root, 47_000)
    await held.forget(root)
    await until(() => said.length === 4, 'announced and withdrawn again')
    expect(said.slice(2).map((a) => [a.withdrawn, a.at])).toEqual([
      [false, 50_002],
      [true, 50_003],
    ])
    await announcer.stop()
  })

  it('announces a root only once a manifest names it, and renews with a later at', async () => {
    const root = weightsCid(2)
    const known: CID[] = []
    const { held, said, announcer } = await setUp(known)
    await held.verified(root, 40_000)
    await announcer.announceNew()
    expect(said).toEqual([])
    known.push(root)
    await announcer.announceNew()
    await announcer.announceNew()
    expect(said.map((a) => a.at)).toEqual([50_000])
    await announcer.renew()
    expect(said.map((a) => [a.at, a.withdrawn, a.verifiedAt])).toEqual([
      [50_000, false, 40_000],
      [50_001, false, 40_000],
    ])
    await announcer.stop()
  })

  it('announces no root the node withholds, withdraws one withheld since, and announces it again once decided', async () => {
    const [served, conflicted] = [weightsCid(3), weightsCid(4)]
    const withheld: CID[] = [conflicted]
    const { held, said, announcer } = await setUp([served, conflicted], withheld)
    await held.verified(conflicted, 40_000)
    await held.verified(served, 40_000)
    await until(() => said.length === 1, 'the served root announced')
    await announcer.renew()
    await announcer.announceNew()
    expect(said.map((a) => [a.weights.toString(), a.withdrawn])).toEqual([
      [served.toString(), false],
      [served.toString(), false],
    ])
    // Its version becomes conflicted: withdrawn at the next look, not renewed.
    withheld.push(served)
    await announcer.announceNew()
    await announcer.renew()
    expect(said.slice(2).map((a) => [a.weights.toString(), a.withdrawn])).toEqual([[served.toString(), true]])
    // Both decided: both announced.
    withheld.length = 0
    await announcer.announceNew()
    expect(
      said
        .slice(3)
        .map((a) => [a.weights.toString(), a.withdrawn])
        .sort(),
    ).toEqual(
      [
        [served.toString(), false],
        [conflicted.toString(), false],
      ].sort(),
    )
    await announcer.stop()
  })
})
