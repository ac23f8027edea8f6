// Preloaded by the fetch benchmarks (bench/fetch-multi-support.ts): as the process exits, writes
// its peak resident set in KiB to the file named by ALLMENDE_BENCH_RSS. The peak is /proc's VmHWM,
// the high-water mark of this program's own memory, not getrusage's maxRSS (bench/rss-probe.mjs):
// Linux carries maxRSS across fork and exec, so a child spawned by a benchmark that holds 500 MB
// reported 500 MB whatever it used itself.
import { readFileSync, writeFileSync } from 'node:fs'
import { isMainThread } from 'node:worker_threads'

const file = process.env.ALLMENDE_BENCH_RSS
if (isMainThread && file) {
  process.on('exit', () => {
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))
    writeFileSync(file, hwm ? hwm[1] : String(process.resourceUsage().maxRSS))
  })
}
