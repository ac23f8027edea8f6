/**
 * `allmende exec --model N@V --dir DIR [--certificate FILE] [--federation ID [--pin]]
 * [--max-age DUR] [--copy-limit SIZE | --in-place] -- CMD ...` (docs/adr/0007).
 *
 * The status is proven as `verify` proves it (commands/verify.ts); a version that is not
 * certified ratified is refused before a byte of DIR is read. Then DIR is snapshotted
 * (cli/snapshot.ts: a reflink, or a private read-only copy under --copy-limit), the snapshot's
 * bytes are checked against the certified manifest, and CMD runs with `ALLMENDE_MODEL_DIR` set to
 * the snapshot — which nobody else can change between the check and the load — and stdio
 * inherited. allmende exits with CMD's exit code and removes the snapshot when CMD exits, also
 * when allmende is sent SIGINT, SIGTERM or SIGHUP (forwarded to CMD). Otherwise CMD is not run and
 * the exit is 1, naming the reason.
 *
 * `--in-place` checks DIR itself through open file descriptors and gives CMD DIR: CMD then opens
 * the files again by name, so anyone who can write to DIR can change them after the check.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { constants } from 'node:os'
import { resolve } from 'node:path'
import type { Command } from 'commander'
import { checkFiles, type ModelVerdict, verdictOf } from '../../node/index.js'
import { withNode } from '../client.js'
import { action, CliError, EXIT, examples, usage } from '../context.js'
import { parseSize } from '../durations.js'
import { requireDirectory, takeSnapshot } from '../snapshot.js'
import { proveStatus, type VerifyOptions, withTrust } from './verify.js'

interface ExecOptions extends VerifyOptions {
  dir: string
  copyLimit: string
  inPlace?: boolean
}

/** What --in-place leaves open, said in its help and on every such run. */
export function inPlaceRisk(dir: string): string {
  return `the files of ${dir} are checked through open file descriptors, but the command opens them again by name: anyone who can write to ${dir} can change them between the check and the load`
}

function refuse(command: string, v: ModelVerdict, model: string): never {
  const first = v.problems[0]
  const reasons = v.problems
    .map((p) => `${p.code}${p.path !== undefined ? ` ${p.path}` : ''}: ${p.message}`)
    .join('; ')
  throw new CliError(
    first?.code ?? 'not-ratified',
    `refusing to run ${command}: ${reasons || `${model} is ${v.status}, not ratified`}`,
    EXIT.failed,
  )
}

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

/**
 * Removes the snapshot however the run ends: normally, or on a signal (forwarded to the command
 * while it runs, whose exit then ends the run; before it runs, the snapshot is removed at once
 * and allmende exits 128 + the signal's number).
 */
class Guard {
  private readonly paths = new Set<string>()
  private child: ChildProcess | undefined
  private readonly handlers = FORWARDED.map((signal) => {
    const handler = () => {
      if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
        this.child.kill(signal)
        return
      }
      this.dispose()
      process.exit(128 + (constants.signals[signal] ?? 0))
    }
    process.on(signal, handler)
    return { signal, handler }
  })

  keep(path: string): void {
    this.paths.add(path)
  }

  running(child: ChildProcess): void {
    this.child = child
  }

  dispose(): void {
    for (const path of this.paths) rmSync(path, { recursive: true, force: true })
    this.paths.clear()
    for (const { signal, handler } of this.handlers) process.off(signal, handler)
  }
}

export function registerExec(cli: Command): void {
  const cmd = withTrust(
    withNode(
      cli
        .command('exec')
        .description(
          'verify a model version, then run an inference command on a snapshot of its directory (ALLMENDE_MODEL_DIR)',
        )
        .argument('<cmd...>', 'the command to run, after --')
        .requiredOption('--model <name@version>', 'the model version the directory should hold')
        .requiredOption('--dir <dir>', 'the model directory'),
    ),
  )
    .option('--max-age <dur>', 'the oldest acceptable checkpoint (default: 2 checkpoint intervals)')
    .option(
      '--copy-limit <size>',
      'the largest private copy to make when the filesystem has no reflink (e.g. 8GiB, 512MiB)',
      '8GiB',
    )
    .option(
      '--in-place',
      'no snapshot: check DIR through open file descriptors and give the command DIR itself (anyone who can write to DIR can then change the files between the check and the load)',
    )
    .addHelpText(
      'after',
      `
Snapshot: the command gets ALLMENDE_MODEL_DIR, the path of a snapshot of DIR that nobody else can
change: a reflink copy where the filesystem has reflinks, otherwise a private read-only copy
(a 0700 directory, files 0400) when DIR holds at most --copy-limit and the disk has room;
otherwise exec refuses, naming --in-place. The snapshot's bytes are what is checked, and it is
removed when the command exits (also on SIGINT, SIGTERM, SIGHUP, which are passed on to it).
With --in-place the command gets DIR itself: ${inPlaceRisk('DIR')}.`,
    )
  examples(cmd, [
    'allmende exec --model mistral-7b-de@1.2.0 --dir ./mistral-7b-de -- python serve.py',
    'allmende exec --model m@1.0.0 --dir ./m --certificate m.car --federation bafyrei… -- ./run.sh',
    'allmende exec --model big@1.0.0 --dir /srv/big --copy-limit 200GiB -- ./serve.sh',
    'allmende exec --model big@1.0.0 --dir /srv/big --in-place -- ./serve.sh',
  ])
  cmd.action(
    action<ExecOptions>(async (ctx, opts, argv) => {
      if (argv.length === 0) throw usage('exec: no command given (put it after --)')
      const copyLimit = opts.inPlace ? 0 : parseSize(opts.copyLimit)
      if (copyLimit === undefined)
        throw usage(`--copy-limit: not a size: "${opts.copyLimit}" (use e.g. 8GiB or 512MiB)`)
      await requireDirectory(opts.dir)
      // The status first: a version that is not certified ratified is refused before DIR is read.
      const proof = await proveStatus(ctx, opts)
      if (proof.problems.length > 0 || !proof.certified)
        refuse(argv[0]!, verdictOf(proof, proof.problems), opts.model)

      const guard = new Guard()
      try {
        let modelDir: string
        let verdict: ModelVerdict
        let checked: string
        if (opts.inPlace) {
          modelDir = resolve(opts.dir)
          verdict = await checkFiles(modelDir, proof)
          checked = `in ${opts.dir} itself`
        } else {
          const snapshot = await takeSnapshot(opts.dir, { copyLimit, onCreated: (p) => guard.keep(p) })
          modelDir = snapshot.path
          const issues = snapshot.issues.map((i) => ({ code: i.code, path: i.path, message: i.message }))
          verdict = await checkFiles(modelDir, proof, { extra: issues })
          checked = `in a snapshot of ${opts.dir} (${snapshot.how === 'reflink' ? 'reflinks' : `a private read-only copy of ${snapshot.copied} bytes`}) at ${modelDir}, removed when ${argv[0]} exits`
        }
        if (!verdict.ok) refuse(argv[0]!, verdict, opts.model)
        ctx.note(
          `ok: ${opts.model} is ratified and every file matches, checked ${checked}; running ${argv[0]}`,
        )
        if (opts.inPlace) ctx.notice('in-place', `--in-place: ${inPlaceRisk(opts.dir)}`)
        process.exitCode = await run(argv, modelDir, guard)
      } finally {
        guard.dispose()
      }
    }),
  )
}

/** Runs the command with stdio inherited; its exit code (128 + the signal's number when killed). */
function run(argv: string[], modelDir: string, guard: Guard): Promise<number> {
  const child = spawn(argv[0]!, argv.slice(1), {
    stdio: 'inherit',
    env: { ...process.env, ALLMENDE_MODEL_DIR: modelDir },
  })
  guard.running(child)
  return new Promise<number>((done, fail) => {
    child.once('error', (e) =>
      fail(new CliError('exec-failed', `cannot run ${argv[0]}: ${(e as Error).message}`, EXIT.failed)),
    )
    child.once('exit', (c, signal) => done(c ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0)))
  })
}
