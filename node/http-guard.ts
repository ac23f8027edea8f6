/**
 * Connection caps and the body budget of the HTTP API (node/api.ts). Nodes listen on 0.0.0.0, so
 * a stranger may open as many sockets as the kernel lets them and send bodies as slowly as they
 * like; what bounds the node is here:
 *
 * - A total connection cap and a per-address cap, checked when a socket is accepted, before
 *   the HTTP parser sees a byte: a refused socket gets one `429`/`503` JSON answer, what it sends
 *   is read and dropped, and it is closed within REFUSED_GRACE_MS.
 *   An address past its budget of forged signatures (auth-throttle.ts) is answered and closed
 *   at once, unread. An IPv6 address counts by its
 *   /64 (one host gets a whole /64). Sockets from a trusted proxy are not capped per address
 *   (the proxy carries many clients); their requests are, by the client address in
 *   `X-Forwarded-For`, while they are in flight. `X-Forwarded-For` from anyone else is ignored.
 * - A budget of request-body bytes held in memory at once, across all requests: a body that
 *   would go beyond it is refused with 503, so slow bodies cannot add up to the node's memory.
 * - An idle timeout answers a request whose body stalled with a 408 in the JSON shape before
 *   the socket is closed (Node's own idle handling would close it without a word).
 *
 * Counts are kept here, not guessed from the process: `load()` says how many sockets are open
 * and how many body bytes are held, which is what the abuse tests assert.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { BlockList, isIP, type Socket } from 'node:net'

export interface GuardOptions {
  readonly maxConnections: number
  readonly maxConnectionsPerAddress: number
  readonly maxBufferedBytes: number
  /** Addresses and ranges (`10.0.0.0/8`) whose `X-Forwarded-For` is believed. */
  readonly trustedProxies: readonly string[]
  /**
   * Whether an address (its key, `addressKey`) is refused at accept for now: one that sent more
   * forged signatures than its budget (auth-throttle.ts) is answered before the HTTP parser runs.
   */
  readonly refuseAddress?: (key: string) => boolean
}

export interface HttpLoad {
  /** Sockets handed to the HTTP server and not yet closed. */
  readonly connections: number
  /** Refused sockets still being closed. */
  readonly refusing: number
  /** Request-body bytes held in memory now. */
  readonly bufferedBytes: number
  /** Sockets refused since start, by reason. */
  readonly refused: { readonly total: number; readonly perAddress: number; readonly perClient: number }
}

/** A refusal in the API's error shape. */
export interface Refusal {
  readonly status: number
  readonly code: string
  readonly message: string
}

/** How long a refused socket may keep sending before it is closed. */
export const REFUSED_GRACE_MS = 2_000

/** One body's share of the budget; `release` gives it back (once). */
export interface BodyAccount {
  /** False when `bytes` more would go beyond the budget (nothing is taken then). */
  take(bytes: number): boolean
  release(): void
}

export interface ConnectionGuard {
  load(): HttpLoad
  /** The client's address: the peer, or for a trusted proxy the client it forwards for. */
  clientAddress(peer: string | undefined, forwardedFor: string | string[] | undefined): string
  /**
   * Counts a request from a trusted proxy against its client's cap until `res` closes; the
   * refusal when the client is at its cap, undefined for everyone else.
   */
  admitRequest(
    peer: string | undefined,
    forwardedFor: string | string[] | undefined,
    res: ServerResponse,
  ): Refusal | undefined
  /** A share of the body budget for one request. */
  account(): BodyAccount
  /** Closes every refused socket now (the server is closing). */
  closeRefused(): void
}

/** `::ffff:1.2.3.4` as `1.2.3.4`; anything else as it is. */
function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address
}

/** The key an address is counted under: IPv4 as it is, IPv6 by its /64. */
export function addressKey(address: string): string {
  const plain = plainAddress(address)
  if (isIP(plain) !== 6) return plain
  const [head = '', tail = ''] = plain.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === '' ? [] : tail.split(':')
  const groups = plain.includes('::')
    ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right]
    : left
  return `${groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`
}

function blockListOf(ranges: readonly string[]): BlockList {
  const list = new BlockList()
  for (const range of ranges) {
    const [address = '', bits] = range.split('/')
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4'
    if (bits === undefined) list.addAddress(address, family)
    else list.addSubnet(address, Number(bits), family)
  }
  return list
}

function errorResponse(status: number, reason: string, code: string, message: string): string {
  const body = JSON.stringify({ error: { code, message } })
  return [
    `HTTP/1.1 ${status} ${reason}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    'Retry-After: 5',
    '',
    body,
  ].join('\r\n')
}

const TOO_MANY_TOTAL = errorResponse(
  503,
  'Service Unavailable',
  'too-many-connections',
  'the node has as many open API connections as it takes (apiMaxConnections); try again shortly',
)
const TOO_MANY_FROM_ADDRESS = errorResponse(
  429,
  'Too Many Requests',
  'too-many-connections',
  'your address has as many open API connections as the node takes from one address (apiMaxConnectionsPerAddress); close one or try again shortly',
)

const TOO_MANY_BAD_SIGNATURES = errorResponse(
  429,
  'Too Many Requests',
  'too-many-bad-signatures',
  'this address sent too many signatures that do not verify; wait a few seconds, and check the signing key and clock',
)

/** What the guard counts: open connections and requests, the refused, the bytes buffered. */
interface GuardState {
  connections: number
  readonly perAddress: Map<string, number>
  readonly perClient: Map<string, number>
  /** Sockets refused, being answered before they close. */
  readonly refusing: Set<Socket>
  readonly refused: { total: number; perAddress: number; perClient: number }
  bufferedBytes: number
}

/**
 * Takes over `server`'s connection event: every socket is counted, and one over a cap is
 * answered and closed without reaching the HTTP parser. Call before the server listens.
 */
export function guardServer(server: Server, options: GuardOptions): ConnectionGuard {
  const isTrusted = trustedCheck(options.trustedProxies)
  const state: GuardState = {
    connections: 0,
    perAddress: new Map(),
    perClient: new Map(),
    refusing: new Set(),
    refused: { total: 0, perAddress: 0, perClient: 0 },
    bufferedBytes: 0,
  }
  // The HTTP server's own listener (it attaches the parser) runs only for admitted sockets.
  const httpListeners = server.listeners('connection') as ((socket: Socket) => void)[]
  server.removeAllListeners('connection')
  server.on('connection', (socket: Socket) => {
    if (!admitSocket(state, options, isTrusted, socket)) return
    for (const listener of httpListeners) listener.call(server, socket)
  })
  // A hard stop beyond which sockets are dropped unanswered (answering one needs a socket).
  server.maxConnections = options.maxConnections * 2
  const clientAddress = (peer: string | undefined, forwardedFor: string | string[] | undefined) =>
    clientAddressOf(isTrusted, peer, forwardedFor)

  return {
    load: () => ({
      connections: state.connections,
      refusing: state.refusing.size,
      bufferedBytes: state.bufferedBytes,
      refused: { ...state.refused },
    }),
    clientAddress,
    admitRequest(peer, forwardedFor, res) {
      if (!isTrusted(peer)) return undefined
      const key = addressKey(clientAddress(peer, forwardedFor))
      if ((state.perClient.get(key) ?? 0) >= options.maxConnectionsPerAddress) {
        state.refused.perClient++
        return {
          status: 429,
          code: 'too-many-connections',
          message:
            'your address has as many requests open as the node takes from one address (apiMaxConnectionsPerAddress); try again shortly',
        }
      }
      res.once('close', countIn(state.perClient, key))
      return undefined
    },
    account: () => bufferAccount(state, options.maxBufferedBytes),
    closeRefused() {
      for (const socket of state.refusing) socket.destroy()
    },
  }
}

/** Whether an address is one of `ranges` (the trusted proxies). */
function trustedCheck(ranges: readonly string[]): (address: string | undefined) => boolean {
  const trusted = blockListOf(ranges)
  return (address) => {
    if (address === undefined) return false
    const plain = plainAddress(address)
    const family = isIP(plain)
    return family !== 0 && trusted.check(plain, family === 6 ? 'ipv6' : 'ipv4')
  }
}

/** Adds one to `key`'s count; the function returned takes it back. */
function countIn(counts: Map<string, number>, key: string): () => void {
  counts.set(key, (counts.get(key) ?? 0) + 1)
  return () => {
    const left = (counts.get(key) ?? 1) - 1
    if (left === 0) counts.delete(key)
    else counts.set(key, left)
  }
}

/** A new connection counted and true, or answered with a refusal and false: the caps, then the address. */
function admitSocket(
  state: GuardState,
  options: GuardOptions,
  isTrusted: (address: string | undefined) => boolean,
  socket: Socket,
): boolean {
  if (state.connections >= options.maxConnections) {
    state.refused.total++
    refuse(state, socket, TOO_MANY_TOTAL)
    return false
  }
  const peer = socket.remoteAddress
  const key = peer === undefined || isTrusted(peer) ? undefined : addressKey(peer)
  if (key !== undefined && (state.perAddress.get(key) ?? 0) >= options.maxConnectionsPerAddress) {
    state.refused.perAddress++
    refuse(state, socket, TOO_MANY_FROM_ADDRESS)
    return false
  }
  if (key !== undefined && options.refuseAddress?.(key)) {
    // An address that forges signatures is not read: the answer goes out and the socket is
    // destroyed once it has (reading and dropping a body it streams would cost what it sends).
    state.refused.perAddress++
    socket.on('error', () => socket.destroy())
    socket.end(TOO_MANY_BAD_SIGNATURES, () => socket.destroy())
    return false
  }
  state.connections++
  const uncount = key === undefined ? undefined : countIn(state.perAddress, key)
  socket.once('close', () => {
    state.connections--
    uncount?.()
  })
  return true
}

/** Answers a refused socket and closes it, reading and dropping what it sends meanwhile. */
function refuse(state: GuardState, socket: Socket, response: string): void {
  state.refusing.add(socket)
  socket.once('close', () => state.refusing.delete(socket))
  socket.on('error', () => socket.destroy())
  // Read and drop what it sends: closing with unread bytes would reset the connection before
  // the client has read the answer.
  socket.on('data', () => {})
  socket.once('end', () => socket.destroy())
  socket.setTimeout(REFUSED_GRACE_MS, () => socket.destroy())
  socket.end(response)
}

/**
 * The client behind a trusted proxy, from `X-Forwarded-For` right to left: the nearest hop that is
 * not one of our proxies. A hop that is not an address ends the walk (a proxy wrote nonsense): the
 * proxy is the client then.
 */
function clientAddressOf(
  isTrusted: (address: string | undefined) => boolean,
  peer: string | undefined,
  forwardedFor: string | string[] | undefined,
): string {
  const own = plainAddress(peer ?? 'unknown')
  if (!isTrusted(peer) || forwardedFor === undefined) return own
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor)
    .split(',')
    .map((h) => h.trim())
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!
    if (isIP(plainAddress(hop)) === 0) return own
    if (!isTrusted(hop)) return plainAddress(hop)
  }
  return plainAddress(hops[0] ?? own)
}

/** A request body's share of the buffered-bytes budget. */
function bufferAccount(state: GuardState, maxBufferedBytes: number): BodyAccount {
  let held = 0
  let released = false
  return {
    take(bytes) {
      if (released || state.bufferedBytes + bytes > maxBufferedBytes) return false
      held += bytes
      state.bufferedBytes += bytes
      return true
    },
    release() {
      if (released) return
      released = true
      state.bufferedBytes -= held
      held = 0
    },
  }
}

export interface IdleWatch {
  /** Follows a request until its answer is sent, so a stall while it is sent can be answered. */
  track(req: IncomingMessage, res: ServerResponse): void
}

/**
 * What happens when no byte has moved on a socket for the server's idle timeout. Whose silence
 * it is decides:
 * - the client stopped sending the body of a request: it is answered 408 in the JSON shape
 *   (`request-idle`), and closed if it stays silent for `graceMs` more;
 * - the request is in and the node is still working on the answer (an import, a check of held
 *   weights): the node's silence, not the client's, so the connection stays;
 * - anything else (between requests, or a client that stopped reading an answer): closed.
 */
export function watchIdle(server: Server, graceMs: number): IdleWatch {
  const open = new WeakMap<Socket, { req: IncomingMessage; res: ServerResponse }>()
  const answered = new WeakSet<Socket>()
  server.on('timeout', (socket: Socket) => {
    const current = open.get(socket)
    if (current === undefined || current.res.headersSent || answered.has(socket)) {
      socket.destroy()
      return
    }
    if (current.req.complete) return
    answered.add(socket)
    socket.setTimeout(graceMs)
    const body = JSON.stringify({
      error: {
        code: 'request-idle',
        message: 'no byte of the request arrived for too long (apiIdleTimeoutMs); send it again',
      },
    })
    current.res.writeHead(408, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      connection: 'close',
    })
    current.res.end(body)
  })
  return {
    track(req, res) {
      const socket = req.socket
      open.set(socket, { req, res })
      res.once('close', () => {
        if (open.get(socket)?.res === res) open.delete(socket)
      })
    },
  }
}
