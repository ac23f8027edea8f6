/**
 * allmende — the library entry point. The pure protocol (records, the fold,
 * certificates) is re-exported here and under `allmende/protocol`.
 */
export * from './protocol/index.js'
