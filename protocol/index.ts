/** The pure protocol: encoding, identities, records, the fold, certificates. No I/O, no clock. */
export * from './admission.js'
export * from './bytes.js'
export * from './canonical.js'
export * from './cbor.js'
export * from './certificate/index.js'
export * from './checkpoint.js'
export * from './cid.js'
export * from './cidlist.js'
export * from './codes.js'
export * from './did.js'
export * from './ed25519.js'
export * from './fold/index.js'
export * from './formats.js'
export * from './govstate.js'
export * from './limits.js'
// Not re-exported: fromSignedRecord, decodeOwnRecord and withSealLists make
// `Verified` values without checking signatures or lists; only the node's own
// log replay and tests reach for them, from './record.js' directly.
export {
  type AnyVerified,
  attachLists,
  cosignGenesis,
  type DecodeOptions,
  decodeRecord,
  type FinalizedEntry,
  isKind,
  readFinalized,
  readSealLists,
  type SealLists,
  signRecord,
  type Verified,
} from './record.js'
export * from './result.js'
export * from './schema.js'
export * from './seal.js'
export * from './signing.js'
export * from './stateroot.js'
export * from './tally.js'
export * from './types.js'
