/**
 * `allmende node gc [--dry-run]` (docs/adr/0031-scrubbing-and-clean-up.md): the weights a running
 * node lets go because nobody ratified them and their retention ran out — each root, why, and the
 * bytes it frees, and the total. `--dry-run` only lists; without it they go now (the node also
 * does this by itself every minute). With the node home's admin token, as `node import`.
 */
import type { Command } from 'commander'
import type { GcAnswer } from '../../node/api/gc.js'
import { action, examples } from '../context.js'
import { defaultNodeHome } from '../homes.js'
import { nodeAdmin } from '../node-admin.js'

/** The collection walks and unpins every due root before it answers. */
const GC_TIMEOUT_MS = 30 * 60_000

const MiB = 1024 * 1024

function size(bytes: number): string {
  return bytes >= MiB ? `${(bytes / MiB).toFixed(1)} MiB` : `${bytes} bytes`
}

/** The answer as lines: one per root, then the total. */
function lines(answer: GcAnswer): string[] {
  const verb = answer.dryRun ? 'would go' : 'went'
  if (answer.roots.length === 0) return [answer.dryRun ? 'nothing is due to go' : 'nothing was due to go']
  return [
    ...answer.roots.map((r) => `${r.root}  ${r.why}  ${size(r.bytes)} (${r.bytes} bytes)`),
    `${answer.roots.length} root(s) ${verb}: ${size(answer.totalBytes)} (${answer.totalBytes} bytes) in all`,
  ]
}

export function registerNodeGc(node: Command): void {
  const gc = node
    .command('gc')
    .description('let go of weights uploaded here that nobody ratified, once their retention ran out (admin)')
    .option('--dry-run', 'only list what would go (root, why, bytes) and the total')
    .option('--home <dir>', 'the node home (its API address and admin token)', defaultNodeHome())
  examples(gc, ['allmende node gc --dry-run', 'allmende --json node gc --home /srv/allmende'])
  gc.action(
    action<{ home: string; dryRun?: boolean }>(async (ctx, opts) => {
      const { client, token } = await nodeAdmin(opts.home)
      const body = new TextEncoder().encode(JSON.stringify({ dryRun: opts.dryRun === true }))
      const answer = await client.postBytes<GcAnswer>(
        '/admin/gc',
        body,
        { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        GC_TIMEOUT_MS,
      )
      ctx.out(answer, lines(answer))
    }),
  )
}
