/**
 * A node home as its operator's admin commands reach it (`node import`, `node gc`, `node config`,
 * `node mirror`, `node pin`): the API address from its config and the admin token from its file,
 * read as the node's user.
 */
import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { FILES, loadConfig, type NodeConfig } from '../node/index.js'
import { NodeClient } from './client.js'
import { CliError } from './context.js'

export interface NodeAdmin {
  readonly home: string
  readonly config: NodeConfig
  readonly token: string
  /** A client for the node's API, whose unreachable message names where the address comes from. */
  readonly client: NodeClient
}

/** The node of `homeOption`; `no-token` when its token file is missing, empty or unreadable. */
export async function nodeAdmin(homeOption: string): Promise<NodeAdmin> {
  const home = resolve(homeOption)
  const config = await loadConfig(home)
  const tokenFile = join(home, FILES.token)
  const token = (
    await readFile(tokenFile, 'utf8').catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return ''
      throw new CliError(
        'no-token',
        `cannot read ${tokenFile} (${e.code ?? e.message}): run as the node's user`,
      )
    })
  ).trim()
  if (token.length === 0)
    throw new CliError('no-token', `${tokenFile} is missing or empty: is this a node home?`)
  const client = new NodeClient(
    `http://${config.api}`,
    undefined,
    `its address is "api" in ${join(home, FILES.config)}`,
  )
  return { home, config, token, client }
}
