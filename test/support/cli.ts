/**
 * Runs the real `allmende` binary (bin/allmende.js, the bundle `npm run build` makes) the way a
 * user does, for the end-to-end tests: one process per command, its own `$ALLMENDE_HOME`, the
 * node it talks to in `$ALLMENDE_NODE`, and the exit code, stdout and stderr collected.
 */
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const root = join(dirname(fileURLToPath(import.meta.url)), '../..')
export const bin = join(root, 'bin/allmende.js')

/** No node listens there: the default node of a command that should not need one. */
export const NO_NODE = 'http://127.0.0.1:9'

export interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  /** stdout parsed as one JSON value (throws, naming the output, if it is not). */
  json<T = Record<string, unknown>>(): T
}

export interface RunOptions {
  /** The working directory (relative paths in `args` are resolved against it). */
  readonly cwd: string
  /** `$ALLMENDE_HOME`: whose identity, trust marks and default node home. */
  readonly home: string
  /** `$ALLMENDE_NODE`; default NO_NODE. */
  readonly node?: string
  /** More environment, applied last (e.g. `ALLMENDE_PASSPHRASE`). */
  readonly env?: Readonly<Record<string, string>>
}

/** What a finished process left: its exit code and everything it wrote. */
export interface Exited {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** `command ...args` with stdin closed; resolves with its exit code and output once it has exited. */
export function runProcess(
  command: string,
  args: readonly string[],
  options: { readonly cwd?: string; readonly env?: NodeJS.ProcessEnv } = {},
): Promise<Exited> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString()
    })
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** `allmende ...args` as a separate process; resolves when it has exited. */
export async function runCli(args: readonly string[], options: RunOptions): Promise<Run> {
  const r = await runProcess(process.execPath, [bin, ...args], {
    cwd: options.cwd,
    env: {
      ...process.env,
      ALLMENDE_HOME: options.home,
      ALLMENDE_NODE: options.node ?? NO_NODE,
      ALLMENDE_PASSPHRASE: '',
      ...options.env,
    },
  })
  return {
    ...r,
    json<T>() {
      try {
        return JSON.parse(r.stdout) as T
      } catch {
        throw new Error(
          `allmende ${args.join(' ')} did not print JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`,
        )
      }
    },
  }
}

/**
 * `node init` of a home that lives on this machine only: gossip on any free loopback port, the
 * API on `api` (any free loopback port unless given). More options may follow.
 */
export function nodeInitArgs(federation: string, home: string, api = '127.0.0.1:0'): string[] {
  return [
    'node',
    'init',
    '--federation',
    federation,
    '--home',
    home,
    '--listen',
    '/ip4/127.0.0.1/tcp/0',
    '--api',
    api,
  ]
}

/** `model publish DIR` of a model under `license` in `languages` (comma-separated); more options may follow. */
export function publishArgs(
  dir: string,
  model: { name: string; version: string; license: string; languages: string },
): string[] {
  const { name, version, license, languages } = model
  return [
    'model',
    'publish',
    dir,
    '--name',
    name,
    '--version',
    version,
    '--license',
    license,
    '--language',
    languages,
  ]
}

/**
 * A federation of one member founded the way a user does it: `init` an identity, `federation
 * create` NAME with that identity as steward, publisher and voter (genesis.car in the working
 * directory) and `node init` a home at `nodeHome` on loopback; each command must exit 0. Returns
 * the member's DID; the caller starts the node.
 */
export async function foundOneMemberFederation(
  run: (args: string[]) => Promise<Run>,
  name: string,
  nodeHome: string,
): Promise<string> {
  const init = succeeded(await run(['--json', 'init']))
  const did = init.json().did as string
  succeeded(
    await run([
      '--json',
      'federation',
      'create',
      '--name',
      name,
      '--member',
      `${did}:steward,publisher,voter`,
      '--out',
      'genesis.car',
    ]),
  )
  succeeded(await run(['--json', ...nodeInitArgs('genesis.car', nodeHome)]))
  return did
}

/** `r` when it exited 0; else throws with what it wrote. */
function succeeded(r: Run): Run {
  if (r.code !== 0) throw new Error(`exit ${r.code}, expected 0:\n${r.stdout}\n${r.stderr}`)
  return r
}

/**
 * The error a command printed: exactly one line on stderr and no stack trace, as every failure
 * must be (`allmende: MESSAGE`, or `{"error": {code, message}}` with --json). Throws otherwise.
 */
export function errorLine(r: Run): string {
  const lines = r.stderr.trim().split('\n')
  if (r.stderr.trim().length === 0 || lines.length !== 1 || /\n\s+at /.test(r.stderr))
    throw new Error(`expected one error line on stderr (exit ${r.code}), got:\n${r.stderr}`)
  return lines[0]!
}

/** The `{code, message}` of a --json command's one-line error. */
export function jsonError(r: Run): { code: string; message: string } {
  return (JSON.parse(errorLine(r)) as { error: { code: string; message: string } }).error
}

/** A TCP port on 127.0.0.1 that nothing listens on (it was free a moment ago). */
export async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise((resolve) => server.close(resolve))
  return port
}
