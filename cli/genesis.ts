/**
 * Genesis files as founders pass them around (protocol/SPEC.md §5): a CARv1 whose root block is
 * the genesis record. While co-signatures are still missing the genesis is not yet valid, so
 * reading here is lenient: canonical bytes, schema and the author's signature are checked;
 * co-signatures are checked one by one and reported; what is missing is listed.
 */
import { readFile } from 'node:fs/promises'
import { CarBufferReader } from '@ipld/car/buffer-reader'
import * as CarBufferWriter from '@ipld/car/buffer-writer'
import type { CID } from 'multiformats/cid'
import { writeAtomic } from '../node/index.js'
import {
  decodeRecord,
  decodeStrict,
  federationIdOf,
  GENESIS_SCAN_LIMITS,
  parseDid,
  recordSchema,
  type SignedRecord,
  signingBytes,
  zip215,
} from '../protocol/index.js'
import { fromSignedRecord } from '../protocol/record.js'
import { CliError } from './context.js'

export interface GenesisFile {
  readonly record: SignedRecord<'genesis'>
  readonly federation: CID
  /** Founding stewards other than the author. */
  readonly stewards: readonly string[]
  /** Stewards whose co-signature is present and verifies. */
  readonly cosigned: readonly string[]
  /** Stewards who have not co-signed yet. */
  readonly missing: readonly string[]
  /** Why the genesis is not (yet) valid; undefined once a node would take it. */
  readonly problem?: { readonly code: string; readonly message: string }
}

function invalid(path: string, message: string): CliError {
  return new CliError('genesis-invalid', `${path}: ${message}`)
}

export async function readGenesisFile(path: string): Promise<GenesisFile> {
  let bytes: Uint8Array
  try {
    bytes = new Uint8Array(await readFile(path))
  } catch (e) {
    throw new CliError('file-not-found', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`)
  }
  let record = bytes
  try {
    const car = CarBufferReader.fromBytes(bytes)
    const root = car.getRoots()[0]
    const block = root ? car.get(root) : undefined
    if (!block) throw invalid(path, 'the CAR has no root block')
    record = block.bytes
  } catch (e) {
    if (e instanceof CliError) throw e
    // Not a CAR: the record bytes themselves.
  }
  const decoded = decodeStrict(record, GENESIS_SCAN_LIMITS)
  if (!decoded.ok) throw invalid(path, `not a genesis record: ${decoded.message}`)
  const bad = recordSchema(decoded.value)
  if (bad) throw invalid(path, `not a valid record: ${bad.message}${bad.path ? ` (at ${bad.path})` : ''}`)
  const g = decoded.value as SignedRecord<'genesis'>
  if (g.kind !== 'genesis') throw invalid(path, `holds a ${g.kind} record, not a genesis`)
  const message = signingBytes(g)
  const key = parseDid(g.author)
  if (!key.ok || !zip215.verify(g.sig, message, key.value))
    throw invalid(path, `the author's signature does not verify (${g.author})`)
  const stewards = g.body.members
    .filter((m) => m.roles.includes('steward') && m.id !== g.author)
    .map((m) => m.id)
  const cosigned: string[] = []
  for (const c of g.cosigs ?? []) {
    const k = parseDid(c.id)
    if (!k.ok || !zip215.verify(c.sig, message, k.value))
      throw invalid(path, `the co-signature of ${c.id} does not verify`)
    cosigned.push(c.id)
  }
  const missing = stewards.filter((s) => !cosigned.includes(s))
  const full = decodeRecord(record)
  return {
    record: g,
    federation: federationIdOf(g),
    stewards,
    cosigned,
    missing,
    ...(full.ok ? {} : { problem: { code: full.code, message: full.message } }),
  }
}

/** The genesis as a CAR: one root, the record block. */
export function genesisCar(record: SignedRecord<'genesis'>): Uint8Array {
  const v = fromSignedRecord(record)
  const block = { cid: v.cid, bytes: v.bytes }
  const size = CarBufferWriter.headerLength({ roots: [v.cid] }) + CarBufferWriter.blockLength(block)
  const writer = CarBufferWriter.createWriter(new ArrayBuffer(size), { roots: [v.cid] })
  writer.write(block)
  return writer.close({ resize: true })
}

/** Writes the file atomically (node/files.ts), so a reader never sees half a genesis. */
export async function writeGenesisFile(
  path: string,
  record: SignedRecord<'genesis'>,
  options: { overwrite: boolean },
): Promise<void> {
  try {
    await writeAtomic(path, genesisCar(record), { mode: 0o644, overwrite: options.overwrite })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST' && !options.overwrite)
      throw new CliError('file-exists', `${path} already exists (use --force to replace it)`)
    throw new CliError('write-failed', `cannot write ${path}: ${(e as Error).message}`)
  }
}
