/**
 * Benchmark (issue 16): `allmende fetch` from several gateways, resuming, and its memory.
 *
 *     npm run build && npx tsx bench/fetch-multi.ts [MiB=1024] [runs=3] [rssMiB=4096]
 *
 * A generated model of about MiB is published to three nodes on loopback (real daemons), so each
 * holds and serves the same DAG. Timed with the real binary, wall clock from spawn to exit:
 *
 * - the reference: curl of the DAG as a CAR from one node, then sha256sum of it (the same bytes
 *   over the same gateway, hashed once);
 * - `allmende fetch` from the three nodes (the node and two `--gateway`s), fully verified: every
 *   block against its CID, every file's size and sha256, the directory at the end. Target ≤ 0.8×;
 * - the same from one node, for comparison;
 * - a fetch cut at half (a proxy ends every response once half the model's bytes have passed,
 *   and refuses the rest), then run again: the second run's time and bytes against a full fetch
 *   from one node. Target ≤ 0.55×;
 * - peak RSS of a fetch of a model of rssMiB (0 skips it) from one node. Target < 200 MB.
 *
 * Each figure is the median of `runs`, runs alternating; every run writes into a fresh directory
 * and the disk is synced before it. All processes share this machine's cores.
 */
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { startProxy } from '../test/integration/fetch-multi-support.js'
import { curlAndHash, fetchCli, MODEL, ratio, serveModel } from './fetch-multi-support.js'
import { allmende, benchDir, check, MiB, median, requireBuild, seconds } from './weights-support.js'

const sizeMiB = Number(process.argv[2] ?? 1024)
const runs = Number(process.argv[3] ?? 3)
const rssMiB = Number(process.argv[4] ?? 4096)
requireBuild()

const { dir, cleanup } = await benchDir('fetch-multi')
try {
  const served = await serveModel(dir, sizeMiB, 3)
  const [a, b, c] = served.daemons.map((d) => d.api) as [string, string, string]
  const car = join(dir, 'reference.car')
  const out = join(dir, 'out')
  const rss = join(dir, 'rss')
  await curlAndHash(a, served.weights, car) // warm-up: each node reads its blocks once
  check(await fetchCli(served, a, out, ['--gateway', b, '--gateway', c]), 'warm-up fetch')

  const reference: number[] = []
  const multi: number[] = []
  const single: number[] = []
  const multiRss: number[] = []
  for (let i = 0; i < runs; i++) {
    reference.push(await curlAndHash(a, served.weights, car))
    const m = check(await fetchCli(served, a, out, ['--gateway', b, '--gateway', c], rss), 'fetch from 3')
    multi.push(m.ms)
    multiRss.push((m.maxRssKiB ?? Number.NaN) / 1024)
    single.push(check(await fetchCli(served, a, out), 'fetch from 1').ms)
  }

  // Cut at half, then resumed; the second run against the node directly.
  const resumed: { ms: number; received: number; resumedBytes: number }[] = []
  for (let i = 0; i < runs; i++) {
    const cutting = await startProxy(a, { cutAfter: Math.floor(served.bytes / 2) })
    const first = await fetchCli(served, cutting.url, out)
    await cutting.close()
    if (first.code === 0) throw new Error('the cut fetch completed')
    const second = check(
      await allmende(['--json', 'fetch', MODEL, '--out', out], { ...served.fed.env, ALLMENDE_NODE: a }),
      'resume',
    )
    const answer = second.json() as { receivedBytes: number; resumedBytes: number }
    resumed.push({ ms: second.ms, received: answer.receivedBytes, resumedBytes: answer.resumedBytes })
  }
  await served.fed.close()

  const ref = median(reference)
  const full = median(single)
  const resumeMs = median(resumed.map((r) => r.ms))
  const resumeBytes = median(resumed.map((r) => r.received))
  console.log('')
  console.log(
    `${availableParallelism()} cores; model ${(served.bytes / MiB).toFixed(0)} MiB in ${served.files} files; median of ${runs} runs`,
  )
  console.log('| measure | time | ratio |')
  console.log('| --- | --- | --- |')
  console.log(`| curl CAR from one node + sha256sum | ${seconds(ref)} s | 1.00× |`)
  console.log(
    `| allmende fetch from 3 nodes | ${seconds(median(multi))} s | ${ratio(median(multi), ref)} (target ≤ 0.8×) |`,
  )
  console.log(`| allmende fetch from 1 node | ${seconds(full)} s | ${ratio(full, ref)} |`)
  console.log(
    `| resume after a cut at 50% | ${seconds(resumeMs)} s, ${(resumeBytes / MiB).toFixed(0)} MiB received | time ${ratio(resumeMs, full)}, bytes ${ratio(resumeBytes, served.bytes)} of a full fetch (target ≤ 0.55×) |`,
  )
  console.log(`peak RSS, fetch from 3 nodes: ${multiRss.map((r) => r.toFixed(0)).join(' ')} MiB`)
  console.log(
    `all runs: curl ${reference.map(seconds).join(' ')}; 3 nodes ${multi.map(seconds).join(' ')}; 1 node ${single.map(seconds).join(' ')}; resume ${resumed.map((r) => `${seconds(r.ms)} s/${(r.received / MiB).toFixed(0)} MiB (${(r.resumedBytes / MiB).toFixed(0)} MiB kept)`).join(', ')}`,
  )

  if (rssMiB > 0) {
    const big = await serveModel(join(dir, 'big'), rssMiB, 1)
    const r = check(await fetchCli(big, big.daemons[0]!.api, join(dir, 'big-out'), [], rss), 'fetch 4 GiB')
    await big.fed.close()
    const peak = (r.maxRssKiB ?? Number.NaN) / 1024
    console.log(
      `peak RSS, fetch of ${(big.bytes / MiB).toFixed(0)} MiB from one node: ${peak.toFixed(0)} MiB in ${seconds(r.ms)} s (target < 200 MB: ${peak * 1.048576 < 200 ? 'met' : 'missed'})`,
    )
  }
} finally {
  await cleanup()
}
