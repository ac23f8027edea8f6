/**
 * Benchmark: `allmende verify` on a multi-file model, the deployer's check before inference
 * (issue: deployer and publisher benchmarks).
 *
 *   npm run build && npx tsx bench/verify.ts [runs=5] [mib=1024] [smallMib=256]
 *
 * A one-steward federation on loopback ratifies two generated safetensors models (about 1 GiB
 * and 256 MiB, shards of 60 to 260 MiB beside config.json and tokenizer.json) and certifies them;
 * the node is then stopped and every verification is offline, with the exported certificate:
 *
 *   allmende verify DIR --model N@V --certificate C --federation F --max-age 1h [--cid]
 *
 * through the real binary (process start, bundle load and the certificate check included). The
 * reference, measured in the same run on the same (page-cached) files: `openssl dgst -sha256
 * FILES...`, one process hashing the files one after another. Targets: verify ≤ 1.0× the
 * reference, `--cid` (which also recomputes the UnixFS root, a second sha256 of every 1 MiB leaf)
 * ≤ 1.5×, and a peak RSS under 200 MB that does not grow with the model (measured at both sizes).
 * Each figure is the median of `runs`; a warm-up run of each comes first.
 */
import { readdir } from 'node:fs/promises'
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
  runCommand,
  seconds,
} from './weights-support.js'

const RUNS = Number(process.argv[2] ?? 5)
const BIG = Number(process.argv[3] ?? 1024)
const SMALL = Number(process.argv[4] ?? 256)
requireBuild()

const { dir, cleanup } = await benchDir('verify')

interface Model {
  readonly name: string
  readonly dir: string
  readonly files: readonly string[]
  readonly bytes: number
  certificate: string
}

try {
  const t0 = performance.now()
  const models: Model[] = []
  for (const [name, mib, seed] of [
    ['bench-big', BIG, 1],
    ['bench-small', SMALL, 2],
  ] as const) {
    const modelDir = join(dir, name)
    const m = await makeModel(modelDir, mib, seed)
    models.push({
      name,
      dir: modelDir,
      files: m.files,
      bytes: m.bytes,
      certificate: join(dir, `${name}.car`),
    })
  }
  const [big, small] = models as [Model, Model]
  console.log(
    `generated ${models.map((m) => `${m.name}: ${m.files.length} files, ${(m.bytes / 2 ** 20).toFixed(0)} MiB`).join('; ')} in ${seconds(performance.now() - t0)} s`,
  )

  // Publish, ratify and certify both, then stop the node: verification is offline.
  const fed = await oneStewardFederation(dir)
  const daemon = await fed.start(await fed.initNode('node'))
  const on = { ...fed.env, ALLMENDE_NODE: daemon.api }
  for (const m of models) {
    check(await allmende(publishArgs(m.dir, m.name), on), `publish ${m.name}`)
    const p = check(
      await allmende(['--json', 'propose', 'ratify', `${m.name}@1.0.0`, '--closes', '3s'], on),
      'propose',
    )
    check(await allmende(['--json', 'vote', p.json().proposal as string, 'yes'], on), 'vote')
  }
  const verifyArgs = (m: Model, cid: boolean) => [
    '--json',
    'verify',
    m.dir,
    '--model',
    `${m.name}@1.0.0`,
    '--certificate',
    m.certificate,
    '--federation',
    fed.id,
    '--max-age',
    '1h',
    ...(cid ? ['--cid'] : []),
  ]
  // A deployer's home per model: verify keeps the highest checkpoint it accepted per federation
  // and refuses older ones, and each model's certificate carries the checkpoint it was exported at.
  const deployer = (m: Model) => ({ ALLMENDE_HOME: join(dir, `deployer-${m.name}`) })
  for (const m of models) {
    // A certificate whose checkpoint covers the decision: checkpoints come every 2 s.
    let last: Run | undefined
    for (let i = 0; i < 240 && last?.code !== 0; i++) {
      last = await allmende(['--json', 'certificate', 'export', `${m.name}@1.0.0`, '-o', m.certificate], on)
      if (last.code === 0) last = await allmende(verifyArgs(m, false), deployer(m))
      if (last.code !== 0) await new Promise((r) => setTimeout(r, 500))
    }
    if (last?.code !== 0)
      throw new Error(`${m.name} was not certified in 2 minutes: ${last?.stdout}${last?.stderr}`)
  }
  await fed.close()
  console.log(`ratified and certified both in ${seconds(performance.now() - t0)} s; node stopped`)

  const rssFile = join(dir, 'rss')
  const verify = async (m: Model, cid: boolean): Promise<Run> =>
    check(await allmende(verifyArgs(m, cid), deployer(m), { rss: rssFile }), `verify ${m.name}`)
  const openssl = async (m: Model): Promise<Run> => {
    const files = (await readdir(m.dir)).sort().map((f) => join(m.dir, f))
    const r = await runCommand('openssl', ['dgst', '-sha256', ...files])
    if (r.code !== 0) throw new Error(`openssl: ${r.stderr}`)
    return { ...r, json: () => ({}) }
  }

  const series: Record<string, Run[]> = {}
  const add = (key: string, r: Run) => {
    ;(series[key] ??= []).push(r)
  }
  // Warm-up (page cache, the binary's first load), then the measured runs interleaved.
  for (const m of models) {
    await openssl(m)
    await verify(m, false)
    await verify(m, true)
  }
  for (let i = 0; i < RUNS; i++) {
    for (const m of models) {
      add(`openssl ${m.name}`, await openssl(m))
      add(`verify ${m.name}`, await verify(m, false))
      add(`cid ${m.name}`, await verify(m, true))
    }
  }
  const ms = (key: string) => median(series[key]!.map((r) => r.ms))
  const rss = (key: string) => Math.max(...series[key]!.map((r) => r.maxRssKiB ?? Number.NaN)) / 1024

  console.log('')
  console.log(
    `${availableParallelism()} cores, median of ${RUNS} runs; times are wall clock from spawn to exit (process start included)`,
  )
  console.log('')
  console.log(
    '| model | openssl dgst -sha256 | verify | ratio | verify --cid | ratio | peak RSS verify / --cid |',
  )
  console.log('| --- | --- | --- | --- | --- | --- | --- |')
  for (const m of [big, small]) {
    const ref = ms(`openssl ${m.name}`)
    const v = ms(`verify ${m.name}`)
    const c = ms(`cid ${m.name}`)
    console.log(
      `| ${(m.bytes / 2 ** 20).toFixed(0)} MiB, ${m.files.length} files | ${seconds(ref)} s | ${seconds(v)} s | ${(v / ref).toFixed(2)}× | ${seconds(c)} s | ${(c / ref).toFixed(2)}× | ${rss(`verify ${m.name}`).toFixed(0)} / ${rss(`cid ${m.name}`).toFixed(0)} MiB |`,
    )
  }
  console.log('')
  for (const m of [big, small]) {
    const all = (key: string) => series[key]!.map((r) => seconds(r.ms)).join(' ')
    console.log(
      `all runs, ${m.name} (s): openssl ${all(`openssl ${m.name}`)}; verify ${all(`verify ${m.name}`)}; --cid ${all(`cid ${m.name}`)}`,
    )
  }
  console.log('')
  console.log(
    'targets (the larger model): verify ≤ 1.0×, verify --cid ≤ 1.5×, peak RSS < 200 MB at both sizes',
  )
} finally {
  await cleanup()
}
