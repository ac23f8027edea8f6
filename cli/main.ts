/**
 * The `allmende` command (DESIGN.md §7), on commander: subcommands, help with
 * examples, and usage errors for free, from a well-kept library.
 *
 * Exit codes: 0 ok, 1 failed (verification, rejection, a node that could not
 * start), 2 usage, 3 node unreachable. Errors are one line on stderr (JSON
 * with --json), never a stack trace for a user mistake.
 *
 * This first cut runs a node; the contributor and deployer commands follow.
 */
import '../node/polyfill.js'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { Command, CommanderError } from 'commander'
import { isNodeError } from '../node/errors.js'
import { startNode } from '../node/node.js'

const VERSION = '0.1.0'

function defaultNodeHome(): string {
  return join(process.env.ALLMENDE_HOME ?? join(homedir(), '.allmende'), 'node')
}

function fail(message: string, code: string, exit: number, json: boolean): never {
  process.stderr.write(json ? `${JSON.stringify({ error: { code, message } })}\n` : `allmende: ${message}\n`)
  process.exit(exit)
}

export function program(): Command {
  const cli = new Command('allmende')
    .description('A federated, peer-to-peer model registry and ballot network.')
    .version(VERSION)
    .option('--json', 'machine-readable output and errors')
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(s) })

  const node = cli.command('node').description('run a federation node')
  node
    .command('start')
    .description('run the node in the foreground until Ctrl-C (logs to stderr as JSON lines)')
    .option('--home <dir>', 'the node home directory', defaultNodeHome())
    .addHelpText(
      'after',
      '\nExamples:\n  allmende node start\n  allmende node start --home /srv/allmende/node\n',
    )
    .action(async (opts: { home: string }) => {
      const json = cli.opts().json === true
      try {
        const n = await startNode({ home: opts.home })
        const ready = { ready: true, api: n.apiUrl, peerId: n.p2p.peerId, addresses: n.p2p.addresses() }
        process.stdout.write(
          json ? `${JSON.stringify(ready)}\n` : `node running: API ${n.apiUrl}, peer ${n.p2p.peerId}\n`,
        )
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve)
          process.once('SIGTERM', resolve)
        })
        await n.stop()
      } catch (e) {
        fail((e as Error).message, isNodeError(e) ? e.code : 'internal', 1, json)
      }
    })
  return cli
}

export async function main(argv: string[]): Promise<void> {
  const cli = program()
  try {
    await cli.parseAsync(argv)
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version exit 0; everything else commander reports is a usage error.
      process.exit(e.exitCode === 0 ? 0 : 2)
    }
    fail((e as Error).message, 'internal', 1, cli.opts().json === true)
  }
}
