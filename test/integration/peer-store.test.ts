/**
 * Nothing a stranger sends is kept on disk: a peer that connects with a fresh identity makes
 * libp2p record it in its peer store (addresses, protocols, keys from identify). That store is
 * in memory; the node's datastore on disk holds Helia's pins only.
 */
import { join } from 'node:path'
import { LevelDatastore } from 'datastore-level'
import { afterAll, describe, expect, it } from 'vitest'
import { FILES, initHome } from '../../node/config.js'
import { type AllmendeNode, startNode } from '../../node/index.js'
import { silentLogger } from '../../node/log.js'
import { createP2P, type P2P, topicFor } from '../../node/p2p.js'
import { rulesWith, Simulator } from '../support/simulator.js'
import { tempDirForFile } from '../support/temp-dir.js'
import { until } from '../support/until.js'

const dir = tempDirForFile('allmende-peer-store-')

describe("libp2p's peer store", () => {
  let node: AllmendeNode | undefined
  let strangers: P2P[] = []
  afterAll(async () => {
    await Promise.allSettled(strangers.map((s) => s.stop()))
    await node?.stop()
  })

  it('keeps no record of strangers who connect on disk', async () => {
    const sim = new Simulator({
      members: [{ name: 'a', roles: ['steward', 'voter', 'publisher'], weight: 1 }],
      base: Date.now(),
      name: 'peer-store',
      rules: rulesWith({ sealThreshold: 1 }),
    })
    const home = join(dir(), 'node')
    const config = await initHome(home, { genesis: sim.genesis, api: '127.0.0.1:0', logLevel: 'error' })
    node = await startNode({ home, config, genesis: sim.genesis, log: silentLogger })
    const address = node.p2p.addresses()[0]!
    strangers = await Promise.all(
      Array.from({ length: 5 }, () =>
        createP2P({
          listen: ['/ip4/127.0.0.1/tcp/0'],
          bootstrap: [address],
          topic: topicFor(sim.federation.toString()),
          validate: () => 'ignore',
          onMessage: () => {},
          helia: false,
        }),
      ),
    )
    // Connected and identified: the node knows their protocols.
    await until(
      () => strangers.every((s) => node!.p2p.peers().some((p) => p.id === s.peerId)),
      'the strangers connected',
      30_000,
    )
    const libp2p = node.p2p.libp2p
    await until(
      async () =>
        (await Promise.all(strangers.map((s) => libp2p.peerStore.has(s.libp2p.peerId)))).every(Boolean),
      'the strangers in the peer store',
      30_000,
    )
    await node.stop()
    node = undefined
    const datastore = new LevelDatastore(join(home, FILES.datastore))
    await datastore.open()
    try {
      const peers: string[] = []
      for await (const key of datastore.queryKeys({ prefix: '/peers' })) peers.push(key.toString())
      expect(peers).toEqual([])
    } finally {
      await datastore.close()
    }
  }, 60_000)
})
