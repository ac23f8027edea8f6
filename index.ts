/**
 * allmende — the library entry point. The pure protocol (records, the fold,
 * certificates) is re-exported here and under `allmende/protocol`.
 */

export {
  type ModelProblem,
  type ModelVerdict,
  type VerifyModelOptions,
  verifyModel,
} from './node/verify-model.js'
export * from './protocol/index.js'
