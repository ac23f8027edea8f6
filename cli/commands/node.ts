/** `allmende node status | peers` (DESIGN.md §7): what a running node reports about itself. */
import type { Command } from 'commander'
import type { NodeStatus } from '../../node/api.js'
import { NodeClient, withNode } from '../client.js'
import { action, examples } from '../context.js'

/** The JSON shape of GET /status (DESIGN.md §7): the node's own type. */
type Status = NodeStatus

export function registerNodeQueries(node: Command): void {
  const status = withNode(
    node.command('status').description("a running node's peer id, addresses, federation and head"),
  )
  examples(status, ['allmende node status', 'allmende --json node status --node http://10.0.0.5:7070'])
  status.action(
    action<{ node?: string }>(async (ctx, opts) => {
      const s = await new NodeClient(opts.node).get<Status>('/status')
      ctx.out(s, [
        `peer        ${s.peerId}`,
        `federation  ${s.federation}`,
        `steward     ${s.steward ?? '(none)'}`,
        `records     ${s.records}`,
        `head        ${s.head}`,
        'addresses:',
        ...s.addresses.map((a) => `  ${a}`),
      ])
    }),
  )

  const peers = withNode(node.command('peers').description('the peers a running node is connected to'))
  examples(peers, ['allmende node peers', 'allmende --json node peers'])
  peers.action(
    action<{ node?: string }>(async (ctx, opts) => {
      const p = await new NodeClient(opts.node).get<{ peers: { id: string; addresses: string[] }[] }>(
        '/peers',
      )
      ctx.out(
        p,
        p.peers.length === 0 ? 'no peers connected' : p.peers.map((x) => `${x.id}  ${x.addresses.join(' ')}`),
      )
    }),
  )
}
