/**
 * The certificate header (SPEC.md §12.1): the CAR's one root, a DAG-CBOR map with exactly the
 * keys of its version. Version 2 says which mode the file is in and where its chain starts
 * (docs/adr/0020, 0021); version 1, the older full certificate from the genesis, is still read.
 */
import { CID } from 'multiformats/cid'
import { decodeStrict, encode, type ScanLimits } from '../cbor.js'
import { cidKey, cidOfBlock } from '../cid.js'
import type { Block } from '../cidlist.js'
import { isPlainMap } from '../schema.js'
import { CERTIFICATE_MODES, type CertificateHeader, type CertificateMode } from './format.js'

/** The limits a header is read under (SPEC.md §3.1's table of blocks that are not records). */
const HEADER_SCAN: ScanLimits = {
  maxBytes: 65_536,
  maxDepth: 16,
  maxCollectionItems: 4096,
  maxStringBytes: 16_384,
  maxBytesLength: 1024,
}

const HEADER_KEYS = {
  1: ['certificate', 'checkpoint', 'federation', 'genesis', 'model'],
  2: ['certificate', 'checkpoint', 'federation', 'genesis', 'mode', 'model', 'since'],
} as const

/** The header block of a version 2 certificate. */
export function headerBlock(header: Omit<CertificateHeader, 'version'>): Block {
  const bytes = encode({
    certificate: 2,
    federation: header.federation,
    model: header.model,
    genesis: header.genesis,
    checkpoint: header.checkpoint,
    mode: header.mode,
    since: header.since,
  })
  return { cid: cidOfBlock(bytes), bytes }
}

/** Why the file's header cannot be used (a `cert-header` message), or the header. */
export function readHeader(
  roots: readonly CID[],
  blocks: ReadonlyMap<string, Block>,
  federation: CID,
): { header: CertificateHeader } | { problem: string } {
  if (roots.length !== 1) return { problem: `the CAR names ${roots.length} roots; a certificate has one` }
  const bytes = blocks.get(cidKey(roots[0]!))?.bytes
  if (!bytes) return { problem: 'the root block (the header) is not in the file' }
  const decoded = decodeStrict(bytes, HEADER_SCAN)
  if (!decoded.ok || !isPlainMap(decoded.value))
    return { problem: 'the root block is not a DAG-CBOR map (the header)' }
  const fields = decoded.value
  const version = fields.certificate
  if (version !== 1 && version !== 2) {
    return {
      problem: `the header's certificate version ${String(version)} is not one this verifier reads (1 or 2): upgrade the verifier`,
    }
  }
  const keys = Object.keys(fields).sort()
  const expected: readonly string[] = HEADER_KEYS[version]
  if (keys.length !== expected.length || keys.some((k, i) => k !== expected[i]))
    return { problem: `a version ${version} header has exactly the keys ${expected.join(', ')}` }
  return headerFields(version, fields, federation)
}

/** The checks on the header's values, one per key. */
function headerFields(
  version: 1 | 2,
  fields: Record<string, unknown>,
  federation: CID,
): { header: CertificateHeader } | { problem: string } {
  const headerFederation = CID.asCID(fields.federation)
  if (!headerFederation?.equals(federation))
    return { problem: `the header names another federation than ${federation}` }
  if (typeof fields.model !== 'string') return { problem: 'the header’s model is not a text' }
  const genesis = CID.asCID(fields.genesis)
  if (!genesis) return { problem: 'the header’s genesis is not a CID' }
  const checkpoint = CID.asCID(fields.checkpoint)
  if (!checkpoint) return { problem: 'the header’s checkpoint is not a CID' }
  const mode = version === 1 ? 'full' : fields.mode
  if (!CERTIFICATE_MODES.includes(mode as CertificateMode))
    return { problem: 'the header’s mode is neither "full" nor "compact"' }
  const since = version === 1 || fields.since === null ? null : CID.asCID(fields.since)
  if (since === null && version === 2 && fields.since !== null)
    return { problem: 'the header’s since is neither null nor a CID' }
  const header = { version, federation, model: fields.model, genesis, checkpoint, mode, since }
  return { header: header as CertificateHeader }
}
