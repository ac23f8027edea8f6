/**
 * What the CLI takes from the weights wing: a model directory listed, read, imported and planned
 * for publishing, its CAR, its headers described, a directory verified against a manifest, and
 * the HTTP contract of uploads and the gateway. Modules outside the node import the wing from here.
 */
export { directoryCar } from './car-stream.js'
export {
  type DirectoryImport,
  type DirectoryPlan,
  importDirectory,
  planDirectory,
} from './directory.js'
export { describeModel, type ModelDescription } from './headers.js'
export { CAR_TYPE, RAW_TYPE, UPLOAD_HEADERS } from './http-contract.js'
export {
  type FileDigest,
  type LocalFile,
  listDirectory,
  openListed,
  type PathIssue,
  pathProblem,
} from './local-files.js'
export { CID_PROFILE, discardBlocks } from './profile.js'
export { type VerifyDirectoryOptions, verifyDirectory } from './verify-directory.js'
export type { Problem, VerifyResult, WeightsManifest } from './verify-problems.js'
