/**
 * Bundles the compiled CLI (dist/cli/main.js) and everything it imports into one file,
 * dist/allmende.mjs, which `bin/allmende.js` runs. Why: libp2p, Helia and Fastify are
 * several hundred small ES modules, and resolving and reading them one by one took about
 * 2 s of every start on Node 20; one bundled file loads in about 0.4 s. The package's
 * library exports (dist/index.js, dist/protocol/) stay unbundled.
 *
 * classic-level (LevelDB, a native addon) stays external: it is loaded from node_modules.
 * The workers are bundled beside it: record verification (dist/verify-worker.js), file hashing
 * (dist/hash-worker.js) and a gateway fetch's block hashing (dist/leaf-hash-worker.js).
 */
import { build } from 'esbuild'

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['classic-level'],
  // CommonJS dependencies inside an ES module bundle still call require().
  banner: {
    js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
  },
  logLevel: 'warning',
  legalComments: 'linked',
}
await build({ ...common, entryPoints: ['dist/cli/main.js'], outfile: 'dist/allmende.mjs' })
// The record verification worker (node/verify-pool.ts): it is loaded from next to the bundle.
await build({ ...common, entryPoints: ['dist/node/verify-worker.js'], outfile: 'dist/verify-worker.js' })
// The file hashing worker (node/weights/hash-pool.ts), likewise.
await build({
  ...common,
  entryPoints: ['dist/node/weights/hash-worker.js'],
  outfile: 'dist/hash-worker.js',
})
// The block hashing worker of a gateway fetch (node/weights/leaf-hasher.ts), likewise.
await build({
  ...common,
  entryPoints: ['dist/node/weights/leaf-hash-worker.js'],
  outfile: 'dist/leaf-hash-worker.js',
})
