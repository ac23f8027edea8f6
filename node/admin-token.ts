/**
 * A node's admin token (HOME/api.token, 0600): the only thing between the network and the admin
 * endpoints, so it is checked on start (never empty, never short), read again by a running node
 * when the file changes, and replaced atomically by `allmende node token --rotate`.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync, type Stats, statSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { NodeError } from './errors.js'
import { writeAtomic } from './files.js'

/** The token's file in the node home. */
export const TOKEN_FILE = 'api.token'

/**
 * The shortest admin token a node accepts. The token is the only thing between the network and
 * the admin endpoints, so it must be unguessable: 32 characters are 128 bits even as hex (what
 * `node token --rotate` writes is 43 base64url characters, 256 bits). An empty token is refused
 * outright; it once turned admin auth off.
 */
export const MIN_TOKEN_CHARS = 32

/** A fresh admin token: 32 random bytes as base64url (43 characters). */
export function newToken(): string {
  return randomBytes(32).toString('base64url')
}

/** How to replace a token that is refused, said in every such error. */
function rotateHint(home: string): string {
  return `make a new one with "allmende node token --rotate --home ${home}"`
}

/**
 * The token in a token file's text, or a `NodeError` saying why it cannot be one:
 * `token-empty`, `token-too-short` (fewer than MIN_TOKEN_CHARS characters).
 */
export function checkToken(text: string, path: string, home: string): string {
  const token = text.trim()
  if (token.length === 0)
    throw new NodeError(
      'token-empty',
      `${path} is empty: a node never runs without an admin token; ${rotateHint(home)}`,
    )
  if (token.length < MIN_TOKEN_CHARS)
    throw new NodeError(
      'token-too-short',
      `${path} holds ${token.length} characters; an admin token needs at least ${MIN_TOKEN_CHARS} so nobody can guess it; ${rotateHint(home)}`,
    )
  return token
}

/** Reads and checks the token file: private to its owner, and a token long enough. */
export async function readToken(home: string): Promise<string> {
  const path = join(home, TOKEN_FILE)
  const st = await stat(path)
  if ((st.mode & 0o077) !== 0) {
    throw new NodeError('token-permissions', `${path} must not be readable by others (chmod 600 ${path})`)
  }
  return checkToken(await readFile(path, 'utf8'), path, home)
}

/** The admin token, created on first use; refused (never replaced) when empty or short. */
export async function adminToken(home: string): Promise<string> {
  try {
    return await readToken(home)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
  const token = newToken()
  await writeAtomic(join(home, TOKEN_FILE), `${token}\n`, { mode: 0o600 })
  return token
}

/**
 * The admin token as a running node sees it, for each admin request: the file is read again
 * when it changed (a rotation takes effect at the next admin request, without a restart), and
 * while it is missing, readable by others or not a valid token the answer is undefined, so
 * every admin request is refused: nothing fails open. Synchronous (a stat per admin request)
 * because the check sits in request handlers that do not wait.
 */
export function tokenSource(home: string, onProblem: (error: Error) => void): () => string | undefined {
  const path = join(home, TOKEN_FILE)
  let seen = ''
  let token: string | undefined
  return () => {
    let st: Stats
    try {
      st = statSync(path)
    } catch (e) {
      if (seen !== 'missing') onProblem(e as Error)
      seen = 'missing'
      token = undefined
      return undefined
    }
    const stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.mode}`
    if (stamp === seen) return token
    seen = stamp
    try {
      if ((st.mode & 0o077) !== 0)
        throw new NodeError('token-permissions', `${path} must not be readable by others (chmod 600 ${path})`)
      token = checkToken(readFileSync(path, 'utf8'), path, home)
    } catch (e) {
      token = undefined
      onProblem(e as Error)
    }
    return token
  }
}

/**
 * Replaces the admin token with a fresh one (`node token --rotate`), atomically (node/files.ts),
 * so a reader sees the old token or the new one, never half of it. A running node reads the new
 * token at its next admin request.
 */
export async function rotateToken(home: string): Promise<{ path: string; token: string }> {
  const path = join(home, TOKEN_FILE)
  const token = newToken()
  await writeAtomic(path, `${token}\n`, { mode: 0o600 })
  return { path, token }
}
