/**
 * The weights routes, when the node runs Helia: `POST /weights/import` (admin: a directory on the
 * node's own machine), the trustless gateway at `/ipfs/` and the upload service behind `POST
 * /weights` (node/weights/).
 */
import { isAbsolute } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { WritableStorage } from 'ipfs-unixfs-importer'
import { isNodeError, NodeError } from '../errors.js'
import type { Logger } from '../log.js'
import type { RecordStore } from '../store.js'
import { importDirectory } from '../weights/directory.js'
import { type GatewayBlockstore, type GatewayPins, registerGateway } from '../weights/gateway.js'
import { admitImport, type ImportPolicy } from '../weights/import-roots.js'
import { registerWeightsRoutes, type WeightsRoutesOptions } from '../weights/upload-routes.js'
import type { Weights } from '../weights/uploads.js'
import type { RequireAdmin } from './admin.js'

/** What the node serves weights from. */
export interface ApiWeights {
  /** The node's own blockstore (an FsBlockstore, never Helia's networked one). */
  readonly blockstore: GatewayBlockstore & WeightsRoutesOptions['blockstore'] & WritableStorage
  readonly service: Weights
  /** Helia's pins: the gateway serves only blocks under a pinned root. */
  readonly pins: GatewayPins
  /** The largest upload (CAR bytes); default the head state's maxModelBytes plus CAR overhead. */
  readonly maxUploadBytes?: number
}

export interface WeightsApiOptions {
  readonly weights: ApiWeights
  readonly store: RecordStore
  readonly clock: () => number
  readonly log: Logger
  readonly requireAdmin: RequireAdmin
  /** Where `/weights/import` may read; absent: nowhere (import-disabled). */
  readonly imports?: ImportPolicy | undefined
}

export async function registerWeightsApi(app: FastifyInstance, options: WeightsApiOptions): Promise<void> {
  const { weights, log } = options
  registerImport(app, options)
  registerGateway(app, { blockstore: weights.blockstore, pins: weights.pins, log })
  await registerWeightsRoutes(app, {
    weights: weights.service,
    blockstore: weights.blockstore,
    fold: options.store.fold,
    clock: options.clock,
    requireAdmin: options.requireAdmin,
    ...(weights.maxUploadBytes !== undefined ? { maxUploadBytes: weights.maxUploadBytes } : {}),
  })
}

/**
 * `POST /weights/import {path}`: weights from a directory on this node's own machine (an operator
 * who copied them there), imported with the profile, every file hashed, and pinned, as an upload
 * would be.
 */
function registerImport(app: FastifyInstance, options: WeightsApiOptions): void {
  const { weights, log } = options
  app.post('/weights/import', async (req, reply) => {
    options.requireAdmin(req)
    const path = (req.body as { path?: unknown } | null)?.path
    if (typeof path !== 'string' || !isAbsolute(path))
      throw new NodeError(
        'bad-request',
        'send {"path": "/absolute/path"}: a model directory on the node\'s own machine',
        { status: 400 },
      )
    // Only below the configured roots, never the node home or a key file (import-roots.ts).
    const admitted = await admitImport(path, options.imports ?? { roots: [], home: '', keyFiles: [] })
    // Listed and bounded by maxModelBytes before a byte is read (oversize: 413).
    const imported = await importDirectory(admitted.dir, {
      blockstore: weights.blockstore,
      maxBytes: options.store.fold.headState().rules.maxModelBytes,
      admit: admitted.admit,
    }).catch((e: unknown) => {
      // The answer names no server path; the operator's log keeps the cause.
      if (isNodeError(e) && e.code === 'import-failed')
        log.warn('weights-import-failed', { path, error: (e.cause as Error) ?? e })
      throw e
    })
    const pinned = await weights.service.pin(imported.root)
    log.info('weights-imported', { root: imported.root.toString(), path, bytes: imported.size, pinned })
    return reply.code(201).send({
      root: imported.root.toString(),
      files: imported.files.length,
      size: imported.size,
      pinned,
    })
  })
}
