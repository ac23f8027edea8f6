/**
 * `allmende model holders N@V`: who holds a version's weights, where their gateways are and when
 * they last verified them, from the node's replication report (`GET /replication?model=N@V`,
 * docs/adr/0029-holding-announcements.md); a version held by fewer nodes than the node's
 * `minHolders` is flagged (only holders a member bound count, once any member has bound one).
 */
import type { Command } from 'commander'
import type { ReplicationReport } from '../../node/holdings/report.js'
import { NodeClient, withNode } from '../client.js'
import { action, examples } from '../context.js'
import { parseModelRef } from '../records.js'
import { table } from './proposals.js'

export function registerModelHolders(model: Command): void {
  const holders = withNode(
    model
      .command('holders')
      .description('the nodes that hold a model version whole and verified, their gateways and members')
      .argument('<name@version>'),
  )
  examples(holders, [
    'allmende model holders mistral-7b-de@1.2.0',
    'allmende --json model holders org/model@2.0.0',
  ])
  holders.action(
    action<{ node?: string }>(async (ctx, opts, [ref]) => {
      const { key } = parseModelRef(ref!)
      const report = await new NodeClient(opts.node).get<ReplicationReport>(
        `/replication?model=${encodeURIComponent(key)}`,
      )
      const entry = report.versions[0]!
      const count = `${entry.holders.length} holder${entry.holders.length === 1 ? '' : 's'}, ${entry.affiliatedHolders} of them a member's`
      ctx.out(entry, [
        `${entry.model}  ${entry.status}, ${count}${entry.flagged ? ` (FLAGGED: fewer counted holders than minHolders, ${report.minHolders}; once a member binds a node, only members' holders count)` : ''}`,
        `weights  ${entry.weights}`,
        ...(entry.holders.length === 0
          ? ['no node announces holding it']
          : table(
              ['PEER', 'MEMBER', 'GATEWAYS', 'VERIFIED'],
              entry.holders.map((h) => [
                h.peer,
                h.name ?? h.member ?? '(unaffiliated)',
                h.gateways.join(' ') || '(none)',
                new Date(h.verifiedAt).toISOString(),
              ]),
            )),
      ])
    }),
  )
}
