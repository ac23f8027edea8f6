/**
 * Where the CLI keeps things by default: `$ALLMENDE_HOME` (or `~/.allmende`) holds the personal
 * identity, the federation pin, the trust marks and snapshots, and `$ALLMENDE_HOME/node` the node
 * home. These are the CLI's defaults; the library and the node take paths from their caller.
 */
import { homedir } from 'node:os'
import { join } from 'node:path'

const IDENTITY_FILE = 'identity.json'

/** `$ALLMENDE_HOME`, or `~/.allmende`. */
export function allmendeHome(env: Record<string, string | undefined> = process.env): string {
  const home = env.ALLMENDE_HOME
  return home && home.length > 0 ? home : join(homedir(), '.allmende')
}

/** Where `node init` puts a node, and where node commands look for one: `$ALLMENDE_HOME/node`. */
export function defaultNodeHome(env: Record<string, string | undefined> = process.env): string {
  return join(allmendeHome(env), 'node')
}

/** Where the personal identity lives in a home directory. */
export function identityPath(home: string = allmendeHome()): string {
  return join(home, IDENTITY_FILE)
}
