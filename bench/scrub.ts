/**
 * Benchmark (issue 16): the background scrub of 1 GiB of held weights, unthrottled, against
 * `sha256sum` of the same files (same run), and a throttled scrub keeping its configured rate.
 * Not part of `npm test`; docs/adr/0031-scrubbing-and-clean-up.md has the figures.
 *
 *     node --import tsx bench/scrub.ts [MiB=1024] [runs=5] [throttledMiBps=128]
 *
 * A model of four files of random bytes is imported into a node blockstore (BlockFiles) in a
 * temporary directory. The scrub is the node's own pass (scrub-pass.ts with ScrubBlocks: every
 * block read back from its file and hashed against its CID, leaves on two worker threads); the
 * reference is one `sha256sum` of the four model files. Both read from the page cache: each is
 * run once before timing, which also starts the scrub's workers. Each figure is the median of
 * `runs`. Then a pass at `throttledMiBps` is timed: its rate over the pass may exceed the setting
 * only by the bucket's one second of bytes.
 */
import '../node/polyfill.js'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BlockFiles } from '../node/weights/block-files.js'
import { importDirectory } from '../node/weights/directory.js'
import { ScrubBlocks } from '../node/weights/scrub-blocks.js'
import { scrubPass } from '../node/weights/scrub-pass.js'
import { realRateClock, TokenBucket } from '../node/weights/scrub-rate.js'

const MiB = 1024 * 1024
const sizeMiB = Number(process.argv[2] ?? 1024)
const runs = Number(process.argv[3] ?? 5)
const throttledMiBps = Number(process.argv[4] ?? 128)
const FILES = 4

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`

function sha256sum(paths: string[]): number {
  const t = performance.now()
  const r = spawnSync('sha256sum', paths, { stdio: ['ignore', 'ignore', 'inherit'] })
  if (r.status !== 0) throw new Error(`sha256sum exited ${r.status}`)
  return performance.now() - t
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'allmende-bench-scrub-'))
  try {
    const modelDir = join(dir, 'model')
    await mkdir(modelDir)
    const paths: string[] = []
    for (let i = 0; i < FILES; i++) {
      const path = join(modelDir, `shard-${i}.bin`)
      const parts: Buffer[] = []
      for (let m = 0; m < sizeMiB / FILES; m++) parts.push(randomBytes(MiB))
      await writeFile(path, Buffer.concat(parts))
      paths.push(path)
    }
    const blocksDir = join(dir, 'blocks')
    const blockstore = new BlockFiles(blocksDir)
    await blockstore.open()
    const { root } = await importDirectory(modelDir, { blockstore })
    const blocks = new ScrubBlocks(blocksDir, blockstore)
    const signal = new AbortController().signal
    const pass = async (bytesPerSecond: number) => {
      const t = performance.now()
      const bucket = new TokenBucket(() => bytesPerSecond, realRateClock)
      const result = await scrubPass({ root, blocks, bucket, signal })
      if (result.damaged.length + result.missing.length > 0) throw new Error('the scrub found damage')
      return { ms: performance.now() - t, bytes: result.bytes }
    }
    // Warm: the page cache holds the files and the blocks, the scrub's workers are running.
    sha256sum(paths)
    await pass(Number.MAX_SAFE_INTEGER)

    const scrubMs: number[] = []
    const sumMs: number[] = []
    for (let i = 0; i < runs; i++) {
      scrubMs.push((await pass(Number.MAX_SAFE_INTEGER)).ms)
      sumMs.push(sha256sum(paths))
    }
    const scrub = median(scrubMs)
    const sum = median(sumMs)
    console.log(
      `scrub of ${sizeMiB} MiB, unthrottled: ${secs(scrub)} (${((sizeMiB * 1000) / scrub).toFixed(0)} MiB/s)`,
    )
    console.log(`sha256sum of the same files:   ${secs(sum)} (${((sizeMiB * 1000) / sum).toFixed(0)} MiB/s)`)
    console.log(`ratio scrub / sha256sum: ${(scrub / sum).toFixed(2)}x (target <= 1.0x)`)

    const limit = throttledMiBps * MiB
    const throttled = await pass(limit)
    const achieved = (throttled.bytes * 1000) / throttled.ms
    // The bucket starts full: one second of bytes (and one block) may go before the pacing starts.
    const bound = (limit * (throttled.ms / 1000 + 1) + 2 * MiB) / (throttled.ms / 1000)
    console.log(
      `throttled at ${throttledMiBps} MiB/s: ${secs(throttled.ms)}, ${(achieved / MiB).toFixed(1)} MiB/s over the pass ` +
        `(bound with the bucket's first second: ${(bound / MiB).toFixed(1)} MiB/s) — ${achieved <= bound ? 'kept' : 'EXCEEDED'}`,
    )
    await blocks.stop()
    await blockstore.close()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
