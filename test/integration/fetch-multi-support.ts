/**
 * A proxy in front of a gateway for the multi-source fetch tests and benchmarks: it counts the
 * bytes it serves, and on request cuts every connection after a number of them, holds the stream
 * there (a stalled source), or flips one byte of a response (a corrupt source).
 */
import { createServer, request, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

export interface ProxyOptions {
  /**
   * After this many body bytes in all, every response ends there and later requests are refused
   * (503). The responses end cleanly rather than with a reset: a reset makes the client's kernel
   * drop what it had received but not yet read, which the count here would include.
   */
  readonly cutAfter?: number
  /** After this many body bytes in all, nothing more is sent (the connections stay open). */
  readonly holdAfter?: number
  /** The body byte (counted over all responses) that is sent with its bits flipped. */
  readonly flipByte?: number
}

export interface Proxy {
  readonly url: string
  /** Body bytes sent to clients so far. */
  readonly served: () => number
  /** Requests answered so far. */
  readonly requests: () => number
  close(): Promise<void>
}

export async function startProxy(target: string, options: ProxyOptions = {}): Promise<Proxy> {
  let served = 0
  let requests = 0
  let cut = false
  const sockets = new Set<Socket>()
  const responses = new Set<ServerResponse>()
  const server: Server = createServer((req, res) => {
    if (cut) {
      res.writeHead(503).end()
      return
    }
    requests++
    responses.add(res)
    res.once('close', () => responses.delete(res))
    const upstream = request(`${target}${req.url}`, { headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.on('data', (chunk: Buffer) => {
        const out = shaped(chunk)
        if (out.length > 0) res.write(out)
        if (cut) for (const open of responses) open.end()
      })
      // A held stream stays open (a stalled source), whatever the gateway does.
      answer.on('end', () => served < (options.holdAfter ?? Number.POSITIVE_INFINITY) && res.end())
      res.once('close', () => answer.destroy())
      answer.on('error', () => res.destroy())
    })
    upstream.on('error', () => res.destroy())
    req.pipe(upstream)
  })
  // What of a chunk is sent, counting and flipping as asked.
  const shaped = (chunk: Buffer): Buffer => {
    const hold = options.holdAfter ?? Number.POSITIVE_INFINITY
    const limit = Math.min(hold, options.cutAfter ?? Number.POSITIVE_INFINITY)
    const sent = Buffer.from(chunk.subarray(0, Math.max(0, Math.min(chunk.length, limit - served))))
    const flip = options.flipByte
    if (flip !== undefined && flip >= served && flip < served + sent.length) sent[flip - served]! ^= 0xff
    served += sent.length
    if (options.cutAfter !== undefined && served >= options.cutAfter) cut = true
    return sent
  }
  server.on('connection', (s) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${port}`,
    served: () => served,
    requests: () => requests,
    async close() {
      for (const s of sockets) s.destroy()
      await new Promise((r) => server.close(r))
    },
  }
}
