/**
 * `allmende node status | peers`: what a running node reports about itself;
 * `node import DIR`: weights from a directory on the node's own machine, with its admin token;
 * and `node token [--rotate]`: the admin token's state, or a fresh one in its place.
 */
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import {
  FILES,
  loadConfig,
  MIN_TOKEN_CHARS,
  type NodeStatus,
  readToken,
  rotateToken,
} from '../../node/index.js'
import { NodeClient, withNode } from '../client.js'
import { action, CliError, examples } from '../context.js'
import { defaultNodeHome } from '../homes.js'
import { nodeAdmin } from '../node-admin.js'

/** The JSON shape of GET /status: the node's own type. */
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

  const imp = node
    .command('import')
    .description("import a model directory on this machine into the node's weights, pinned (admin)")
    .argument('<dir>')
    .option('--home <dir>', 'the node home (its API address and admin token)', defaultNodeHome())
  examples(imp, [
    'allmende node import /srv/models/mistral-7b-de',
    'allmende --json node import ./m --home /srv/allmende',
  ])
  imp.action(
    action<{ home: string }>(async (ctx, opts, [dir]) => {
      const { client, token } = await nodeAdmin(opts.home)
      const body = new TextEncoder().encode(JSON.stringify({ path: resolve(dir!) }))
      const r = await client.postBytes<{ root: string; files: number; size: number; pinned: boolean }>(
        '/weights/import',
        body,
        { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        // The node reads, hashes and stores the whole model before it answers.
        6 * 3600_000,
      )
      ctx.out(r, `weights ${r.root} (${r.files} files, ${r.size} bytes)${r.pinned ? ', pinned' : ''}`)
    }),
  )

  registerNodeToken(node)
}

/**
 * `node token`: says whether the node home's admin token would be accepted (never prints it);
 * `node token --rotate`: writes a fresh random one (0600) in its place. A running node takes the
 * new token at its next admin request (it reads the file again when it changes); the old one is
 * refused from then on.
 */
function registerNodeToken(node: Command): void {
  const token = node
    .command('token')
    .description("check the node's admin token, or replace it with a fresh one (--rotate)")
    .option('--rotate', 'write a new random admin token in place of the old one')
    .option('--home <dir>', 'the node home', defaultNodeHome())
  examples(token, [
    'allmende node token',
    'allmende node token --rotate',
    'allmende --json node token --rotate --home /srv/allmende',
  ])
  token.action(
    action<{ home: string; rotate?: boolean }>(async (ctx, opts) => {
      const home = resolve(opts.home)
      // Only a node home gets a token: a mistyped --home must not leave a stray file behind.
      await loadConfig(home)
      const path = join(home, FILES.token)
      if (opts.rotate) {
        const rotated = await rotateToken(home)
        ctx.out({ path: rotated.path, rotated: true, characters: rotated.token.length }, [
          `a new admin token (${rotated.token.length} characters) is in ${rotated.path}`,
          'a running node takes it at its next admin request; the old token no longer works',
        ])
        return
      }
      try {
        const current = await readToken(home)
        ctx.out(
          { path, valid: true, characters: current.length },
          `${path}: a valid admin token (${current.length} characters, at least ${MIN_TOKEN_CHARS})`,
        )
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT')
          throw new CliError(
            'token-missing',
            `${path} does not exist: make one with "allmende node token --rotate --home ${home}"`,
          )
        throw e
      }
    }),
  )
}
