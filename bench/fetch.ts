/**
 * Benchmark (issue 7): a steward fetching a 256 MiB model from another steward, fully verified,
 * against `curl` of the same bytes over plain HTTP followed by `sha256sum` (same run, same files).
 *
 *     npm run build && node --import tsx bench/fetch.ts [MiB=256] [runs=3]
 *
 * The serving steward is a real daemon (`allmende node start`) holding the model in its
 * blockstore. The fetching steward is a node started in this process from the compiled code
 * (dist/), with an empty blockstore; "fully verified" is what it does before sealing
 * `weightsVerified: true`, `fetchAndVerify`:
 *
 *   fetchWeights — every block hashed against its CID and stored, each file's sha256 taken as
 *   the stream passes, the DAG walked, the root pinned — then verifyDag: every file's sha256 and
 *   size against the manifest, the file set, the UnixFS root rebuilt from the leaves.
 *
 * Two paths are timed: the serving steward's trustless gateway (one CAR stream, the path a
 * steward with `gateways` configured takes) and bitswap alone (`BENCH_BITSWAP=0` skips it). The
 * reference serves the same files from a plain Node HTTP static server in its own process,
 * fetched by one `curl` and then hashed by `sha256sum`. Each measure is the median of `runs`;
 * every fetch starts from an empty blockstore, the files are in the page cache for all of them
 * (each path reads them once before timing starts), and earlier runs' writes are synced first.
 * Both ends share this machine's cores, as they would not in a federation.
 *
 * Then the deployer's case (`BENCH_CLI=0` skips it, `BENCH_CLI=only` runs it alone): `allmende
 * fetch` of the same size from one node against curl of the DAG as a CAR + sha256sum
 * (bench/fetch-multi-support.ts).
 */
import '../node/polyfill.js'
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FsBlockstore } from 'blockstore-fs'
import { LevelDatastore } from 'datastore-level'
import { createHeliaLight } from 'helia'
import { initHome } from '../node/config.js'
import { silentLogger } from '../node/log.js'
import type { AllmendeNode } from '../node/node.js'
import { importDirectory } from '../node/weights/directory.js'
import { unixfsPinWalker } from '../node/weights/pin-walker.js'
import type { UploadPins } from '../node/weights/uploads.js'
import { startDaemon } from '../test/support/daemon.js'
import { rulesWith, Simulator } from '../test/support/simulator.js'
import { cliCase } from './fetch-multi-support.js'

// The fetching steward runs the compiled node (dist/, from `npm run build`), as a user's does:
// from sources, its hashing workers would start through tsx's loader, several times slower.
const compiled = async <T>(path: string): Promise<T> =>
  (await import(new URL(`../dist/${path}`, import.meta.url).href)) as T
const { startNode } = await compiled<typeof import('../node/index.js')>('node/index.js')
const { BlockFiles } = await compiled<typeof import('../node/weights/block-files.js')>(
  'node/weights/block-files.js',
)
const { fetchAndVerify } = await compiled<typeof import('../node/weights/fetch-verify.js')>(
  'node/weights/fetch-verify.js',
)

const MiB = 1024 * 1024
const sizeMiB = Number(process.argv[2] ?? 256)
const runs = Number(process.argv[3] ?? 3)
const FILES = 4

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`
const rate = (ms: number) => `${((sizeMiB * 1000) / ms).toFixed(0)} MiB/s`

async function timed(f: () => Promise<void>): Promise<number> {
  const t = performance.now()
  await f()
  return performance.now() - t
}

/**
 * Writes of earlier runs reach the disk before the next run is timed. Every run writes 256 MiB,
 * and without this the kernel's writeback of one run (after 30 s, or past the dirty limit)
 * lands in a later one, whichever path that is.
 */
function settle(): void {
  run('sync', [])
}

function run(cmd: string, args: string[], cwd?: string): void {
  const r = spawnSync(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'inherit'] })
  if (r.status !== 0) throw new Error(`${cmd} exited ${r.status}`)
}

const root = await mkdtemp(join(tmpdir(), 'allmende-bench-fetch-'))
if (process.env.BENCH_CLI === 'only') {
  try {
    await cliCase(join(root, 'cli'), sizeMiB, runs)
  } finally {
    await rm(root, { recursive: true, force: true })
  }
  process.exit(0)
}
const cleanup: (() => Promise<unknown>)[] = []
// Ctrl-C: stop the daemon and the file server, remove the model; nothing is left running.
process.once('SIGINT', () => {
  void (async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {})
    await rm(root, { recursive: true, force: true })
    process.exit(130)
  })()
})
try {
  // The model: FILES random files (incompressible, no repeated blocks) and a config.
  const modelDir = join(root, 'model')
  await mkdir(modelDir)
  const names: string[] = []
  for (let i = 0; i < FILES; i++) {
    const name = `model-0000${i + 1}-of-0000${FILES}.safetensors`
    names.push(name)
    await writeFile(join(modelDir, name), randomBytes(Math.floor((sizeMiB * MiB) / FILES)))
  }
  await writeFile(join(modelDir, 'config.json'), '{"model_type":"bench"}\n')
  names.push('config.json')

  const sim = new Simulator({
    members: [{ name: 's', roles: ['steward', 'publisher', 'voter'], weight: 1 }],
    rules: rulesWith({ sealThreshold: 1 }),
    base: Date.now(),
    name: 'bench-fetch',
  })
  // The serving steward: a daemon whose blockstore holds the model.
  const homeA = join(root, 'a')
  await initHome(homeA, {
    genesis: sim.genesis,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    api: '127.0.0.1:0',
    logLevel: 'warn',
  })
  const held = new FsBlockstore(join(homeA, 'blocks'))
  await held.open()
  const model = await importDirectory(modelDir, { blockstore: held })
  // Pinned in the daemon's own pin records, as an import pins it: its gateway serves only that.
  const pinRecords = new LevelDatastore(join(homeA, 'datastore'))
  await pinRecords.open()
  const pins: UploadPins = createHeliaLight({ blockstore: held, datastore: pinRecords }).pins
  for await (const _ of pins.add(model.root, { walker: unixfsPinWalker, offline: true })) {
    // each block walked gets its record
  }
  await pinRecords.close()
  await held.close()
  const manifest = { weights: model.root, files: [...model.files], size: model.size }
  const a = await startDaemon(homeA)
  cleanup.push(() => a.kill())

  // The reference: a static file server in its own process, curl, then sha256sum.
  const server = spawn(
    process.execPath,
    [
      '-e',
      `const http=require('node:http'),fs=require('node:fs'),path=require('node:path');
       const s=http.createServer((q,r)=>{const f=path.join(process.argv[1],path.basename(q.url));
         fs.stat(f,(e,st)=>{if(e){r.writeHead(404);r.end();return}
           r.writeHead(200,{'content-length':st.size});fs.createReadStream(f).pipe(r)})});
       s.listen(0,'127.0.0.1',()=>console.log(s.address().port))`,
      modelDir,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  cleanup.push(async () => server.kill())
  const port = await new Promise<number>((ok) => server.stdout!.once('data', (d) => ok(Number(String(d)))))
  const curlDir = join(root, 'curl')
  const reference: number[] = []
  for (let i = 0; i <= runs; i++) {
    await rm(curlDir, { recursive: true, force: true })
    await mkdir(curlDir)
    const args = names.flatMap((n) => ['-o', n, `http://127.0.0.1:${port}/${n}`])
    settle()
    const ms = await timed(async () => {
      run('curl', ['-sfS', ...args], curlDir)
      run('sha256sum', names, curlDir)
    })
    if (i > 0) reference.push(ms) // the first run warms the page cache
  }

  // For the record: the gateway's CAR alone, fetched by curl to /dev/null (transport, no checks).
  const carOnly: number[] = []
  for (let i = 0; i <= runs; i++) {
    settle()
    const ms = await timed(async () =>
      run('curl', [
        '-sfS',
        '-o',
        '/dev/null',
        '-H',
        'accept: application/vnd.ipld.car',
        `${a.api}/ipfs/${model.root}?format=car&dag-scope=all&dups=n`,
      ]),
    )
    if (i > 0) carOnly.push(ms)
  }

  // The fetching steward, started fresh for each run.
  let n = 0
  const phases: string[] = []
  const fetchOnce = async (path: 'gateway' | 'bitswap'): Promise<number> => {
    const home = join(root, `b-${n++}`)
    const config = await initHome(home, {
      genesis: sim.genesis,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: path === 'bitswap' ? [a.addresses[0]!] : [],
      api: '127.0.0.1:0',
      logLevel: 'warn',
    })
    const b: AllmendeNode = await startNode({
      home,
      config,
      genesis: sim.genesis,
      log: silentLogger,
      helia: true,
      sync: false,
    })
    // The node's own kind of blockstore, on its blocks directory.
    const store = new BlockFiles(join(home, 'blocks'))
    await store.open()
    try {
      if (path === 'bitswap') {
        const deadline = Date.now() + 10_000
        while (b.p2p.peers().length === 0 && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 50))
      }
      let fetchMs = 0
      settle()
      const ms = await timed(async () => {
        const t0 = performance.now()
        // What the steward's weights check runs: fetch and verify overlapped, then the verdict.
        const r = await fetchAndVerify({
          root: model.root,
          manifest,
          maxModelBytes: 2 * sizeMiB * MiB,
          blockstore: store,
          helia: b.p2p.helia,
          signal: AbortSignal.timeout(300_000),
          maxBytes: 2 * sizeMiB * MiB,
          ...(path === 'gateway' ? { gateways: [a.api] } : {}),
          pin: async (root, signal) => {
            const pinned = await b.weights!.pin(root, signal)
            fetchMs = performance.now() - t0
            return pinned
          },
        })
        if (r.fetchError) throw r.fetchError
        if (!r.fetch?.pinned) throw new Error('not pinned')
        if (path === 'gateway' && r.fetch.viaGateway !== r.fetch.blocks)
          throw new Error('not all from the gateway')
        if (!r.verdict.ok) throw new Error(`verify failed: ${JSON.stringify(r.verdict.problems[0])}`)
      })
      phases.push(`${path}: fetched and pinned after ${secs(fetchMs)}, verified after ${secs(ms)}`)
      return ms
    } finally {
      await store.close()
      await b.stop()
      await rm(home, { recursive: true, force: true })
    }
  }
  const gateway: number[] = []
  const bitswap: number[] = []
  await fetchOnce('gateway') // warm-up: the serving daemon reads its blocks into the page cache
  for (let i = 0; i < runs; i++) gateway.push(await fetchOnce('gateway'))
  if (process.env.BENCH_BITSWAP !== '0')
    for (let i = 0; i < runs; i++) bitswap.push(await fetchOnce('bitswap'))

  const ref = median(reference)
  console.log(`model: ${sizeMiB} MiB in ${FILES} files + config.json; median of ${runs} runs`)
  console.log(`reference  curl + sha256sum           ${secs(ref)}  ${rate(ref)}`)
  for (const [label, xs] of [
    ['gateway    fetch + pin + verify       ', gateway],
    ['bitswap    fetch + pin + verify       ', bitswap],
  ] as const) {
    if (xs.length === 0) continue
    const m = median(xs)
    console.log(`${label}${secs(m)}  ${rate(m)}  ratio ${(m / ref).toFixed(2)}×`)
  }
  console.log(`  (the gateway's CAR alone, curl to /dev/null: ${secs(median(carOnly))})`)
  for (const p of phases) console.log(`  ${p}`)
  const ratio = median(gateway) / ref
  console.log(`target: gateway path ≤ 1.0× the reference: ${ratio <= 1 ? 'met' : 'missed'}`)
  for (const c of cleanup.reverse()) await c().catch(() => {})
  cleanup.length = 0
  if (process.env.BENCH_CLI !== '0') await cliCase(join(root, 'cli'), sizeMiB, runs)
} finally {
  for (const c of cleanup.reverse()) await c().catch(() => {})
  await rm(root, { recursive: true, force: true })
}
