/**
 * Real nodes on 127.0.0.1 in one process, each with its own home directory,
 * record log and stores, for integration tests and benchmarks.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { initHome } from '../../node/config.js'
import { type AllmendeNode, type NodeOptions, startNode } from '../../node/index.js'
import { type Logger, silentLogger } from '../../node/log.js'
import type { AnyVerified, Verified } from '../../protocol/index.js'

export interface Cluster {
  readonly nodes: AllmendeNode[]
  readonly root: string
  stop(): Promise<void>
}

export async function startCluster(
  genesis: Verified<'genesis'>,
  n: number,
  options: {
    topology?: 'line' | 'star'
    helia?: boolean
    clock?: () => number
    log?: Logger
    sync?: NodeOptions['sync']
  } = {},
): Promise<Cluster> {
  const root = await mkdtemp(join(tmpdir(), 'allmende-cluster-'))
  const nodes: AllmendeNode[] = []
  const cluster: Cluster = {
    nodes,
    root,
    async stop() {
      await Promise.allSettled(nodes.map((x) => x.stop()))
      await rm(root, { recursive: true, force: true })
    },
  }
  try {
    for (let i = 0; i < n; i++) {
      const home = join(root, `node-${i}`)
      const peer = options.topology === 'star' ? nodes[0] : nodes[i - 1]
      const config = await initHome(home, {
        genesis,
        listen: ['/ip4/127.0.0.1/tcp/0'],
        bootstrap: peer ? [peer.p2p.addresses()[0]!] : [],
        api: '127.0.0.1:0',
        logLevel: 'warn',
        // Tests import models from their own temporary directories.
        importRoots: [tmpdir()],
      })
      nodes.push(
        await startNode({
          home,
          config,
          genesis,
          log: options.log ?? silentLogger,
          helia: options.helia ?? false,
          ...(options.clock ? { clock: options.clock } : {}),
          ...(options.sync !== undefined ? { sync: options.sync } : {}),
        }),
      )
    }
  } catch (e) {
    await cluster.stop()
    throw e
  }
  return cluster
}

export async function submit(
  node: AllmendeNode,
  record: AnyVerified,
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${node.apiUrl}/records`, {
    method: 'POST',
    headers: { 'content-type': 'application/cbor' },
    body: Buffer.from(record.bytes),
  })
  return { status: res.status, body: await res.json() }
}
