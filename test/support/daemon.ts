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

/**
 * `allmende --json node start --home HOME`, the way a user starts a node: the real binary once
 * built (`npm run build`, run by `npm ci` and `npm test`), else the sources through tsx.
 */
function daemonArgs(home: string): string[] {
  const command = ['--json', 'node', 'start', '--home', home]
  return existsSync(join(root, 'dist/allmende.mjs'))
    ? [join(root, 'bin/allmende.js'), ...command]
    : ['--import', 'tsx', join(root, 'cli/run.ts'), ...command]
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

/** Submits a record to a node's API; resolves to the HTTP status (throws if the connection dies). */
export async function postRecord(api: string, bytes: Uint8Array): Promise<number> {
  const res = await fetch(`${api}/records`, {
    method: 'POST',
    headers: { 'content-type': 'application/cbor' },
    body: Buffer.from(bytes),
  })
  await res.arrayBuffer()
  return res.status
}

/**
 * Submits `records` with eight writers at a time and kills the node with SIGKILL
 * after `killAt` acknowledgements, while other submissions are in flight.
 * Returns the records the node acknowledged (201) before it died.
 */
export async function burstThenKill<T extends { bytes: Uint8Array }>(
  d: Daemon,
  records: readonly T[],
  killAt: number,
): Promise<T[]> {
  const acked: T[] = []
  const queue = [...records]
  let killed: Promise<number | null> | undefined
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let r = queue.shift(); r && !killed; r = queue.shift()) {
        try {
          if ((await postRecord(d.api, r.bytes)) === 201) {
            acked.push(r)
            if (acked.length === killAt) killed = d.kill('SIGKILL')
          }
        } catch {
          // The connection died with the process: not acknowledged.
        }
      }
    }),
  )
  await (killed ?? d.kill('SIGKILL'))
  return acked
}

/** Whether a node holds a record (or list block) with this CID. */
export async function holds(api: string, cid: { toString(): string }): Promise<boolean> {
  const res = await fetch(`${api}/records/${cid}`)
  await res.arrayBuffer()
  return res.status === 200
}
