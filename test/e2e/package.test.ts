/**
 * The npm package (package.json "files"): `npm pack` holds only what runs — the bin, the
 * compiled tree and its bundle and workers, their type declarations and bundled licences — and no
 * tests, benchmarks, fixtures, sources or source maps; and the built binary's `--version`.
 * Installing the tarball into a fresh prefix and running the demo from there is in .ci/run
 * (.ci/package-check), since it installs every dependency.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { PROTOCOL_VERSION } from '../../cli/version.js'
import { bin, root, runProcess } from '../support/cli.js'

interface PackedFile {
  path: string
}

interface PackageJson {
  version: string
  bin: Record<string, string>
  exports: unknown
}

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as PackageJson

/** The files `npm pack` would put in the tarball (a dry run, without the build it would start). */
function packedFiles(): string[] {
  const pack = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: root,
    encoding: 'utf8',
  })
  expect(pack.status, pack.stderr).toBe(0)
  const [packed] = JSON.parse(pack.stdout) as [{ files: PackedFile[] }]
  return packed.files.map((f) => f.path)
}

/** Every path an "exports" map names, however its conditions nest. */
function exportTargets(exports: unknown): string[] {
  if (typeof exports === 'string') return [exports.replace(/^\.\//, '')]
  if (exports === null || typeof exports !== 'object') return []
  return Object.values(exports).flatMap(exportTargets)
}

/** What may run or be read at run time: the bin, the compiled tree, its types and licences. */
const RUNS = /^(bin\/allmende\.js|dist\/.+\.(js|mjs|d\.ts)|dist\/[^/]+\.LEGAL\.txt)$/
/** What npm always adds, and the changelog. */
const ALWAYS = ['package.json', 'README.md', 'CHANGELOG.md', 'LICENSE']

describe('the npm package', () => {
  const files = packedFiles()

  it('holds only what runs: no tests, benchmarks, fixtures, TypeScript sources or source maps', () => {
    const extra = files.filter((f) => !RUNS.test(f) && !ALWAYS.includes(f))
    expect(extra).toEqual([])
    for (const f of files) {
      expect(f, f).not.toMatch(/^(test|bench|fixtures|scripts|docs|\.ci)\//)
      expect(f, f).not.toMatch(/(\.map|(?<!\.d)\.ts)$/)
    }
  })

  it('holds the bin, its bundle and workers, and every file the exports name', () => {
    const needed = [
      ...Object.values(pkg.bin).map((p) => p.replace(/^\.\//, '')),
      'dist/allmende.mjs',
      'dist/verify-worker.js',
      'dist/hash-worker.js',
      'dist/leaf-hash-worker.js',
      ...exportTargets(pkg.exports),
    ]
    for (const f of needed) expect(files, f).toContain(f)
  })

  it('allmende --version prints the package, protocol, Node and OpenSSL versions', async () => {
    const run = await runProcess(process.execPath, [bin, '--version'])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout.trim().split('\n')).toEqual([
      `allmende ${pkg.version}`,
      `protocol ${PROTOCOL_VERSION}`,
      `node ${process.versions.node}`,
      `openssl ${process.versions.openssl}`,
    ])
  })
})
