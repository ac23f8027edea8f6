/**
 * The one HTTP request of a multi-source fetch: `GET` a CAR from a trustless gateway with
 * node:http (a plain byte stream, lighter than fetch's web streams: ADR 0012), closed when no
 * byte has come for `idleMs` (an idle timeout, not a total one: a range of GiBs takes as long as
 * it takes). Every failure is a NodeError naming the source, for the scheduler to drop it by
 * (docs/adr/0030-multi-source-fetch.md).
 */
import type { IncomingMessage } from 'node:http'
import { get as httpGet } from 'node:http'
import { get as httpsGet } from 'node:https'
import { NodeError } from '../errors.js'
import { CAR_TYPE } from './http-contract.js'

export interface CarStream {
  /** The body's chunks; each one restarts the idle timer. */
  readonly body: AsyncIterable<Uint8Array>
  /** Bytes received so far. */
  readonly received: () => number
  /** Lets go of the connection. */
  close(): void
}

/** Opens `url` for a CAR; throws when the gateway cannot be reached, stalls or refuses. */
export async function openCar(
  url: string,
  source: string,
  signal: AbortSignal,
  idleMs: number,
): Promise<CarStream> {
  // One controller per request, told of the caller's abort by a listener removed at its end, so
  // nothing of a finished request stays attached to the caller's long-lived signal.
  const ended = new AbortController()
  const stalled = () =>
    new NodeError('source-stalled', `${source} sent nothing for ${idleMs / 1000} s`, { status: 504 })
  const timer = setTimeout(() => ended.abort(stalled()), idleMs)
  const onAbort = () => ended.abort(signal.reason)
  signal.addEventListener('abort', onAbort, { once: true })
  const release = () => {
    clearTimeout(timer)
    signal.removeEventListener('abort', onAbort)
  }
  const why = (e: unknown) =>
    ended.signal.aborted && !signal.aborted ? ended.signal.reason : failure(source, e, signal)
  let res: IncomingMessage
  try {
    res = await request(url, ended.signal)
  } catch (e) {
    release()
    throw why(e)
  }
  timer.refresh()
  const type = (res.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (res.statusCode !== 200 || type !== CAR_TYPE) {
    release()
    res.destroy()
    throw new NodeError(
      'source-refused',
      `${source} answered ${res.statusCode} ${JSON.stringify(type.slice(0, 80))}, not a CAR`,
      { status: 502 },
    )
  }
  let received = 0
  const body = (async function* () {
    try {
      for await (const chunk of res) {
        timer.refresh()
        received += (chunk as Uint8Array).length
        yield chunk as Uint8Array
      }
    } catch (e) {
      throw why(e)
    } finally {
      release()
    }
  })()
  return {
    body,
    received: () => received,
    close: () => {
      release()
      res.destroy()
    },
  }
}

function request(url: string, signal: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? httpsGet : httpGet
    const accept = `${CAR_TYPE}; version=1; order=dfs; dups=n`
    const req = get(url, { headers: { accept }, signal }, resolve)
    req.once('error', reject)
  })
}

/** The caller's abort as itself; anything else as `source-failed` naming the source. */
function failure(source: string, e: unknown, signal: AbortSignal): unknown {
  if (signal.aborted) return signal.reason
  const err = e as Error & { code?: string }
  return new NodeError('source-failed', `${source}: ${err?.code ?? err?.message ?? String(e)}`, {
    status: 502,
    cause: e,
  })
}
