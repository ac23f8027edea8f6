/**
 * Benchmark: `allmende model publish` of a multi-file model into a running node (issue:
 * deployer and publisher benchmarks).
 *
 *   npm run build && npx tsx bench/publish.ts [runs=5] [mib=1024]
 *
 * A generated safetensors model of about 1 GiB (shards of up to 256 MiB beside config.json and
 * tokenizer.json) is published with the real binary,
 *
 *   allmende model publish DIR --name N --version 1.0.0 --license Apache-2.0 --language en
 *
 * each run into a fresh node daemon (its own home, an empty blockstore) on loopback; the time is
 * the publish process from spawn to exit: process start, hashing (the sha256 of every file and
 * the `unixfs-v1-2025` root), the CAR upload, which the node checks block by block against the
 * CIDs, stores and pins, and the signed manifest's submission. The reference, measured in the
 * same run on the same page-cached files: `ipfs-car pack DIR --output FILE.car` (the same UnixFS
 * DAG, hashed once, written to one local file). Target: ≤ 1.0×. Also the publish process's peak
 * RSS. Runs alternate (reference, publish); each figure is the median of `runs`, after a warm-up
 * run of each.
 */
import { readdir, rm } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import {
  allmende,
  benchDir,
  check,
  makeModel,
  median,
  oneStewardFederation,
  publishArgs,
  type Run,
  requireBuild,
  root,
  runCommand,
  seconds,
} from './weights-support.js'

const RUNS = Number(process.argv[2] ?? 5)
const MIB = Number(process.argv[3] ?? 1024)
requireBuild()

const { dir, cleanup } = await benchDir('publish')

try {
  const modelDir = join(dir, 'model')
  const model = await makeModel(modelDir, MIB, 1)
  console.log(`generated ${model.files.length} files, ${(model.bytes / 2 ** 20).toFixed(0)} MiB`)
  if ((await readdir(modelDir)).some((f) => f.startsWith('.')))
    throw new Error('ipfs-car skips dotfiles: the reference would pack another directory')

  const fed = await oneStewardFederation(dir)
  const car = join(dir, 'reference.car')
  const ipfsCar = async (): Promise<Run & { root: string }> => {
    const r = await runCommand(join(root, 'node_modules/.bin/ipfs-car'), ['pack', modelDir, '--output', car])
    if (r.code !== 0) throw new Error(`ipfs-car: ${r.stderr}`)
    await rm(car, { force: true })
    return { ...r, root: r.stdout.trim() }
  }
  let nodes = 0
  const publish = async (): Promise<Run & { weights: string }> => {
    // A fresh node each time: an empty blockstore, as for a model published for the first time.
    const home = await fed.initNode(`node-${nodes++}`, false)
    const daemon = await fed.start(home)
    try {
      const r = check(
        await allmende(
          publishArgs(modelDir, 'bench-model'),
          { ...fed.env, ALLMENDE_NODE: daemon.api },
          {
            rss: join(dir, 'rss'),
          },
        ),
        'publish',
      )
      return { ...r, weights: r.json().weights as string }
    } finally {
      // The home stays until the end: deleting a thousand block files between runs made ext4
      // scan its recently deleted inodes when the next run created files, an artifact no node
      // publishing a model meets.
      await daemon.kill()
    }
  }

  const warm = [await ipfsCar(), await publish()] as const
  if (warm[0].root !== warm[1].weights)
    throw new Error(`ipfs-car packed ${warm[0].root}, publish uploaded ${warm[1].weights}: not the same DAG`)
  const refs: Run[] = []
  const ours: Run[] = []
  for (let i = 0; i < RUNS; i++) {
    refs.push(await ipfsCar())
    ours.push(await publish())
  }
  await fed.close()

  const ref = median(refs.map((r) => r.ms))
  const pub = median(ours.map((r) => r.ms))
  const rss = Math.max(...ours.map((r) => r.maxRssKiB ?? Number.NaN)) / 1024
  console.log('')
  console.log(
    `${availableParallelism()} cores, median of ${RUNS} runs; wall clock from spawn to exit (process start included)`,
  )
  console.log(`same DAG: ${warm[1].weights}`)
  console.log('')
  console.log('| model | ipfs-car pack | allmende model publish | ratio | publish peak RSS |')
  console.log('| --- | --- | --- | --- | --- |')
  console.log(
    `| ${(model.bytes / 2 ** 20).toFixed(0)} MiB, ${model.files.length} files | ${seconds(ref)} s | ${seconds(pub)} s | ${(pub / ref).toFixed(2)}× | ${rss.toFixed(0)} MiB |`,
  )
  console.log('')
  console.log(
    `all runs: ipfs-car ${refs.map((r) => seconds(r.ms)).join(' ')} s; publish ${ours.map((r) => seconds(r.ms)).join(' ')} s, peak RSS ${ours.map((r) => ((r.maxRssKiB ?? Number.NaN) / 1024).toFixed(0)).join(' ')} MiB`,
  )
  console.log('target: publish ≤ 1.0× ipfs-car pack')
} finally {
  await cleanup()
}
