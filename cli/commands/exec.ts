/**
 * `allmende exec --model N@V --dir DIR [--certificate FILE --federation ID] -- CMD ...`
 * (DESIGN.md §7): the same check as `verify` (cli/verify-model.ts), and only when the version is
 * ratified and every file matches, CMD runs with `ALLMENDE_MODEL_DIR` set to DIR and stdio
 * inherited; allmende exits with CMD's exit code. Otherwise CMD is not run and the exit is 1,
 * naming the reason (not ratified, revoked, conflicted, stale, a changed, missing or extra file).
 */
import { spawn } from 'node:child_process'
import { constants } from 'node:os'
import { resolve } from 'node:path'
import type { Command } from 'commander'
import { withNode } from '../client.js'
import { action, CliError, EXIT, examples, usage } from '../context.js'
import { checkModel } from './verify.js'

interface ExecOptions {
  node?: string
  model: string
  dir: string
  certificate?: string
  federation?: string
  maxAge?: string
}

export function registerExec(cli: Command): void {
  const cmd = withNode(
    cli
      .command('exec')
      .description('verify a model directory, then run an inference command with ALLMENDE_MODEL_DIR set')
      .argument('<cmd...>', 'the command to run, after --')
      .requiredOption('--model <name@version>', 'the model version the directory should hold')
      .requiredOption('--dir <dir>', 'the model directory')
      .option('--certificate <file>', 'verify offline with this certificate (needs --federation)')
      .option('--federation <id>', 'the federation id the certificate must chain to')
      .option('--max-age <dur>', 'the oldest acceptable checkpoint (default: 2 checkpoint intervals)'),
  )
  examples(cmd, [
    'allmende exec --model mistral-7b-de@1.2.0 --dir ./mistral-7b-de -- python serve.py',
    'allmende exec --model m@1.0.0 --dir ./m --certificate m.car --federation bafyrei… -- ./run.sh',
  ])
  cmd.action(
    action<ExecOptions>(async (ctx, opts, argv) => {
      if (argv.length === 0) throw usage('exec: no command given (put it after --)')
      const v = await checkModel(opts.dir, opts)
      if (!v.ok || v.status !== 'ratified') {
        const first = v.problems[0]
        const reasons = v.problems
          .map((p) => `${p.code}${p.path !== undefined ? ` ${p.path}` : ''}: ${p.message}`)
          .join('; ')
        throw new CliError(
          first?.code ?? 'not-ratified',
          `refusing to run ${argv[0]}: ${reasons || `${opts.model} is ${v.status}, not ratified`}`,
          EXIT.failed,
        )
      }
      ctx.note(`ok: ${opts.model} is ratified and every file matches; running ${argv[0]}`)
      const child = spawn(argv[0]!, argv.slice(1), {
        stdio: 'inherit',
        env: { ...process.env, ALLMENDE_MODEL_DIR: resolve(opts.dir) },
      })
      const code = await new Promise<number>((done, fail) => {
        child.once('error', (e) =>
          fail(new CliError('exec-failed', `cannot run ${argv[0]}: ${(e as Error).message}`, EXIT.failed)),
        )
        child.once('exit', (c, signal) => done(c ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0)))
      })
      process.exitCode = code
    }),
  )
}
