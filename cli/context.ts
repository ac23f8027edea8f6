/**
 * What every command shares: errors with exit codes, output as JSON or text, and the action
 * wrapper that turns any failure into one line on stderr (never a stack trace).
 *
 * Exit codes: 0 ok, 1 failed or rejected, 2 usage, 3 node unreachable.
 */
import type { Command } from 'commander'
import { isNodeError } from '../node/index.js'

export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const

export class CliError extends Error {
  readonly code: string
  readonly exit: number
  /** More of what the node answered with the error (e.g. `dueAt` beside `not-covered`). */
  readonly details: Readonly<Record<string, unknown>>
  constructor(
    code: string,
    message: string,
    exit: number = EXIT.failed,
    details: Readonly<Record<string, unknown>> = {},
  ) {
    super(message)
    this.name = 'CliError'
    this.code = code
    this.exit = exit
    this.details = details
  }
}

/** A mistake in what the user typed: exit 2. */
export function usage(message: string, code = 'usage'): CliError {
  return new CliError(code, message, EXIT.usage)
}

export interface Ctx {
  readonly json: boolean
  /** Writes `value` as one JSON line with --json, else the text (a string or lines). */
  out(value: unknown, text: string | readonly string[]): void
  /** A remark for people (stderr), never in JSON mode. */
  note(text: string): void
  /**
   * Something the user must be told even in JSON mode (stderr): `allmende: note: MESSAGE`, or one
   * line `{"notice": {code, message}}` with --json. Stdout stays the command's result.
   */
  notice(code: string, message: string): void
}

export function ctxOf(cmd: Command): Ctx {
  const json = cmd.optsWithGlobals().json === true
  return {
    json,
    out(value, text) {
      const body = json ? JSON.stringify(value) : typeof text === 'string' ? text : text.join('\n')
      process.stdout.write(`${body}\n`)
    },
    note(text) {
      if (!json) process.stderr.write(`${text}\n`)
    },
    notice(code, message) {
      process.stderr.write(
        json ? `${JSON.stringify({ notice: { code, message } })}\n` : `allmende: note: ${message}\n`,
      )
    },
  }
}

export function printError(json: boolean, code: string, message: string): void {
  const line = message.replace(/\s*\n\s*/g, ' ').trim()
  process.stderr.write(
    json ? `${JSON.stringify({ error: { code, message: line } })}\n` : `allmende: ${line}\n`,
  )
}

export function exitWith(e: unknown, json: boolean): never {
  if (e instanceof CliError) {
    printError(json, e.code, e.message)
    process.exit(e.exit)
  }
  if (isNodeError(e)) {
    printError(json, e.code, e.message)
    process.exit(EXIT.failed)
  }
  printError(json, 'internal', (e as Error)?.message ?? String(e))
  process.exit(EXIT.failed)
}

/**
 * The action of a command: `fn(ctx, opts, ...args)`. Commander passes the positional
 * arguments, then the options, then the command itself.
 */
export function action<O>(
  fn: (ctx: Ctx, opts: O, args: string[], cmd: Command) => Promise<void> | void,
): (...params: unknown[]) => Promise<void> {
  return async (...params: unknown[]) => {
    const cmd = params[params.length - 1] as Command
    const opts = params[params.length - 2] as O
    const args = params.slice(0, -2).flat() as string[]
    const ctx = ctxOf(cmd)
    try {
      await fn(ctx, opts, args, cmd)
    } catch (e) {
      exitWith(e, ctx.json)
    }
  }
}

/** `--help` text after the options: examples, one per line. */
export function examples(cmd: Command, lines: readonly string[]): Command {
  return cmd.addHelpText('after', `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}\n`)
}

/** Collects a repeatable option into a list. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}
