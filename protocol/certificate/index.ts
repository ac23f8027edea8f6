/** Certificates (SPEC.md §12): format, building, verification and the trusted head. */
export * from './build.js'
export * from './format.js'
export { decodeTrustedHead, encodeTrustedHead } from './trust.js'
export * from './verify.js'
