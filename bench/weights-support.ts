/**
 * What the weights benchmarks (bench/verify.ts, bench/publish.ts) share: a model directory of a
 * given size from the fixture generator, the real `allmende` binary run as a user runs it (with
 * its wall time and peak RSS), and a federation with a node daemon to publish into.
 *
 * Why the binary and not the library: a deployer runs `allmende verify` as a process, so process
 * start (loading the bundle) is part of what they wait for; the figures include it.
 */
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type GeneratedModel, generateModel, type ModelOptions } from '../fixtures/models.js'
import { runProcess } from '../test/support/cli.js'
import { type Daemon, startDaemon } from '../test/support/daemon.js'

export const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const bin = join(root, 'bin/allmende.js')
const probe = join(root, 'bench/rss-probe.mjs')

export const MiB = 1024 * 1024

export function requireBuild(): void {
  if (!existsSync(join(root, 'dist/allmende.mjs'))) throw new Error('run `npm run build` first')
}

/**
 * A fresh temporary directory for one benchmark, `allmende-bench-NAME-…`; `cleanup` removes it,
 * and so does Ctrl-C.
 */
export async function benchDir(name: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `allmende-bench-${name}-`))
  const cleanup = () => rm(dir, { recursive: true, force: true })
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))
  return { dir, cleanup }
}

/**
 * Generator options for a Llama-like model of about `mib` MiB: 32,768 words, hidden 2,048 (1,024
 * below 512 MiB), as many layers as fit, shards of at most a quarter of the model (64 to 256 MiB):
 * always several weight files.
 */
export function modelOptions(mib: number, seed: number): ModelOptions {
  const hidden = mib >= 512 ? 2048 : 1024
  const vocab = 32_768
  // F32 embedding + BF16 head; per layer 4 BF16 attention and 3 F16 MLP matrices (inter = 2 × hidden).
  const fixed = vocab * hidden * (4 + 2)
  const perLayer = 4 * hidden * hidden * 2 + 3 * 2 * hidden * hidden * 2
  const layers = Math.max(1, Math.round((mib * MiB - fixed) / perLayer))
  const maxShardBytes = Math.min(256 * MiB, Math.max(64 * MiB, (mib * MiB) / 4))
  return { seed, hidden, vocab, layers, maxShardBytes }
}

export async function makeModel(dir: string, mib: number, seed: number): Promise<GeneratedModel> {
  return generateModel(dir, modelOptions(mib, seed))
}

export interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  /** Wall time from spawn to exit, process start included. */
  readonly ms: number
  /** Peak resident set of the process (all its threads), in KiB, when probed. */
  readonly maxRssKiB?: number
  json(): Record<string, unknown>
}

/** Runs a command; its wall time is from spawn to exit. */
export async function runCommand(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<Omit<Run, 'maxRssKiB'>> {
  const started = performance.now()
  const r = await runProcess(command, args, {
    cwd: options.cwd ?? root,
    env: { ...process.env, ...options.env },
  })
  const ms = performance.now() - started
  return { ...r, ms, json: () => JSON.parse(r.stdout) as Record<string, unknown> }
}

/**
 * `node bin/allmende.js ARGS`, the installed binary. With `rss`, a preload (bench/rss-probe.mjs)
 * writes `process.resourceUsage().maxRSS` as the process exits: the kernel's high-water mark for
 * the whole process, worker threads included.
 */
export async function allmende(
  args: readonly string[],
  env: Record<string, string>,
  options: { cwd?: string; rss?: string } = {},
): Promise<Run> {
  const pre = options.rss === undefined ? [] : ['--import', probe]
  const r = await runCommand(process.execPath, [...pre, bin, ...args], {
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    env: { ALLMENDE_PASSPHRASE: '', ...env, ...(options.rss ? { ALLMENDE_BENCH_RSS: options.rss } : {}) },
  })
  if (options.rss === undefined) return r
  const maxRssKiB = Number(await readFile(options.rss, 'utf8').catch(() => 'NaN'))
  await rm(options.rss, { force: true })
  return { ...r, maxRssKiB }
}

export function check(r: Run, what: string): Run {
  if (r.code !== 0) throw new Error(`${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`)
  return r
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export interface Federation {
  readonly id: string
  /** The identity (publisher, voter) every command runs as. */
  readonly env: Record<string, string>
  /** `allmende node init` of a fresh node home on the federation (the steward's, by default). */
  initNode(name: string, steward?: boolean): Promise<string>
  /** Starts a daemon on a node home; stopped by `close`. */
  start(home: string): Promise<Daemon>
  close(): Promise<void>
}

/**
 * A federation of one publisher-voter and one steward (seal threshold 1), created with the CLI.
 * Short voting period and checkpoint interval, so a ratification is certified within half a
 * minute (a checkpoint covers an epoch once the seal deadline has passed after it); a weights
 * deadline long enough for the steward's check of a 1 GiB DAG.
 */
export async function oneStewardFederation(dir: string): Promise<Federation> {
  const env = { ALLMENDE_HOME: join(dir, 'publisher') }
  const did = check(await allmende(['--json', 'init'], env), 'init').json().did as string
  const stewardKey = join(dir, 'steward.key')
  const steward = check(
    await allmende(['--json', 'init', '--steward-key', stewardKey], env),
    'init --steward-key',
  ).json().did as string
  const genesis = join(dir, 'genesis.car')
  const created = check(
    await allmende(
      [
        '--json',
        'federation',
        'create',
        '--name',
        'weights bench',
        '--member',
        `${did}:publisher,voter`,
        '--member',
        `${steward}:steward`,
        '--voting-period',
        '3s',
        '--seal-threshold',
        '1',
        '--seal-grace',
        '1s',
        '--weights-deadline',
        '20s',
        '--seal-deadline',
        '22s',
        '--checkpoint-interval',
        '2s',
        '--out',
        genesis,
      ],
      env,
    ),
    'federation create',
  )
  check(await allmende(['--json', 'federation', 'cosign', genesis, '--key', stewardKey], env), 'cosign')
  const daemons: Daemon[] = []
  return {
    id: created.json().federation as string,
    env,
    async initNode(name, asSteward = true) {
      const home = join(dir, name)
      check(
        await allmende(
          [
            '--json',
            'node',
            'init',
            '--federation',
            genesis,
            '--home',
            home,
            '--listen',
            '/ip4/127.0.0.1/tcp/0',
            '--api',
            '127.0.0.1:0',
            ...(asSteward ? ['--steward-key', stewardKey] : []),
          ],
          env,
        ),
        'node init',
      )
      return home
    },
    async start(home) {
      const d = await startDaemon(home)
      daemons.push(d)
      return d
    },
    async close() {
      await Promise.all(daemons.map((d) => d.kill()))
    },
  }
}

/** `model publish DIR --name NAME --version 1.0.0` into the node at `api`. */
export function publishArgs(dir: string, name: string): string[] {
  return ['--json', 'model', 'publish', dir, '--name', name, '--version', '1.0.0'].concat([
    '--license',
    'Apache-2.0',
    '--language',
    'en',
  ])
}

export function seconds(ms: number): string {
  return (ms / 1000).toFixed(2)
}
