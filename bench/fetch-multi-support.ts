/**
 * What the CLI fetch benchmarks share (bench/fetch.ts's CLI case, bench/fetch-multi.ts): a model
 * published to several nodes of one federation with the real binary (each node then holds and
 * serves the same DAG), the reference a user would take (curl of the DAG as a CAR from one node,
 * then sha256sum of it), and `allmende fetch` run as a user runs it.
 */
import { spawnSync } from 'node:child_process'
import { mkdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Daemon } from '../test/support/daemon.js'
import {
  allmende,
  check,
  type Federation,
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

export const MODEL = 'bench-model@1.0.0'

export interface ServedModel {
  readonly fed: Federation
  readonly daemons: readonly Daemon[]
  readonly weights: string
  readonly bytes: number
  readonly files: number
}

/** A model of about `mib` MiB generated under `dir` and published to `nodes` fresh nodes. */
export async function serveModel(dir: string, mib: number, nodes: number): Promise<ServedModel> {
  await mkdir(dir, { recursive: true })
  const modelDir = join(dir, 'model')
  const model = await makeModel(modelDir, mib, 3)
  const fed = await oneStewardFederation(dir)
  const daemons: Daemon[] = []
  let weights = ''
  for (let i = 0; i < nodes; i++) {
    const daemon = await fed.start(await fed.initNode(`gateway-${i}`, false))
    daemons.push(daemon)
    const r = check(
      await allmende(publishArgs(modelDir, 'bench-model'), { ...fed.env, ALLMENDE_NODE: daemon.api }),
      'publish',
    )
    weights = r.json().weights as string
  }
  return { fed, daemons, weights, bytes: model.bytes, files: model.files.length }
}

/** Earlier runs' writes reach the disk before the next run is timed (see bench/fetch.ts). */
export function settle(): void {
  spawnSync('sync')
}

/** curl of the whole DAG as a CAR from `api` into `out`, then sha256sum of it: wall time in ms. */
export async function curlAndHash(api: string, weights: string, out: string): Promise<number> {
  const url = `${api}/ipfs/${weights}?format=car&dag-scope=all&dups=n`
  const script = `curl -sfS -H 'accept: application/vnd.ipld.car' -o '${out}' '${url}' && sha256sum '${out}' >/dev/null`
  settle()
  const r = await runCommand('sh', ['-c', script])
  if (r.code !== 0) throw new Error(`curl + sha256sum: ${r.stderr}`)
  await rm(out, { force: true })
  return r.ms
}

const probe = join(root, 'bench/fetch-multi-probe.mjs')

/**
 * The binaries to time: `BENCH_BINS=a/bin/allmende.js,b/bin/allmende.js` alternates builds run
 * by run (A/B on a loaded machine), the repository's own by default.
 */
export const benchBins = (): string[] =>
  process.env.BENCH_BINS?.split(',').filter((b) => b.length > 0) ?? [join(root, 'bin/allmende.js')]

/**
 * `allmende --json fetch MODEL --out OUT ...args` against `node`, into a fresh directory; with
 * `rss`, its peak resident set from bench/fetch-multi-probe.mjs (why not rss-probe.mjs: there).
 */
export async function fetchCli(
  served: ServedModel,
  node: string,
  out: string,
  args: readonly string[] = [],
  rss?: string,
  bin = join(root, 'bin/allmende.js'),
): Promise<Run> {
  await rm(out, { recursive: true, force: true })
  settle()
  const pre = rss === undefined ? [] : ['--import', probe]
  const env = {
    ALLMENDE_PASSPHRASE: '',
    ...served.fed.env,
    ALLMENDE_NODE: node,
    ...(rss ? { ALLMENDE_BENCH_RSS: rss } : {}),
  }
  const r = await runCommand(
    process.execPath,
    [...pre, bin, '--json', 'fetch', MODEL, '--out', out, ...args],
    { env },
  )
  if (rss === undefined) return r
  const maxRssKiB = Number(await readFile(rss, 'utf8').catch(() => 'NaN'))
  await rm(rss, { force: true })
  return { ...r, maxRssKiB }
}

export const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`

/**
 * The CLI case of bench/fetch.ts: `allmende fetch` of a model of `mib` MiB from one node, fully
 * verified, against curl of the same DAG as a CAR from that node + sha256sum, runs alternating,
 * each the median of `runs` (and peak RSS of the fetch). Target ≤ 1.0×.
 */
export async function cliCase(dir: string, mib: number, runs: number): Promise<void> {
  requireBuild()
  const served = await serveModel(dir, mib, 1)
  try {
    const api = served.daemons[0]!.api
    const car = join(dir, 'reference.car')
    const out = join(dir, 'cli-out')
    await curlAndHash(api, served.weights, car) // warm-up: the node reads its blocks once
    const bins = benchBins()
    check(await fetchCli(served, api, out, [], undefined, bins[0]), 'warm-up fetch')
    const reference: number[] = []
    const fetched: Run[][] = bins.map(() => [])
    for (let i = 0; i < runs; i++) {
      reference.push(await curlAndHash(api, served.weights, car))
      for (const [b, bin] of bins.entries())
        fetched[b]!.push(check(await fetchCli(served, api, out, [], join(dir, 'rss'), bin), 'fetch'))
    }
    const ref = median(reference)
    console.log(
      `CLI: ${(served.bytes / 2 ** 20).toFixed(0)} MiB in ${served.files} files from one node, median of ${runs}`,
    )
    console.log(`reference  curl CAR + sha256sum        ${seconds(ref)} s`)
    for (const [b, runsOfBin] of fetched.entries()) {
      const ours = median(runsOfBin.map((r) => r.ms))
      const rss = Math.max(...runsOfBin.map((r) => (r.maxRssKiB ?? Number.NaN) / 1024))
      console.log(
        `allmende fetch (process start included) ${seconds(ours)} s  ratio ${ratio(ours, ref)}  peak RSS ${rss.toFixed(0)} MiB${bins.length > 1 ? `  [${bins[b]}]` : ''}`,
      )
      console.log(
        `  all runs: curl ${reference.map(seconds).join(' ')}; fetch ${runsOfBin.map((r) => seconds(r.ms)).join(' ')}`,
      )
      console.log(`target: allmende fetch ≤ 1.0× the reference: ${ours <= ref ? 'met' : 'missed'}`)
    }
  } finally {
    await served.fed.close()
  }
}
