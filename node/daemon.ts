/**
 * A node kept in a home directory (node/config.ts lists its files): `startNode` reads what the
 * caller did not pass in — the config, the genesis, the peer key (made on first start), the
 * steward key (unlocked with the passphrase the launcher was given) — makes sure the admin
 * token is sound, and builds the node from those parts (`createNode`, node/node.ts). The CLI's
 * `allmende node start` is the launcher: it reads the passphrase from the environment and runs
 * the node until a signal.
 */
import './polyfill.js'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Signer } from '../protocol/index.js'
import { adminToken, FILES, inHome, loadConfig, loadGenesis, type NodeConfig } from './config.js'
import { NodeError } from './errors.js'
import { writeAtomic } from './files.js'
import { loadSigner } from './identity.js'
import { createLogger } from './log.js'
import { type AllmendeNode, createNode, type NodeInit } from './node.js'
import { generatePeerKey, type PrivateKey, peerKeyFromBytes, peerKeyToBytes } from './p2p.js'

/** A home, and any parts to use instead of what the home holds (tests pass a config, a clock…). */
export interface NodeOptions extends Partial<Omit<NodeInit, 'home'>> {
  readonly home: string
  /** Unlocks an encrypted steward key file; the node never reads it from the environment. */
  readonly stewardPassphrase?: string
}

/** The peer key in the home; a new one, written there, on first start. */
async function loadPeerKey(home: string): Promise<PrivateKey> {
  const path = join(home, FILES.peerKey)
  try {
    return peerKeyFromBytes(await readFile(path))
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new NodeError('peer-key-invalid', `${path} is not a peer key: ${(e as Error).message}`)
    }
  }
  const key = await generatePeerKey()
  await writeAtomic(path, peerKeyToBytes(key), { mode: 0o600 })
  return key
}

/** The steward key, if the config names one (a key file as `allmende init --steward-key` writes it). */
async function loadStewardKey(
  home: string,
  config: NodeConfig,
  passphrase: string | undefined,
): Promise<Signer | undefined> {
  if (!config.stewardKeyFile) return undefined
  return loadSigner(inHome(home, config.stewardKeyFile), passphrase ? { passphrase } : {})
}

/** Starts the node kept in `options.home`, with any parts the caller passed in instead. */
export async function startNode(options: NodeOptions): Promise<AllmendeNode> {
  const { home, stewardPassphrase, ...parts } = options
  const config = parts.config ?? (await loadConfig(home))
  const log = parts.log ?? createLogger({ level: config.logLevel })
  const genesis = parts.genesis ?? (await loadGenesis(home, config))
  const stewardKey = parts.stewardKey ?? (await loadStewardKey(home, config, stewardPassphrase))
  // Refuses to start with an empty or short token (and makes one for a new home).
  await adminToken(home)
  return createNode({
    ...parts,
    home,
    config,
    genesis,
    clock: parts.clock ?? Date.now,
    log,
    peerKey: parts.peerKey ?? (await loadPeerKey(home)),
    ...(stewardKey ? { stewardKey } : {}),
  })
}
