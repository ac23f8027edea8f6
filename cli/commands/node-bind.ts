/**
 * `allmende node bind`: a member binds a node to itself (docs/adr/0029-holding-announcements.md).
 * The member key (`--key`, or the personal identity) signs a binding naming the node's peer id
 * (from its `GET /status`), the peers named with `--peer`, and, unless `--only`, the peers the
 * member's current binding already names (the latest binding replaces the one before). The node
 * checks it, keeps it and gossips it (`POST /holdings/bindings`).
 */
import type { Command } from 'commander'
import { CID } from 'multiformats/cid'
import { canonicalPeers, signBinding } from '../../node/holdings/binding.js'
import { MAX_BOUND_PEERS } from '../../node/holdings/wire.js'
import type { NodeStatus } from '../../node/index.js'
import { NodeClient, withNode } from '../client.js'
import { action, collect, examples, usage } from '../context.js'
import { type KeyOptions, signerOf, withKey } from '../keys.js'

interface BindOptions extends KeyOptions {
  node?: string
  peer?: string[]
  only?: boolean
}

export function registerNodeBind(node: Command): void {
  const bind = node
    .command('bind')
    .description('bind a node to you as a member: the replication report then names you beside what it holds')
    .option('--peer <peer id>', 'another node of yours to name as well (repeatable)', collect)
    .option('--only', 'name only this node and --peer ones, dropping the peers your current binding names')
  withKey(bind, 'your member key')
  withNode(bind)
  examples(bind, [
    'allmende node bind',
    'allmende node bind --node http://10.0.0.5:7070 --key member.key',
    'allmende node bind --only --peer 12D3KooW…',
  ])
  bind.action(
    action<BindOptions>(async (ctx, opts) => {
      const client = new NodeClient(opts.node)
      const status = await client.get<NodeStatus>('/status')
      const signer = await signerOf(opts)
      const current = opts.only
        ? []
        : ((
            await client.get<{ bindings: { member: string; peers: string[] }[] }>('/holdings/bindings')
          ).bindings.find((b) => b.member === signer.did)?.peers ?? [])
      const peers = canonicalPeers([status.peerId, ...(opts.peer ?? []), ...current])
      if (peers.length > MAX_BOUND_PEERS)
        throw usage(
          `a binding names at most ${MAX_BOUND_PEERS} peers (this one would name ${peers.length}); use --only`,
        )
      let bytes: Uint8Array
      try {
        bytes = signBinding(
          { federation: CID.parse(status.federation), member: signer.did, peers, at: Date.now() },
          signer,
        )
      } catch (e) {
        throw usage(`cannot sign this binding: ${(e as Error).message} (check each --peer is a peer id)`)
      }
      await client.postBytes('/holdings/bindings', bytes, { 'content-type': 'application/cbor' })
      ctx.out({ member: signer.did, peers }, [
        `bound to ${signer.did}:`,
        ...peers.map((p) => `  ${p}${p === status.peerId ? '  (this node)' : ''}`),
      ])
    }),
  )
}
