/**
 * `allmende-node HOME`: runs a node in the foreground until SIGINT or
 * SIGTERM, then stops gracefully (in-flight writes finish, stores close).
 * Logs go to stderr as JSON lines. The CLI's `allmende node start` runs the
 * same function.
 */
import './polyfill.js'
import { isNodeError } from './errors.js'
import { startNode } from './node.js'

export async function runDaemon(home: string): Promise<void> {
  const node = await startNode({ home })
  // One line on stdout that scripts can wait for.
  process.stdout.write(
    `${JSON.stringify({ ready: true, api: node.apiUrl, peerId: node.p2p.peerId, addresses: node.p2p.addresses() })}\n`,
  )
  await new Promise<void>((resolve) => {
    const done = () => {
      process.off('SIGINT', done)
      process.off('SIGTERM', done)
      resolve()
    }
    process.on('SIGINT', done)
    process.on('SIGTERM', done)
  })
  await node.stop()
}

const invokedDirectly = process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '')
if (invokedDirectly) {
  const home = process.argv[2]
  if (!home) {
    process.stderr.write('usage: daemon HOME\n')
    process.exit(2)
  }
  runDaemon(home).then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(
        `${JSON.stringify({ level: 'error', event: 'node-failed', code: isNodeError(e) ? e.code : 'internal', message: (e as Error).message })}\n`,
      )
      process.exit(1)
    },
  )
}
