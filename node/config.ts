/**
 * A node's home directory and its config file. The config, the genesis, the peer key and the
 * token are written atomically (node/files.ts).
 *
 *     HOME/config.json   {version, federation, listen, bootstrap, api, stewardKeyFile?, logLevel,
 *                         gateways?, unpinRevokedAfterMs?, importRoots?, trustedProxies?,
 *                         apiIdleTimeoutMs?, apiHeadersTimeoutMs?, apiKeepAliveTimeoutMs?,
 *                         apiMaxRequestsPerConnection?, apiMaxConnections?,
 *                         apiMaxConnectionsPerAddress?, apiMaxBufferedBytes?,
 *                         maxUploadsPerAuthor?, maxUploads?, uploadIdleTimeoutMs?}
 *     HOME/genesis.cbor  the genesis record (its unsigned CID is the federation id)
 *     HOME/peer.key      the libp2p peer key (0600)
 *     HOME/api.token     the admin bearer token (0600; node/admin-token.ts)
 *     HOME/records.log   the record log (0600)
 *     HOME/blocks/       the weights blockstore;  HOME/datastore/  Helia's datastore
 *     HOME/upload-staging/  blocks of uploads under way (cleared on start)
 *     HOME/upload-nonces    nonces of upload statements taken, until they expire (0600)
 *
 * Paths in the config are relative to HOME unless absolute.
 */
import { mkdir, readFile, stat } from 'node:fs/promises'
import { isIP } from 'node:net'
import { isAbsolute, join } from 'node:path'
import { CarBufferReader } from '@ipld/car/buffer-reader'
import { CID } from 'multiformats/cid'
import { decodeRecord, federationIdOf, type Verified } from '../protocol/index.js'
import { adminToken, TOKEN_FILE } from './admin-token.js'
import { parseWeightsConfig, WEIGHTS_CONFIG_KEYS, type WeightsConfig } from './config-weights.js'
import { fastEd25519 } from './ed25519-native.js'
import { NodeError } from './errors.js'
import { writeAtomic } from './files.js'
import { isLevel, type Level } from './log.js'

/** A node's config; the weights wing's settings are in config-weights.ts. */
export interface NodeConfig extends WeightsConfig {
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
  /**
   * Absolute directories below which `POST /weights/import` (`allmende node import`) may read a
   * model. None by default: import is off until the operator names where models are copied to.
   */
  readonly importRoots?: readonly string[]
  /**
   * Addresses (`10.0.0.5`, `::1`) or ranges (`10.0.0.0/8`) of reverse proxies in front of the API.
   * Only from these is `X-Forwarded-For` believed; none by default.
   */
  readonly trustedProxies?: readonly string[]
  /** A connection on which no byte has moved for this long is closed (default 30 s). */
  readonly apiIdleTimeoutMs?: number
  /** A request whose headers have not all arrived after this long gets 408 (default 20 s). */
  readonly apiHeadersTimeoutMs?: number
  /** An idle keep-alive connection between requests is closed after this long (default 5 s). */
  readonly apiKeepAliveTimeoutMs?: number
  /** Requests one keep-alive connection may carry before it is closed (default 1,000). */
  readonly apiMaxRequestsPerConnection?: number
  /** Open API connections in all (default 1,024); the next one is refused with 503. */
  readonly apiMaxConnections?: number
  /** Open API connections from one address (an IPv6 /64 counts as one; default 32): 429 beyond. */
  readonly apiMaxConnectionsPerAddress?: number
  /** Request bodies held in memory at once, all requests together (default 64 MiB): 503 beyond. */
  readonly apiMaxBufferedBytes?: number
  /** Weights uploads one author (a publisher, or the admin) may have under way at once (default 2). */
  readonly maxUploadsPerAuthor?: number
  /** Weights uploads under way at once, all authors together (default 8). */
  readonly maxUploads?: number
  /** An upload whose body sends nothing for this long ends with 408 `upload-idle` (default 20 s). */
  readonly uploadIdleTimeoutMs?: number
}

/** The HTTP API's limits with every default filled in (node/api.ts). */
export interface ApiLimits {
  readonly idleTimeoutMs: number
  readonly headersTimeoutMs: number
  readonly keepAliveTimeoutMs: number
  readonly maxRequestsPerConnection: number
  readonly maxConnections: number
  readonly maxConnectionsPerAddress: number
  readonly maxBufferedBytes: number
  readonly trustedProxies: readonly string[]
}

/**
 * Defaults of the API limits. Idle, not total, timeouts (a multi-GB gateway stream or upload
 * moves bytes all the time; a stalled body does not); a headers timeout well under Node's 60 s;
 * short keep-alive. 64 MiB of buffered bodies is ~70 worst-case seal CARs or ~1,000 full-size
 * records at once; 32 connections per address is a browser's 6 with room for a small NAT.
 */
export const API_LIMIT_DEFAULTS: ApiLimits = Object.freeze({
  idleTimeoutMs: 30_000,
  headersTimeoutMs: 20_000,
  keepAliveTimeoutMs: 5_000,
  maxRequestsPerConnection: 1_000,
  maxConnections: 1_024,
  maxConnectionsPerAddress: 32,
  maxBufferedBytes: 64 * 1024 * 1024,
  trustedProxies: Object.freeze([]) as readonly string[],
})

/** The config's API limits, defaults filled in. */
export function apiLimitsOf(config: NodeConfig): ApiLimits {
  const d = API_LIMIT_DEFAULTS
  return {
    idleTimeoutMs: config.apiIdleTimeoutMs ?? d.idleTimeoutMs,
    headersTimeoutMs: config.apiHeadersTimeoutMs ?? d.headersTimeoutMs,
    keepAliveTimeoutMs: config.apiKeepAliveTimeoutMs ?? d.keepAliveTimeoutMs,
    maxRequestsPerConnection: config.apiMaxRequestsPerConnection ?? d.maxRequestsPerConnection,
    maxConnections: config.apiMaxConnections ?? d.maxConnections,
    maxConnectionsPerAddress: config.apiMaxConnectionsPerAddress ?? d.maxConnectionsPerAddress,
    maxBufferedBytes: config.apiMaxBufferedBytes ?? d.maxBufferedBytes,
    trustedProxies: config.trustedProxies ?? d.trustedProxies,
  }
}

/** The API limit keys of config.json, each a whole number ≥ 1. */
const API_LIMIT_KEYS = [
  'apiIdleTimeoutMs',
  'apiHeadersTimeoutMs',
  'apiKeepAliveTimeoutMs',
  'apiMaxRequestsPerConnection',
  'apiMaxConnections',
  'apiMaxConnectionsPerAddress',
  'apiMaxBufferedBytes',
] as const

/**
 * Upload limits (node/weights/uploads.ts): two uploads per author (a model and its card), eight in all; a
 * body idle for 20 s ends its upload, before the API's own idle timeout drops the connection.
 */
export const UPLOAD_LIMIT_DEFAULTS = Object.freeze({
  maxUploadsPerAuthor: 2,
  maxUploads: 8,
  uploadIdleTimeoutMs: 20_000,
})

/** The upload limit keys of config.json, each a whole number ≥ 1. */
const UPLOAD_LIMIT_KEYS = ['maxUploadsPerAuthor', 'maxUploads', 'uploadIdleTimeoutMs'] as const

/** Revoked weights stay pinned a week by default: long enough for deployers to notice and move. */
export const DEFAULT_UNPIN_REVOKED_AFTER_MS = 7 * 24 * 60 * 60 * 1000

export const FILES = {
  config: 'config.json',
  genesis: 'genesis.cbor',
  peerKey: 'peer.key',
  token: TOKEN_FILE,
  log: 'records.log',
  blocks: 'blocks',
  datastore: 'datastore',
  uploadStaging: 'upload-staging',
  uploadNonces: 'upload-nonces',
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
    'importRoots',
    'trustedProxies',
    ...API_LIMIT_KEYS,
    ...UPLOAD_LIMIT_KEYS,
    ...WEIGHTS_CONFIG_KEYS,
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
  const uploadLimits: Record<string, number> = {}
  for (const k of UPLOAD_LIMIT_KEYS) {
    const v = c[k]
    if (v === undefined) continue
    if (!Number.isSafeInteger(v) || (v as number) < 1)
      throw invalid(`${where}: "${k}" must be a whole number, 1 or more`)
    uploadLimits[k] = v as number
  }
  const importRoots = c.importRoots ?? []
  if (!Array.isArray(importRoots) || importRoots.some((r) => typeof r !== 'string' || !isAbsolute(r)))
    throw invalid(`${where}: "importRoots" must be a list of absolute directory paths`)
  const trustedProxies = c.trustedProxies ?? []
  if (!Array.isArray(trustedProxies) || trustedProxies.some((p) => !isAddressOrRange(p)))
    throw invalid(`${where}: "trustedProxies" must be a list of IP addresses or ranges (10.0.0.0/8)`)
  const limits: Record<string, number> = {}
  for (const k of API_LIMIT_KEYS) {
    const v = c[k]
    if (v === undefined) continue
    if (!Number.isSafeInteger(v) || (v as number) < 1)
      throw invalid(`${where}: "${k}" must be a whole number, 1 or more`)
    limits[k] = v as number
  }
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
    ...uploadLimits,
    ...(importRoots.length > 0 ? { importRoots: importRoots as string[] } : {}),
    ...(trustedProxies.length > 0 ? { trustedProxies: trustedProxies as string[] } : {}),
    ...limits,
    ...parseWeightsConfig(c, where),
  }
}

/** `10.0.0.5`, `::1`, `10.0.0.0/8` or `fd00::/8`. */
function isAddressOrRange(value: unknown): boolean {
  if (typeof value !== 'string') return false
  const [address, bits, extra] = value.split('/')
  const family = isIP(address ?? '')
  if (family === 0 || extra !== undefined) return false
  if (bits === undefined) return true
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)
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

// The admin token has its own module; these names stay importable from here, where the home is.
export {
  adminToken,
  checkToken,
  MIN_TOKEN_CHARS,
  newToken,
  readToken,
  rotateToken,
  tokenSource,
} from './admin-token.js'

export interface InitOptions {
  readonly genesis: Verified<'genesis'>
  readonly listen?: readonly string[]
  readonly bootstrap?: readonly string[]
  readonly api?: string
  readonly stewardKeyFile?: string
  readonly logLevel?: Level
  readonly gateways?: readonly string[]
  readonly unpinRevokedAfterMs?: number
  readonly importRoots?: readonly string[]
  readonly trustedProxies?: readonly string[]
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
    ...(options.importRoots?.length ? { importRoots: options.importRoots } : {}),
    ...(options.trustedProxies?.length ? { trustedProxies: options.trustedProxies } : {}),
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
  await writeAtomic(join(home, FILES.genesis), options.genesis.bytes)
  await writeAtomic(configPath, `${JSON.stringify(config, null, 2)}\n`)
  await adminToken(home)
  return config
}
