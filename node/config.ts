/**
 * A node's home directory and its config file (DESIGN.md §6, §7).
 *
 *     HOME/config.json   {version, federation, listen, bootstrap, api, stewardKeyFile?, logLevel,
 *                         gateways?, unpinRevokedAfterMs?}
 *     HOME/genesis.cbor  the genesis record (its unsigned CID is the federation id)
 *     HOME/peer.key      the libp2p peer key (0600)
 *     HOME/api.token     the admin bearer token (0600)
 *     HOME/records.log   the record log (0600)
 *     HOME/blocks/       the weights blockstore;  HOME/datastore/  Helia's datastore
 *
 * Paths in the config are relative to HOME unless absolute.
 */
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { isAbsolute, join } from 'node:path'
import { CarBufferReader } from '@ipld/car/buffer-reader'
import { CID } from 'multiformats/cid'
import { decodeRecord, federationIdOf, type Verified } from '../protocol/index.js'
import { fastEd25519 } from './ed25519-native.js'
import { NodeError } from './errors.js'
import { isLevel, type Level } from './log.js'

export interface NodeConfig {
  readonly version: 1
  /** The federation id (base32 CID text). */
  readonly federation: string
  readonly listen: readonly string[]
  readonly bootstrap: readonly string[]
  /** `host:port` of the HTTP API; 127.0.0.1 unless you mean to expose it. */
  readonly api: string
  readonly stewardKeyFile?: string
  readonly logLevel: Level
  /**
   * Other stewards' trustless gateways (`http://host:port`), tried before bitswap when this node
   * fetches weights it must check: one verified CAR stream is much faster than bitswap.
   */
  readonly gateways?: readonly string[]
  /** How long after a revocation is final its weights stay pinned (default 7 days). */
  readonly unpinRevokedAfterMs?: number
}

/** Revoked weights stay pinned a week by default: long enough for deployers to notice and move. */
export const DEFAULT_UNPIN_REVOKED_AFTER_MS = 7 * 24 * 60 * 60 * 1000

export const FILES = {
  config: 'config.json',
  genesis: 'genesis.cbor',
  peerKey: 'peer.key',
  token: 'api.token',
  log: 'records.log',
  blocks: 'blocks',
  datastore: 'datastore',
} as const

export function inHome(home: string, path: string): string {
  return isAbsolute(path) ? path : join(home, path)
}

function invalid(message: string): NodeError {
  return new NodeError('config-invalid', message, { status: 400 })
}

export function parseConfig(text: string, where: string): NodeConfig {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (e) {
    throw invalid(`${where} is not valid JSON: ${(e as Error).message}`)
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw invalid(`${where} must hold a JSON object`)
  const c = raw as Record<string, unknown>
  const known = new Set([
    'version',
    'federation',
    'listen',
    'bootstrap',
    'api',
    'stewardKeyFile',
    'logLevel',
    'gateways',
    'unpinRevokedAfterMs',
  ])
  for (const k of Object.keys(c)) if (!known.has(k)) throw invalid(`${where}: unknown setting "${k}"`)
  if (c.version !== 1) throw invalid(`${where}: "version" must be 1`)
  if (typeof c.federation !== 'string') throw invalid(`${where}: "federation" must be a federation id`)
  try {
    CID.parse(c.federation)
  } catch {
    throw invalid(`${where}: "federation" is not a CID: ${c.federation}`)
  }
  const strings = (k: string) => {
    const v = c[k] ?? []
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))
      throw invalid(`${where}: "${k}" must be a list of multiaddrs`)
    return v as string[]
  }
  const api = c.api ?? '127.0.0.1:7070'
  if (typeof api !== 'string' || !/^[^:\s]+:\d{1,5}$/.test(api))
    throw invalid(`${where}: "api" must be host:port`)
  const logLevel = c.logLevel ?? 'info'
  if (!isLevel(logLevel)) throw invalid(`${where}: "logLevel" must be debug, info, warn or error`)
  if (c.stewardKeyFile !== undefined && typeof c.stewardKeyFile !== 'string') {
    throw invalid(`${where}: "stewardKeyFile" must be a path`)
  }
  const gateways = c.gateways ?? []
  if (
    !Array.isArray(gateways) ||
    gateways.some((g) => typeof g !== 'string' || !/^https?:\/\/[^\s/]+\/?$/.test(g))
  )
    throw invalid(`${where}: "gateways" must be a list of http(s)://host:port URLs`)
  const unpin = c.unpinRevokedAfterMs
  if (unpin !== undefined && !(Number.isSafeInteger(unpin) && (unpin as number) >= 0))
    throw invalid(`${where}: "unpinRevokedAfterMs" must be a whole number of milliseconds, 0 or more`)
  return {
    version: 1,
    federation: c.federation,
    listen: strings('listen'),
    bootstrap: strings('bootstrap'),
    api,
    ...(c.stewardKeyFile ? { stewardKeyFile: c.stewardKeyFile as string } : {}),
    logLevel,
    ...(gateways.length > 0 ? { gateways: gateways as string[] } : {}),
    ...(unpin !== undefined ? { unpinRevokedAfterMs: unpin as number } : {}),
  }
}

export async function loadConfig(home: string): Promise<NodeConfig> {
  const path = join(home, FILES.config)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch {
    throw new NodeError(
      'config-missing',
      `no node here: ${path} does not exist (run "allmende node init" first)`,
      { status: 400 },
    )
  }
  return parseConfig(text, path)
}

/** Reads a genesis from a file: a CAR whose root is the genesis record, or the record's bytes. */
export function parseGenesisFile(bytes: Uint8Array, expected?: CID): Verified<'genesis'> {
  let record = bytes
  try {
    const car = CarBufferReader.fromBytes(bytes)
    const root = car.getRoots()[0]
    const block = root ? car.get(root) : undefined
    if (block) record = block.bytes
  } catch {
    // Not a CAR: the record bytes themselves.
  }
  const d = decodeRecord(record, { ed25519: fastEd25519, ...(expected ? { federation: expected } : {}) })
  if (!d.ok)
    throw new NodeError('genesis-invalid', `the genesis is not valid: ${d.message} (${d.code})`, {
      status: 400,
    })
  if (d.value.record.kind !== 'genesis')
    throw new NodeError('genesis-invalid', 'the file holds a record that is not a genesis', { status: 400 })
  return d.value as Verified<'genesis'>
}

export async function loadGenesis(home: string, config: NodeConfig): Promise<Verified<'genesis'>> {
  const path = join(home, FILES.genesis)
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch {
    throw new NodeError('genesis-missing', `${path} is missing`, { status: 400 })
  }
  const g = parseGenesisFile(bytes, CID.parse(config.federation))
  if (!federationIdOf(g.record).equals(CID.parse(config.federation))) {
    throw new NodeError('genesis-invalid', `${path} is not the genesis of federation ${config.federation}`)
  }
  return g
}

/** Writes a file only the owner can read (keys, tokens). */
export async function writePrivate(path: string, data: string | Uint8Array): Promise<void> {
  await writeFile(path, data, { mode: 0o600 })
  await chmod(path, 0o600)
}

/** The admin token, created on first use. */
export async function adminToken(home: string): Promise<string> {
  const path = join(home, FILES.token)
  try {
    const st = await stat(path)
    if ((st.mode & 0o077) !== 0) {
      throw new NodeError('token-permissions', `${path} must not be readable by others (chmod 600 ${path})`)
    }
    return (await readFile(path, 'utf8')).trim()
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
  const token = randomBytes(32).toString('base64url')
  await writePrivate(path, `${token}\n`)
  return token
}

export interface InitOptions {
  readonly genesis: Verified<'genesis'>
  readonly listen?: readonly string[]
  readonly bootstrap?: readonly string[]
  readonly api?: string
  readonly stewardKeyFile?: string
  readonly logLevel?: Level
  readonly gateways?: readonly string[]
  readonly unpinRevokedAfterMs?: number
}

/** Creates a node home: config, genesis, admin token. Refuses to overwrite an existing node. */
export async function initHome(home: string, options: InitOptions): Promise<NodeConfig> {
  const config: NodeConfig = {
    version: 1,
    federation: federationIdOf(options.genesis.record).toString(),
    listen: options.listen ?? ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: options.bootstrap ?? [],
    api: options.api ?? '127.0.0.1:7070',
    ...(options.stewardKeyFile ? { stewardKeyFile: options.stewardKeyFile } : {}),
    logLevel: options.logLevel ?? 'info',
    ...(options.gateways?.length ? { gateways: options.gateways } : {}),
    ...(options.unpinRevokedAfterMs !== undefined
      ? { unpinRevokedAfterMs: options.unpinRevokedAfterMs }
      : {}),
  }
  // The same checks as on start, so a bad --gateway is refused now (and no home is left behind).
  parseConfig(JSON.stringify(config), 'the new config')
  await mkdir(home, { recursive: true, mode: 0o700 })
  const configPath = join(home, FILES.config)
  try {
    await stat(configPath)
    throw new NodeError('node-exists', `${configPath} already exists: this directory already holds a node`, {
      status: 400,
    })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
  await writeFile(join(home, FILES.genesis), options.genesis.bytes)
  await writeFile(configPath, `${JSON.stringify(config, null, 2)}\n`)
  await adminToken(home)
  return config
}
