/**
 * The node's HTTP API (node/api.ts), wired to its parts and listening: the admin token read from
 * the home as it changes, the limits from the config, imports that never read the node's own
 * keys, and the weights routes when the node holds weights.
 */
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { type ApiContext, createApi, type NodeStatus } from '../api.js'
import { apiLimitsOf, FILES, inHome, type NodeConfig, tokenSource } from '../config.js'
import { NodeError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import type { P2P } from '../p2p.js'
import type { RecordStore } from '../store.js'
import type { BlockFiles } from '../weights/block-files.js'
import type { GatewayPins } from '../weights/gateway-blocks.js'
import type { Weights } from '../weights/uploads.js'

export interface ApiPartsOptions {
  readonly home: string
  readonly config: NodeConfig
  readonly store: RecordStore
  readonly p2p: P2P
  readonly metrics: Metrics
  readonly clock: () => number
  readonly log: Logger
  status(): NodeStatus
  /** Files `POST /weights/import` never reads besides the node's own keys (the personal identity). */
  readonly privateFiles?: readonly string[]
  readonly weights?: {
    readonly blockstore: BlockFiles
    readonly service: Weights
    /** What the gateway serves: the node's pins, with withheld versions held back (parts/mirror.ts). */
    readonly pins: GatewayPins
    readonly maxUploadBytes?: number
  }
  /** The live config and `node pin` (api/config.ts). */
  readonly configRoutes?: ApiContext['configRoutes']
  readonly gcRoutes?: ApiContext['gcRoutes']
}

/** The node's own key files: never imported wherever they sit, even below an import root. */
function keyFilesOf(home: string, config: NodeConfig, privateFiles: readonly string[]): string[] {
  return [
    join(home, FILES.peerKey),
    join(home, FILES.token),
    ...(config.stewardKeyFile ? [inHome(home, config.stewardKeyFile)] : []),
    ...privateFiles,
  ]
}

/** Dials a peer; library errors become one of ours at this boundary. */
async function dial(p2p: P2P, ma: string): Promise<void> {
  try {
    await p2p.dial(ma)
  } catch (e) {
    // A bad address is the caller's mistake (400), an unreachable peer is not (502).
    const bad = /multiaddr|invalid|unknown protocol/i.test((e as Error).message)
    throw new NodeError(bad ? 'bad-multiaddr' : 'dial-failed', `cannot dial ${ma}: ${(e as Error).message}`, {
      status: bad ? 400 : 502,
    })
  }
}

/** Builds the API on the node's parts (not listening yet). */
export function buildApi(options: ApiPartsOptions): Promise<FastifyInstance> {
  const { home, config, p2p, log } = options
  return createApi({
    store: options.store,
    clock: options.clock,
    log,
    metrics: options.metrics,
    adminToken: tokenSource(home, (error) => log.warn('admin-token-invalid', { error })),
    limits: apiLimitsOf(config),
    imports: {
      roots: config.importRoots ?? [],
      home,
      keyFiles: keyFilesOf(home, config, options.privateFiles ?? []),
    },
    status: options.status,
    ...(options.weights ? { weights: options.weights } : {}),
    ...(options.configRoutes ? { configRoutes: options.configRoutes } : {}),
    ...(options.gcRoutes ? { gcRoutes: options.gcRoutes } : {}),
    peers: () => p2p.peers(),
    publish: async (bytes) => {
      await p2p.publish(bytes)
    },
    dial: (ma) => dial(p2p, ma),
  })
}

/** Listens on the config's `host:port`; resolves to the API's URL (the port the system gave for `:0`). */
export async function listen(api: FastifyInstance, config: NodeConfig): Promise<string> {
  const host = config.api.slice(0, config.api.lastIndexOf(':'))
  const port = Number(config.api.slice(config.api.lastIndexOf(':') + 1))
  try {
    await api.listen({ host, port })
  } catch (e) {
    throw new NodeError('api-listen', `cannot serve the API on ${config.api}: ${(e as Error).message}`)
  }
  const address = api.server.address()
  return typeof address === 'object' && address ? `http://${host}:${address.port}` : `http://${config.api}`
}
