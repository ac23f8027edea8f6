/**
 * Weights uploads (SPEC.md §7): a CARv1 stream from a publisher (or the admin), authenticated
 * before its first byte is read, staged outside the blockstore, and moved in only once the DAG
 * under its root is complete and checked. The parts, in the order an upload goes through them:
 *
 * - upload-routes.ts, before the body is read: the admin token, or a publisher's upload statement
 *   (version 2) in the headers — signed over this federation, this node's peer id, the root, the
 *   time, the size and a nonce never used before; the size within `maxModelBytes`. Then a slot
 *   (upload-slots.ts) and the nonce, recorded durably (upload-nonces.ts). Anything else is refused
 *   with nothing read but the headers. A body that sends nothing for `idleMs` ends the upload.
 * - upload-car.ts: the body read as a stream, bounded by the CAR budget of the signed size
 *   (`carBudget`); the header must name exactly one root, the one the statement signs; every
 *   block checked before it is staged (upload-staging.ts).
 * - upload-dag.ts, when the body has ended: the DAG under the root walked (`measureDag`), complete,
 *   UnixFS, and of the signed logical size. Only then do the blocks reachable from the root move
 *   into the blockstore (here), the root last, so a root is reachable (served, pinnable) only with
 *   everything under it. Blocks of the CAR the root does not reach are dropped with the staging
 *   directory.
 * - On failure, or a stop, or a crash, the staging directory goes (a crash: when the node starts
 *   again); nothing in the blockstore is touched.
 *
 * Pins and garbage collection: a completed upload's root is pinned with Helia's pins API
 * (recursive; its pin records live in the node's LevelDatastore, so they survive restarts; the
 * walk reads only the DAG's nodes, not its leaves: pin-walker.ts). The node runs no garbage
 * collection of its own: nothing ever calls `helia.gc()`. If an operator ever runs GC, pinned
 * weights survive it. Records never live in the blockstore: they are in the record log
 * (record-log.ts), so no GC of blocks can touch them.
 */
import type { CID } from 'multiformats/cid'
import { type Logger, silentLogger } from '../log.js'
import { type PinWalker, unixfsPinWalker } from './pin-walker.js'
import { CHUNK_BYTES } from './profile.js'
import { bad, stageCar, WRITES_IN_FLIGHT } from './upload-car.js'
import { type DagBlocks, measureDag } from './upload-dag.js'
import { openUploadNonces, type UploadNonces } from './upload-nonces.js'
import { UploadSlots } from './upload-slots.js'
import { type StagedUpload, type StagingTarget, UploadStaging } from './upload-staging.js'

export { UploadSlots }

/** What uploads need of a blockstore (blockstore-fs 4, its default layout: see upload-staging.ts). */
export interface UploadBlockstore extends StagingTarget {
  has(cid: CID): Promise<boolean>
  get(cid: CID, options?: { signal?: AbortSignal }): AsyncIterable<Uint8Array> | Promise<Uint8Array>
}

/** The slice of Helia's pins API used here. */
export interface UploadPins {
  add(cid: CID, options?: { signal?: AbortSignal; offline?: boolean; walker?: PinWalker }): AsyncIterable<CID>
}

export interface UploadResult {
  readonly root: CID
  /** Blocks under the root (each distinct block once, identity CIDs aside). */
  readonly blocks: number
  /** The logical size of the DAG under the root: a manifest's `size`, the `size` a statement signs. */
  readonly bytes: number
  /** Bytes of the CAR read. */
  readonly carBytes: number
  /** Blocks of the CAR the root does not reach: dropped, never stored. */
  readonly dropped: number
  /** Whether the root is pinned now. */
  readonly pinned: boolean
}

export interface ReceiveOptions {
  /** The largest CAR accepted, in bytes. */
  readonly maxBytes: number
  /** The most blocks a CAR may carry (bounds memory and work). */
  readonly maxBlocks: number
  /** The largest logical size accepted (the head state's `maxModelBytes`). */
  readonly maxLogicalBytes: number
  /** The root the CAR must name (the one a statement signs). */
  readonly root?: CID
  /** The logical size the DAG must have (the one a statement signs). */
  readonly size?: number
  readonly signal?: AbortSignal
}

/** What POST /weights checks before it reads a body. */
export interface UploadGate {
  /** The federation and the node a statement must name. */
  readonly federation: CID
  readonly peerId: string
  readonly nonces: UploadNonces
  readonly slots: UploadSlots
  /** An upload whose body sends nothing for this long ends (`upload-idle`). */
  readonly idleMs: number
  /** How far a statement's `at` may be from the node's clock. */
  readonly windowMs: number
}

/** How far an upload statement's `at` may be from the node's clock. */
export const UPLOAD_WINDOW_MS = 10 * 60 * 1000

export interface Weights {
  receive(source: AsyncIterable<Uint8Array>, options: ReceiveOptions): Promise<UploadResult>
  /** Pins a complete DAG held locally (never fetches). Idempotent; false when no pins API is available. */
  pin(root: CID, signal?: AbortSignal): Promise<boolean>
  /** Waits for uploads in flight to finish (or fail and clean up). */
  drain(): Promise<void>
  readonly gate: UploadGate
  /** Closes the nonce file; after `drain`. */
  close(): Promise<void>
}

/** CAR overhead over file bytes: per block a section header and interior nodes, plus directories. */
export function carBudget(maxModelBytes: number): { maxBytes: number; maxBlocks: number } {
  const leaves = Math.ceil(maxModelBytes / CHUNK_BYTES)
  return { maxBytes: maxModelBytes + leaves * 128 + 16 * 1024 * 1024, maxBlocks: 2 * leaves + 65_536 }
}

async function readAll(store: UploadBlockstore, cid: CID, signal?: AbortSignal): Promise<Uint8Array | null> {
  try {
    const got = store.get(cid, signal ? { signal } : {})
    if (got instanceof Promise) return await got
    const chunks: Uint8Array[] = []
    for await (const c of got) chunks.push(c)
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
  } catch (e) {
    if ((e as Error).name === 'NotFoundError' || (e as { code?: string }).code === 'ERR_NOT_FOUND')
      return null
    throw e
  }
}

/** The walk's view of an upload: its staged blocks first, then what the blockstore held before. */
function dagBlocks(staged: StagedUpload, blockstore: UploadBlockstore, signal?: AbortSignal): DagBlocks {
  return {
    async node(cid) {
      if (staged.sizeOf(cid.toString()) !== undefined) return staged.read(cid)
      return readAll(blockstore, cid, signal)
    },
    async leafSize(cid) {
      return staged.sizeOf(cid.toString()) ?? (await staged.heldSize(cid)) ?? null
    },
  }
}

/** Moves the staged blocks of `reachable` into the blockstore, `WRITES_IN_FLIGHT` at a time, the root last. */
async function moveIn(staged: StagedUpload, reachable: readonly CID[], root: CID): Promise<void> {
  const queue = reachable.filter((cid) => !cid.equals(root) && staged.sizeOf(cid.toString()) !== undefined)
  const worker = async () => {
    for (let cid = queue.pop(); cid !== undefined; cid = queue.pop()) await staged.moveIn(cid)
  }
  await Promise.all(Array.from({ length: WRITES_IN_FLIGHT }, worker))
  if (staged.sizeOf(root.toString()) !== undefined) await staged.moveIn(root)
}

export function createWeights(options: {
  blockstore: UploadBlockstore
  staging: UploadStaging
  gate: UploadGate
  pins?: UploadPins | undefined
  log?: Logger
}): Weights {
  const { blockstore, pins, staging } = options
  const log = options.log ?? silentLogger
  const inFlight = new Set<Promise<unknown>>()
  const pin = (root: CID, signal?: AbortSignal) => pinRoot(pins, root, signal)

  const receive = async (source: AsyncIterable<Uint8Array>, opts: ReceiveOptions): Promise<UploadResult> => {
    const staged = await staging.begin()
    try {
      const { root, carBytes } = await stageCar(source, staged, opts)
      const dag = await measureDag(root, dagBlocks(staged, blockstore, opts.signal), {
        maxNodes: opts.maxBlocks + 65_536,
        maxLogicalBytes: opts.maxLogicalBytes,
        ...(opts.signal ? { signal: opts.signal } : {}),
      })
      if (opts.size !== undefined && dag.size !== opts.size)
        throw bad(
          'upload-size-mismatch',
          `the upload statement signs ${opts.size} bytes; the DAG under ${root} holds ${dag.size} when read`,
        )
      await moveIn(staged, dag.reachable, root)
      const pinned = await pin(root, opts.signal).catch((e) => {
        log.warn('weights-pin-failed', { root: root.toString(), error: e as Error })
        return false
      })
      const dropped =
        staged.blocks - dag.reachable.filter((c) => staged.sizeOf(c.toString()) !== undefined).length
      const result = { root, blocks: dag.reachable.length, bytes: dag.size, carBytes, dropped, pinned }
      log.info('weights-uploaded', {
        root: root.toString(),
        blocks: result.blocks,
        bytes: result.bytes,
        dropped,
        pinned,
      })
      return result
    } finally {
      await staged.discard().catch((e) => log.warn('upload-staging-cleanup-failed', { error: e as Error }))
    }
  }

  return {
    receive(source, opts) {
      const p = receive(source, opts)
      const tracked = p.catch(() => {}).finally(() => inFlight.delete(tracked))
      inFlight.add(tracked)
      return p
    },
    pin,
    async drain() {
      await Promise.allSettled([...inFlight])
    },
    gate: options.gate,
    close: () => options.gate.nonces.close(),
  }
}

/** Pins `root`, reading only the DAG's nodes (pin-walker.ts says why); false without a pins API. */
async function pinRoot(pins: UploadPins | undefined, root: CID, signal?: AbortSignal): Promise<boolean> {
  if (!pins) return false
  try {
    // `offline`: the DAG is complete here; a pin must never wait on bitswap.
    for await (const _ of pins.add(root, {
      offline: true,
      walker: unixfsPinWalker,
      ...(signal ? { signal } : {}),
    })) {
      // Each block walked gets its pin count; nothing to do with it here.
    }
  } catch (e) {
    if ((e as Error).name !== 'AlreadyPinnedError') throw e
  }
  return true
}

export interface OpenWeightsOptions {
  readonly blockstore: UploadBlockstore
  readonly pins?: UploadPins | undefined
  /** `HOME/upload-staging`: cleared now. */
  readonly stagingDir: string
  /** `HOME/upload-nonces`. */
  readonly noncesPath: string
  readonly federation: CID
  readonly peerId: string
  readonly clock: () => number
  readonly maxUploadsPerAuthor: number
  readonly maxUploads: number
  readonly idleMs: number
  readonly log?: Logger
}

/**
 * The uploads of a node as it starts: the staging directory cleared of what a stop or crash cut
 * off, the nonces of statements still fresh read back, and the slots.
 */
export async function openWeights(options: OpenWeightsOptions): Promise<Weights> {
  const log = options.log ?? silentLogger
  const { staging, cleared } = await UploadStaging.open(options.stagingDir, options.blockstore)
  if (cleared > 0) log.warn('upload-staging-cleared', { uploads: cleared })
  const nonces = await openUploadNonces(options.noncesPath, {
    clock: options.clock,
    windowMs: UPLOAD_WINDOW_MS,
  })
  return createWeights({
    blockstore: options.blockstore,
    staging,
    pins: options.pins,
    log,
    gate: {
      federation: options.federation,
      peerId: options.peerId,
      nonces,
      slots: new UploadSlots(options.maxUploadsPerAuthor, options.maxUploads),
      idleMs: options.idleMs,
      windowMs: UPLOAD_WINDOW_MS,
    },
  })
}
