/**
 * Member identities as `did:key` (SPEC.md §4.1): `did:key:z` + base58btc of
 * the multicodec `ed25519-pub` prefix (0xed 0x01) and the 32-byte key.
 *
 * `parseDid` checks the text form only (cheap, used for every author);
 * `parseRegistrableDid` also refuses non-canonical and small-order points and
 * is used wherever a key is registered: genesis members, admissions and key
 * replacements.
 */
import { base58btc } from 'multiformats/bases/base58'
import { concatBytes } from './bytes.js'
import { keyProblem } from './ed25519.js'
import { ok, type Result, reject } from './result.js'

export type Did = string

const PREFIX = 'did:key:'
const ED25519_PUB = new Uint8Array([0xed, 0x01])
export const MAX_DID_LENGTH = 64

const cache = new Map<string, Uint8Array>()
const registrable = new Map<string, ReturnType<typeof keyProblem> | 'ok'>()
const CACHE_MAX = 50_000

export function didFromPublicKey(publicKey: Uint8Array): Did {
  if (publicKey.length !== 32) throw new TypeError('an Ed25519 public key is 32 bytes')
  return PREFIX + base58btc.encode(concatBytes(ED25519_PUB, publicKey))
}

/** The public key of a did:key, or why the text is not one. Memoized: pure. */
export function parseDid(did: unknown, path?: string): Result<Uint8Array> {
  if (typeof did !== 'string') return reject('schema-type', 'a DID must be a text string', path)
  const hit = cache.get(did)
  if (hit) return ok(hit.slice())
  if (did.length > MAX_DID_LENGTH)
    return reject('did-length', `a did:key is at most ${MAX_DID_LENGTH} characters`, path)
  if (!did.startsWith(PREFIX)) return reject('did-prefix', 'a member id must start with "did:key:"', path)
  const mb = did.slice(PREFIX.length)
  if (!mb.startsWith('z')) return reject('did-prefix', 'a did:key must be base58btc ("did:key:z…")', path)
  let raw: Uint8Array
  try {
    raw = base58btc.decode(mb)
  } catch {
    return reject('did-base58', 'the did:key is not valid base58btc', path)
  }
  if (raw.length < 2 || raw[0] !== ED25519_PUB[0] || raw[1] !== ED25519_PUB[1]) {
    return reject('did-multicodec', 'the did:key is not an Ed25519 key (multicodec 0xed01)', path)
  }
  if (raw.length !== 34)
    return reject('did-length', `an Ed25519 did:key holds 32 key bytes, not ${raw.length - 2}`, path)
  const key = raw.subarray(2)
  if (cache.size >= CACHE_MAX) cache.clear()
  cache.set(did, key)
  return ok(key.slice())
}

/** Like parseDid, and the key must be a canonical point of large order. */
export function parseRegistrableDid(did: unknown, path?: string): Result<Uint8Array> {
  const parsed = parseDid(did, path)
  if (!parsed.ok) return parsed
  let problem = registrable.get(did as string)
  if (problem === undefined) {
    // The prime-order check costs ~1.5 ms per key (a full scalar multiplication): remember verdicts.
    problem = keyProblem(parsed.value) ?? 'ok'
    if (registrable.size >= CACHE_MAX) registrable.clear()
    registrable.set(did as string, problem)
  }
  if (problem === 'did-small-order')
    return reject(problem, 'a key of small order cannot be a member key', path)
  if (problem !== 'ok') return reject(problem, 'the key is not a canonical Ed25519 point', path)
  return parsed
}
