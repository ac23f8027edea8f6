// Preloaded by the weights benchmarks (`node --import bench/rss-probe.mjs bin/allmende.js …`):
// as the process exits, writes its peak RSS in KiB (getrusage's ru_maxrss, which covers every
// thread of the process) to the file named by ALLMENDE_BENCH_RSS. Polling /proc from outside
// could miss a peak in the last milliseconds; the exit hook cannot.
import { writeFileSync } from 'node:fs'
import { isMainThread } from 'node:worker_threads'

const file = process.env.ALLMENDE_BENCH_RSS
if (isMainThread && file) {
  process.on('exit', () => writeFileSync(file, String(process.resourceUsage().maxRSS)))
}
