/**
 * The problems a weights check reports, as data with stable codes (`{ok, problems: [{code, path?,
 * message}]}`, the shape `allmende verify --json` prints), and the faults raised while reading
 * that become them.
 */
import type { CID } from 'multiformats/cid'
import { equalBytes } from '../../protocol/bytes.js'
import type { ManifestBody, ManifestFile } from '../../protocol/types.js'
import { isNodeError, NodeError } from '../errors.js'
import { comparePaths, type FileDigest, pathProblem } from './local-files.js'

export type ProblemCode =
  | 'file-missing'
  | 'file-extra'
  | 'size-mismatch'
  | 'sha256-mismatch'
  | 'root-mismatch'
  | 'block-missing'
  | 'block-corrupt'
  | 'not-unixfs'
  | 'oversize'
  | 'aborted'
  | 'path-invalid'
  | 'symlink-escapes'
  | 'special-file'
  | 'unreadable'
  | 'too-many-files'
  | 'file-changed'

export interface Problem {
  readonly code: ProblemCode
  readonly path?: string
  readonly message: string
}

export interface VerifyResult {
  readonly ok: boolean
  readonly problems: readonly Problem[]
}

/** The fields of a manifest that weights are checked against. */
export type WeightsManifest = Pick<ManifestBody, 'weights' | 'files' | 'size'>

/** Codes a `NodeError` raised while reading may carry and that are reported as problems. */
const READ_CODES: ReadonlySet<string> = new Set<ProblemCode>([
  'block-missing',
  'block-corrupt',
  'not-unixfs',
  'aborted',
  'path-invalid',
  'special-file',
  'unreadable',
  'too-many-files',
  'file-changed',
])

/** The manifest's files by path; unusable paths become problems (and are not looked up). */
export function manifestFiles(manifest: WeightsManifest, problems: Problem[]): Map<string, ManifestFile> {
  const wanted = new Map<string, ManifestFile>()
  let sum = 0
  for (const f of manifest.files) {
    sum += f.size
    const why = pathProblem(f.path)
    if (why !== undefined || wanted.has(f.path)) {
      const message = `the manifest lists ${JSON.stringify(f.path.slice(0, 200))}: ${why ?? 'twice'}`
      problems.push({ code: 'path-invalid', path: f.path, message })
    } else wanted.set(f.path, f)
  }
  if (sum !== manifest.size) {
    problems.push({
      code: 'size-mismatch',
      message: `the manifest's size ${manifest.size} is not the sum of its file sizes (${sum})`,
    })
  }
  return wanted
}

export function compareDigests(
  wanted: Map<string, ManifestFile>,
  digests: Map<string, FileDigest>,
  out: Problem[],
) {
  for (const [path, d] of digests) {
    const m = wanted.get(path)
    if (m === undefined) continue
    if (d.size !== m.size) out.push(sizeMismatch(path, d.size, m.size))
    else if (!equalBytes(d.sha256, m.sha256)) {
      out.push({
        code: 'sha256-mismatch',
        path,
        message: `${path}: sha256 ${hex(d.sha256)}, the manifest says ${hex(m.sha256)}`,
      })
    }
  }
}

export function result(problems: Problem[]): VerifyResult {
  problems.sort(
    (a, b) => comparePaths(a.path ?? '', b.path ?? '') || (a.code < b.code ? -1 : a.code > b.code ? 1 : 0),
  )
  return { ok: problems.length === 0, problems }
}

export function sizeMismatch(path: string, actual: number, expected: number): Problem {
  return { code: 'size-mismatch', path, message: `${path}: ${actual} bytes, the manifest says ${expected}` }
}

export function rootMismatch(actual: CID, expected: CID): Problem {
  return { code: 'root-mismatch', message: `the UnixFS root is ${actual}, the manifest says ${expected}` }
}

export function oversize(bytes: number, max: number, what: string): Problem {
  return { code: 'oversize', message: `${what} holds ${bytes} bytes, more than maxModelBytes (${max})` }
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

/** Turns anything raised while reading into a problem; unexpected errors are rethrown. */
export function asProblem(e: unknown, path: string | undefined): Problem {
  if (isNodeError(e) && READ_CODES.has(e.code)) {
    const p = { code: e.code as ProblemCode, message: e.message }
    return path === undefined ? p : { ...p, path }
  }
  throw e
}

/** The file a fault was raised for (set where the path is known, read where it is reported). */
export const faultPaths = new WeakMap<object, string>()

export function fault(code: ProblemCode, message: string, path?: string): NodeError {
  const e = new NodeError(code, message, { status: 422 })
  if (path !== undefined) faultPaths.set(e, path)
  return e
}

/** Anything the exporter raises about a block's content means the DAG is not UnixFS as made. */
export function asFault(e: unknown, path: string): NodeError {
  const err = isNodeError(e) ? e : fault('not-unixfs', `${path}: ${(e as Error)?.message ?? String(e)}`)
  if (!faultPaths.has(err)) faultPaths.set(err, path)
  return err
}
