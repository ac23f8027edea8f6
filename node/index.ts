/**
 * allmende/node — the node's public surface: a node built from parts (`createNode`) or from a
 * home directory (`startNode`), node homes and their config, key files, writing files
 * atomically, the offline model check, and the errors they throw. What `cli/` takes from the
 * node comes from here (and the weights from node/weights/index.ts).
 */
import './polyfill.js'

export type { NodeStatus } from './api.js'
export {
  adminToken,
  FILES,
  type InitOptions,
  inHome,
  initHome,
  loadConfig,
  loadGenesis,
  MIN_TOKEN_CHARS,
  type NodeConfig,
  parseConfig,
  parseGenesisFile,
  readToken,
  rotateToken,
} from './config.js'
export { type NodeOptions, startNode } from './daemon.js'
export { isNodeError, NodeError } from './errors.js'
export { pathExists, syncDirectory, type WriteAtomicOptions, writeAtomic } from './files.js'
export {
  type CreateKeyOptions,
  createKeyFile,
  DEFAULT_SCRYPT_N,
  type EncryptedKeyFile,
  isEncrypted,
  type KeyFile,
  keyFileDid,
  type LoadKeyOptions,
  loadSigner,
  type PlainKeyFile,
  readKeyFile,
  type Signer,
} from './identity.js'
export { type FetchedGenesis, type FetchGenesisOptions, fetchGenesis } from './join.js'
export { createLogger, type Level, type Logger, silentLogger } from './log.js'
export { type AllmendeNode, createNode, type NodeInit, type P2PFactory } from './node.js'
export { createP2P, type P2P, type P2POptions } from './p2p.js'
export {
  checkFiles,
  type ModelProblem,
  type ModelVerdict,
  proveWithCertificate,
  type StatusProof,
  statusProblem,
  type VerifyModelOptions,
  verdictOf,
  verifyModel,
} from './verify-model.js'
