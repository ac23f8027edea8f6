/** Certificates (SPEC.md §12): format, building and verification. */
export * from './build.js'
export * from './format.js'
export * from './verify.js'
