/**
 * The `allmende` command, on commander: subcommands, help with
 * examples, and usage errors for free, from a well-kept library.
 *
 * Exit codes: 0 ok, 1 failed (verification, rejection, a node that could not
 * start), 2 usage, 3 node unreachable. Errors are one line on stderr (JSON
 * with --json), never a stack trace for a user mistake.
 *
 * The commands live in cli/commands/ (one module per group); `node init` and `node start`
 * are here.
 */
import '../node/polyfill.js'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { Command, CommanderError } from 'commander'
import { CID } from 'multiformats/cid'
import { fetchGenesis, initHome, isNodeError, parseGenesisFile, startNode } from '../node/index.js'
import type { Verified } from '../protocol/index.js'
import { registerCertificate } from './commands/certificate.js'
import { registerDemo } from './commands/demo.js'
import { registerExec } from './commands/exec.js'
import { registerFederation } from './commands/federation.js'
import { registerFetch } from './commands/fetch.js'
import { registerInit } from './commands/init.js'
import { registerModel } from './commands/model.js'
import { registerNodeQueries } from './commands/node.js'
import { registerNodeBind } from './commands/node-bind.js'
import { registerNodeGc } from './commands/node-gc.js'
import { registerNodeMirror } from './commands/node-mirror.js'
import { registerProposals } from './commands/proposals.js'
import { registerPropose } from './commands/propose.js'
import { registerVerify } from './commands/verify.js'
import { registerVote } from './commands/vote.js'
import { examples, printError } from './context.js'
import { defaultNodeHome, identityPath } from './homes.js'
import { versionText } from './version.js'

const VERSION = versionText()

function fail(message: string, code: string, exit: number, json: boolean): never {
  process.stderr.write(json ? `${JSON.stringify({ error: { code, message } })}\n` : `allmende: ${message}\n`)
  process.exit(exit)
}

/** `node init`: a node home for a federation, from its genesis file or fetched by its id. */
function registerNodeInit(node: Command, cli: Command): void {
  const init = node
    .command('init')
    .description('create a node home: config, genesis, peer key and admin token')
    .requiredOption(
      '--federation <file|id>',
      'the genesis file (CAR or CBOR), or a federation id whose genesis is fetched from --bootstrap peers',
    )
    .option('--home <dir>', 'the node home directory', defaultNodeHome())
    .option('--listen <multiaddr...>', 'libp2p listen addresses', ['/ip4/0.0.0.0/tcp/4747'])
    .option(
      '--api <host:port>',
      'where the HTTP API listens (keep it on 127.0.0.1 unless you mean it)',
      '127.0.0.1:7070',
    )
    .option('--bootstrap <multiaddr...>', 'peers to connect to, each ending in /p2p/<peer id>', [])
    .option('--steward-key <file>', "this node's steward key file (stewards only)")
    .option(
      '--gateway <url...>',
      "other stewards' trustless gateways (http://host:port), tried before bitswap when fetching weights",
      [],
    )
    .option(
      '--import-root <dir...>',
      'directories on this machine below which `node import` may read weights (none: import is off)',
      [],
    )
  examples(init, [
    'allmende node init --federation genesis.car --listen /ip4/0.0.0.0/tcp/4747',
    'allmende node init --federation bafyrei… --bootstrap /dns4/node.example.org/tcp/4747/p2p/12D3KooW…',
    'allmende node init --federation genesis.car --steward-key steward.key --gateway http://steward-b.example.org:7070',
    'allmende node init --federation genesis.car --import-root /srv/models',
  ])
  init.action(
    async (opts: {
      federation: string
      home: string
      listen: string[]
      api: string
      bootstrap: string[]
      stewardKey?: string
      gateway: string[]
      importRoot: string[]
    }) => {
      const json = cli.opts().json === true
      try {
        let genesis: Verified<'genesis'>
        let from: string | undefined
        if (existsSync(opts.federation)) {
          genesis = parseGenesisFile(await readFile(opts.federation))
        } else {
          let id: CID
          try {
            id = CID.parse(opts.federation)
          } catch {
            fail(`--federation: ${opts.federation} is neither a file nor a federation id`, 'usage', 2, json)
          }
          const fetched = await fetchGenesis({ federation: id, bootstrap: opts.bootstrap })
          genesis = fetched.genesis
          from = fetched.from
        }
        const config = await initHome(opts.home, {
          genesis,
          listen: opts.listen,
          bootstrap: opts.bootstrap,
          api: opts.api,
          ...(opts.stewardKey ? { stewardKeyFile: resolve(opts.stewardKey) } : {}),
          ...(opts.gateway.length > 0 ? { gateways: opts.gateway } : {}),
          ...(opts.importRoot.length > 0 ? { importRoots: opts.importRoot.map((d) => resolve(d)) } : {}),
        })
        const out = {
          home: resolve(opts.home),
          federation: config.federation,
          ...(from ? { genesisFrom: from } : {}),
        }
        process.stdout.write(
          json
            ? `${JSON.stringify(out)}\n`
            : `node home ${out.home} created for federation ${out.federation}${from ? ` (genesis from ${from})` : ''}\n`,
        )
      } catch (e) {
        fail((e as Error).message, isNodeError(e) ? e.code : 'internal', 1, json)
      }
    },
  )
}

/**
 * `node start`: the node's launcher. It runs the node in the home until SIGINT or SIGTERM; the
 * steward key's passphrase comes from $ALLMENDE_STEWARD_PASSPHRASE, and the personal identity is
 * a file the node never imports.
 */
function registerNodeStart(node: Command, cli: Command): void {
  const start = node
    .command('start')
    .description('run the node in the foreground until Ctrl-C (logs to stderr as JSON lines)')
    .option('--home <dir>', 'the node home directory', defaultNodeHome())
  examples(start, ['allmende node start', 'allmende node start --home /srv/allmende/node'])
  start.action(async (opts: { home: string }) => {
    const json = cli.opts().json === true
    try {
      const passphrase = process.env.ALLMENDE_STEWARD_PASSPHRASE
      const n = await startNode({
        home: opts.home,
        ...(passphrase ? { stewardPassphrase: passphrase } : {}),
        privateFiles: [identityPath()],
      })
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
}

export function program(): Command {
  const cli = new Command('allmende')
    .description('A federated, peer-to-peer model registry and ballot network.')
    .version(VERSION)
    .option('--json', 'machine-readable output and errors')
    .exitOverride()
    .configureOutput({
      // With --json a usage error is JSON too; commander's own text otherwise.
      outputError: (s, write) =>
        process.argv.includes('--json') ? printError(true, 'usage', s.replace(/^error: /, '')) : write(s),
    })
  registerInit(cli)
  registerFederation(cli)

  const node = cli.command('node').description('run a federation node')
  examples(node, [
    'allmende node init --federation genesis.car --steward-key steward.key --gateway http://steward-b.example.org:7070',
    'allmende node start',
    'allmende node status',
    'allmende node import /srv/models/mistral-7b-de',
  ])
  registerNodeInit(node, cli)
  registerNodeStart(node, cli)
  registerNodeQueries(node)
  registerNodeBind(node)
  registerNodeMirror(node)
  registerNodeGc(node)
  registerPropose(cli)
  registerVote(cli)
  registerProposals(cli)
  registerModel(cli)
  registerVerify(cli)
  registerCertificate(cli)
  registerDemo(cli)
  registerFetch(cli)
  registerExec(cli)
  return cli
}

export async function main(argv: string[]): Promise<void> {
  const cli = program()
  // Commander takes a program option anywhere on the line, so `--version` after a subcommand
  // (`model publish --version 1.2.0`) would print the program's version: it is the program's
  // only before the first subcommand (the program's own options take no values).
  const sub = argv.slice(2).findIndex((a) => !a.startsWith('-'))
  if (sub >= 0) {
    const own = cli as unknown as { options: { long?: string }[] }
    own.options = own.options.filter((o) => o.long !== '--version')
  }
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
