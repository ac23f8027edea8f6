/**
 * The HTTP client the CLI talks to a node with (node/api.ts). A node that cannot be reached
 * (refused, reset, unknown host, timeout) is exit 3 with one line naming the URL; an answer
 * with a 4xx/5xx status is exit 1 with the node's own `{error: {code, message}}`.
 */
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { Command } from 'commander'
import type { RecordReport } from '../protocol/index.js'
import { CliError, EXIT, usage } from './context.js'

export const DEFAULT_NODE = 'http://127.0.0.1:7070'

export function defaultNode(env: Record<string, string | undefined> = process.env): string {
  return env.ALLMENDE_NODE && env.ALLMENDE_NODE.length > 0 ? env.ALLMENDE_NODE : DEFAULT_NODE
}

/** Adds `--node URL` to a command that talks to a node. */
export function withNode(cmd: Command): Command {
  return cmd.option(
    '--node <url>',
    'the node API to talk to (default: $ALLMENDE_NODE or http://127.0.0.1:7070)',
  )
}

export interface RecordAnswer {
  readonly id: string
  readonly duplicate: boolean
  readonly report?: RecordReport
}

export class NodeClient {
  readonly base: string
  readonly timeoutMs: number
  /** How the user chose this node, for the message when it cannot be reached. */
  private readonly chosenBy: string

  constructor(url: string | undefined, timeoutMs = 15_000, chosenBy = 'set --node or $ALLMENDE_NODE') {
    this.chosenBy = chosenBy
    const raw = url ?? defaultNode()
    let parsed: URL
    try {
      parsed = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`)
    } catch {
      throw usage(`--node: not a URL: ${raw}`)
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
      throw usage(`--node: only http:// and https:// URLs are supported, not ${parsed.protocol}`)
    this.base = parsed.toString().replace(/\/+$/, '')
    this.timeoutMs = timeoutMs
  }

  private async request(path: string, init: RequestInit = {}, timeoutMs = this.timeoutMs): Promise<Response> {
    try {
      return await fetch(`${this.base}${path}`, { ...init, signal: AbortSignal.timeout(timeoutMs) })
    } catch (e) {
      throw this.unreachable(e, timeoutMs)
    }
  }

  private unreachable(e: unknown, timeoutMs: number): CliError {
    const err = e as Error & { code?: string; cause?: { code?: string; message?: string } }
    if (err.name === 'TimeoutError' || err.name === 'AbortError')
      // It was reached, but went quiet: not a node that is down.
      return new CliError(
        'node-timeout',
        `the node at ${this.base} gave no answer for ${timeoutMs / 1000} s; see its log`,
        EXIT.unreachable,
      )
    const why = err.cause?.code ?? err.cause?.message ?? err.code ?? err.message
    return new CliError(
      'node-unreachable',
      `cannot reach the node at ${this.base} (${why}); is it running? (${this.chosenBy})`,
      EXIT.unreachable,
    )
  }

  private async answer<T>(res: Response): Promise<T> {
    const text = await res.text()
    let body: unknown
    try {
      body = text.length > 0 ? JSON.parse(text) : undefined
    } catch {
      body = undefined
    }
    if (!res.ok) {
      const error = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error
      const code = typeof error?.code === 'string' ? error.code : `http-${res.status}`
      const message =
        typeof error?.message === 'string'
          ? error.message
          : `the node answered ${res.status} ${res.statusText}`
      throw new CliError(code, message, EXIT.failed, typeof error === 'object' && error !== null ? error : {})
    }
    if (body === undefined) throw new CliError('bad-answer', `the node at ${this.base} did not answer JSON`)
    return body as T
  }

  async get<T>(path: string): Promise<T> {
    return this.answer<T>(await this.request(path, { headers: { accept: 'application/json' } }))
  }

  /** POSTs raw bytes (e.g. a CAR of weights) and reads the JSON answer; `timeoutMs` for large bodies. */
  async postBytes<T>(
    path: string,
    body: Uint8Array,
    headers: Record<string, string>,
    timeoutMs = 10 * 60_000,
  ): Promise<T> {
    const res = await this.request(
      path,
      { method: 'POST', headers: { accept: 'application/json', ...headers }, body: Buffer.from(body) },
      timeoutMs,
    )
    return this.answer<T>(res)
  }

  /**
   * POSTs a stream (a model's CAR) as it is produced and reads the JSON answer. Through node:http
   * rather than fetch: fetch pulls an async iterable body as fast as it yields, so a CAR of many
   * GiB would pile up in memory; here one chunk is written while the next is pulled, and the one
   * after only once the first was handed to the socket (so a producer may reuse a buffer from two
   * chunks back). An error the stream throws (a file that
   * changed) is thrown as it is; an answer the node gives before the whole body was sent (a
   * refusal) ends the upload and is the result. No limit on the whole: a model of many GiB takes
   * as long as it takes; only a connection quiet for `idleMs` (nothing sent, nothing answered)
   * ends it.
   */
  async postStream<T>(
    path: string,
    body: AsyncIterable<Uint8Array>,
    headers: Record<string, string>,
    idleMs = 2 * 60_000,
  ): Promise<T> {
    const url = new URL(`${this.base}${path}`)
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, {
      method: 'POST',
      headers: { accept: 'application/json', ...headers },
    })
    req.setTimeout(idleMs, () =>
      req.destroy(Object.assign(new Error('the connection was idle'), { name: 'TimeoutError' })),
    )
    const answered = new Promise<Response>((resolve, reject) => {
      req.once('response', (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.once('error', reject)
        res.once('end', () =>
          resolve(
            new Response(Buffer.concat(chunks), {
              status: res.statusCode ?? 502,
              statusText: res.statusMessage ?? '',
            }),
          ),
        )
      })
      req.once('error', reject)
    })
    // Observed below, after the body: a refusal can come while it is still being sent.
    answered.catch(() => {})
    let closed = false
    req.once('close', () => {
      closed = true
    })
    // Resolves once `chunk` was written out, or the request is closed.
    const write = (chunk: Uint8Array) =>
      new Promise<void>((resolve) => {
        const go = () => {
          req.off('close', go)
          resolve()
        }
        req.on('close', go)
        req.write(chunk, go)
      })
    try {
      let writing: Promise<void> | undefined
      for await (const chunk of body) {
        await writing
        if (closed) break
        writing = write(chunk)
      }
      await writing
      req.end()
    } catch (e) {
      req.destroy()
      throw e
    }
    let res: Response
    try {
      res = await answered
    } catch (e) {
      throw this.unreachable(e, idleMs)
    }
    return this.answer<T>(res)
  }

  /**
   * GETs raw bytes (a certificate CAR); a 4xx/5xx is a CliError with the node's code. With
   * `maxBytes`, a body longer than that is cut off and refused (`answer-too-large`): a hostile
   * node cannot make the CLI hold an unbounded answer.
   */
  async getBytes(path: string, accept: string, maxBytes?: number): Promise<Uint8Array> {
    return (await this.getBytesAnswer(path, accept, maxBytes)).bytes
  }

  /** As `getBytes`, with the answer's headers (what the node says about the bytes, e.g. a certificate's mode). */
  async getBytesAnswer(
    path: string,
    accept: string,
    maxBytes?: number,
  ): Promise<{ bytes: Uint8Array; headers: Headers }> {
    const res = await this.request(path, { headers: { accept } })
    if (!res.ok) return this.answer<never>(res)
    return { bytes: await this.bodyOf(res, path, maxBytes), headers: res.headers }
  }

  private async bodyOf(res: Response, path: string, maxBytes: number | undefined): Promise<Uint8Array> {
    if (maxBytes === undefined || !res.body) return new Uint8Array(await res.arrayBuffer())
    const parts: Uint8Array[] = []
    let size = 0
    try {
      for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
        size += part.length
        if (size > maxBytes) {
          // Leaving the loop cancels the body. The message names the resource, not its query
          // (`?mode=…&since=…`): what was too large is the answer for that resource.
          throw new CliError(
            'answer-too-large',
            `the node at ${this.base} answered ${path.split('?')[0]} with more than ${maxBytes} bytes`,
          )
        }
        parts.push(part)
      }
    } catch (e) {
      if (e instanceof CliError) throw e
      throw this.unreachable(e, this.timeoutMs)
    }
    return new Uint8Array(Buffer.concat(parts))
  }

  /** Submits one signed record (application/cbor). Rejections come back as CliErrors with the node's code. */
  async postRecord(bytes: Uint8Array): Promise<RecordAnswer> {
    const res = await this.request('/records', {
      method: 'POST',
      headers: { 'content-type': 'application/cbor', accept: 'application/json' },
      body: Buffer.from(bytes),
    })
    return this.answer<RecordAnswer>(res)
  }
}
