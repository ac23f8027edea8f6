/**
 * Runs a node as a separate process, the way a user starts one, and waits for
 * its "ready" line. Used by the end-to-end tests and the soak script.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '../..')

export interface Daemon {
  readonly child: ChildProcess
  readonly api: string
  readonly peerId: string
  readonly addresses: string[]
  readonly stderr: () => string
  kill(signal?: NodeJS.Signals): Promise<number | null>
}

/** The compiled daemon (`npm run build`, run by `npm ci` and `npm test`), else the sources through tsx. */
function daemonArgs(home: string): string[] {
  const built = join(root, 'dist/node/daemon.js')
  return existsSync(built) ? [built, home] : ['--import', 'tsx', join(root, 'node/daemon.ts'), home]
}

export async function startDaemon(home: string, timeout = 60_000): Promise<Daemon> {
  const child = spawn(process.execPath, daemonArgs(home), {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let err = ''
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString()
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const ready = await new Promise<{ api: string; peerId: string; addresses: string[] }>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(
      () => reject(new Error(`the node did not start within ${timeout} ms:\n${err}`)),
      timeout,
    )
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const line = out.split('\n').find((l) => l.includes('"ready":true'))
      if (line) {
        clearTimeout(timer)
        resolve(JSON.parse(line))
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`the node exited with ${code} before it was ready:\n${err}`))
    })
  })
  return {
    child,
    ...ready,
    stderr: () => err,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    },
  }
}
