/**
 * Key files on disk: personal identities and steward keys (`allmende init`;
 * the choices and their measurements are docs/adr/0011-key-files.md). Where a
 * key lives and how its passphrase is asked for are the caller's business (the
 * CLI's): nothing here reads the environment. A key file is JSON with the `did`
 * at top level (the node reads only that field of a steward key), in one of two
 * forms:
 *
 *     { "version": 1, "did": "did:key:z6Mk…", "secretKey": "<base64, 32 bytes>" }
 *     { "version": 1, "did": "did:key:z6Mk…",
 *       "kdf": { "name": "scrypt", "N": 32768, "r": 8, "p": 1, "salt": "<base64>" },
 *       "cipher": { "name": "xchacha20-poly1305", "nonce": "<base64, 24 bytes>" },
 *       "ciphertext": "<base64, 32 + 16 bytes>" }
 *
 * - scrypt (@noble/hashes) for the passphrase, XChaCha20-Poly1305
 *   (@noble/ciphers) for the secret key, with the version and did bound as
 *   associated data: a file whose clear-text did or version was swapped fails
 *   to decrypt instead of presenting someone else's identity.
 * - Written atomically with mode 0600 from creation (node/files.ts), never
 *   replacing a key unless asked to.
 * - Loading refuses a file that group or others may read, as ssh does, and
 *   checks that the did is the one the secret key gives.
 * - Signing uses node:crypto (node/ed25519-native.ts).
 *
 * Errors are `NodeError`s with stable codes: `key-exists`, `key-not-found`,
 * `key-invalid`, `key-permissions`, `key-passphrase-required`,
 * `key-passphrase-wrong`, `key-passphrase-empty`.
 */
import { randomBytes, randomFillSync } from 'node:crypto'
import { constants } from 'node:fs'
import { mkdir, open } from 'node:fs/promises'
import { dirname } from 'node:path'
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import { scryptAsync } from '@noble/hashes/scrypt.js'
import { parseDid } from '../protocol/did.js'
import { createSigner, type Signer } from '../protocol/signing.js'
import { nativeSigner } from './ed25519-native.js'
import { NodeError } from './errors.js'
import { pathExists, writeAtomic } from './files.js'

export type { Signer }

export const KEY_FILE_VERSION = 1
/**
 * scrypt N for new files: 2^15 with r = 8, p = 1 (32 MiB of memory per guess);
 * why not more: docs/adr/0011-key-files.md. Files record their N, so it can rise later.
 */
export const DEFAULT_SCRYPT_N = 2 ** 15
/** Bounds on parameters read from a file: a tampered file must not make us allocate a GiB. */
const MIN_SCRYPT_N = 2 ** 10
const MAX_SCRYPT_MEMORY = 256 * 1024 * 1024
const MAX_KEY_FILE_BYTES = 64 * 1024
const AAD_DOMAIN = 'allmende/key/v1\n'

export interface PlainKeyFile {
  version: 1
  did: string
  secretKey: string
}

export interface EncryptedKeyFile {
  version: 1
  did: string
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string }
  cipher: { name: 'xchacha20-poly1305'; nonce: string }
  ciphertext: string
}

export type KeyFile = PlainKeyFile | EncryptedKeyFile

export interface CreateKeyOptions {
  /** Encrypt the secret key under this passphrase (NFC-normalised). */
  passphrase?: string
  /** Replace an existing file. Default false: an existing key is never lost by accident. */
  overwrite?: boolean
  /** scrypt cost for this file (a power of two); tests use small values. */
  scryptN?: number
}

export interface LoadKeyOptions {
  passphrase?: string
}

function keyError(code: string, message: string, cause?: unknown): NodeError {
  return new NodeError(code, message, { status: 400, ...(cause === undefined ? {} : { cause }) })
}

function aad(version: number, did: string): Uint8Array {
  return new TextEncoder().encode(`${AAD_DOMAIN}${version}\n${did}`)
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
}

/** Strict base64: the text must be exactly what encoding the bytes gives back. */
function unb64(text: unknown, field: string, path: string, length?: number): Uint8Array {
  if (typeof text !== 'string') throw keyError('key-invalid', `${path}: "${field}" must be base64 text`)
  const bytes = Buffer.from(text, 'base64')
  if (bytes.toString('base64') !== text)
    throw keyError('key-invalid', `${path}: "${field}" is not valid base64`)
  if (length !== undefined && bytes.length !== length) {
    throw keyError('key-invalid', `${path}: "${field}" must hold ${length} bytes, not ${bytes.length}`)
  }
  const copy = new Uint8Array(bytes)
  bytes.fill(0) // may be a slice of the shared pool; secrets pass through here
  return copy
}

function normalisePassphrase(passphrase: string): string {
  if (passphrase.length === 0) {
    throw keyError('key-passphrase-empty', 'the passphrase is empty: give one, or create the key without one')
  }
  return passphrase.normalize('NFC')
}

function checkScrypt(N: unknown, r: unknown, p: unknown, path: string): { N: number; r: number; p: number } {
  const int = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v > 0
  if (!int(N) || !int(r) || !int(p))
    throw keyError('key-invalid', `${path}: scrypt N, r and p must be positive integers`)
  const [n, rr, pp] = [N as number, r as number, p as number]
  if ((n & (n - 1)) !== 0 || n < MIN_SCRYPT_N || 128 * n * rr > MAX_SCRYPT_MEMORY || pp > 16) {
    throw keyError(
      'key-invalid',
      `${path}: scrypt parameters out of range (N a power of two ≥ ${MIN_SCRYPT_N}, 128·N·r ≤ ${MAX_SCRYPT_MEMORY}, p ≤ 16)`,
    )
  }
  return { N: n, r: rr, p: pp }
}

async function deriveKey(
  passphrase: string,
  salt: Uint8Array,
  params: { N: number; r: number; p: number },
): Promise<Uint8Array> {
  return scryptAsync(normalisePassphrase(passphrase), salt, { ...params, dkLen: 32 })
}

function existsError(path: string): NodeError {
  return keyError(
    'key-exists',
    `a key already exists at ${path}; it was left untouched (move it away first if you really mean to replace it)`,
  )
}

/** Writes the key file, mode 0600 from creation, in a 0700 directory; never replaces one unless `overwrite`. */
async function writeKeyFile(path: string, file: KeyFile, overwrite: boolean): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  try {
    await writeAtomic(path, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600, overwrite })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST' && !overwrite) throw existsError(path)
    throw e
  }
}

/**
 * Creates a new Ed25519 identity in a key file at `path` (encrypted if a
 * passphrase is given) and returns its did. Never replaces an existing file
 * unless `overwrite` is set (code `key-exists`).
 */
export async function createKeyFile(path: string, options: CreateKeyOptions = {}): Promise<{ did: string }> {
  if (!options.overwrite && (await pathExists(path))) throw existsError(path)
  // Filled in place: `randomBytes` may hand out a slice of Node's shared buffer pool.
  const secretKey = randomFillSync(new Uint8Array(32))
  try {
    const { did } = createSigner(secretKey, nativeSigner)
    let file: KeyFile
    if (options.passphrase === undefined) {
      file = { version: KEY_FILE_VERSION, did, secretKey: b64(secretKey) }
    } else {
      const N = options.scryptN ?? DEFAULT_SCRYPT_N
      const params = checkScrypt(N, 8, 1, path)
      const salt = new Uint8Array(randomBytes(16))
      const nonce = new Uint8Array(randomBytes(24))
      const key = await deriveKey(options.passphrase, salt, params)
      const ciphertext = xchacha20poly1305(key, nonce, aad(KEY_FILE_VERSION, did)).encrypt(secretKey)
      key.fill(0)
      file = {
        version: KEY_FILE_VERSION,
        did,
        kdf: { name: 'scrypt', ...params, salt: b64(salt) },
        cipher: { name: 'xchacha20-poly1305', nonce: b64(nonce) },
        ciphertext: b64(ciphertext),
      }
    }
    await writeKeyFile(path, file, options.overwrite === true)
    return { did }
  } finally {
    secretKey.fill(0)
  }
}

/** Reads and checks a key file's shape and permissions, without decrypting it. */
export async function readKeyFile(path: string): Promise<KeyFile> {
  let handle: Awaited<ReturnType<typeof open>>
  try {
    // Symbolic links are followed (secret mounts use them); the mode checked is the target's.
    // O_NONBLOCK: a FIFO in the key's place must not hang the command (it is refused below).
    handle = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0))
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT') {
      throw keyError('key-not-found', `no key file at ${path}; create one with \`allmende init\``, e)
    }
    if (code === 'EACCES') throw keyError('key-permissions', `cannot read ${path}: permission denied`, e)
    throw keyError('key-invalid', `cannot open ${path}: ${(e as Error).message}`, e)
  }
  let text: string
  try {
    const st = await handle.stat()
    if (!st.isFile()) throw keyError('key-invalid', `${path} is not a regular file`)
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      throw keyError(
        'key-permissions',
        `${path} may be read by others (mode ${(st.mode & 0o777).toString(8).padStart(3, '0')}); ` +
          `a private key must be private: run \`chmod 600 ${path}\``,
      )
    }
    if (st.size > MAX_KEY_FILE_BYTES) throw keyError('key-invalid', `${path} is too large to be a key file`)
    text = await handle.readFile('utf8')
  } finally {
    await handle.close()
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    throw keyError('key-invalid', `${path} is not JSON: ${(e as Error).message}`, e)
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw keyError('key-invalid', `${path} is not a key file (a JSON object)`)
  }
  const f = json as Record<string, unknown>
  if (f.version !== KEY_FILE_VERSION) {
    throw keyError(
      'key-invalid',
      `${path}: key file version ${JSON.stringify(f.version)} is not supported (this allmende reads version 1)`,
    )
  }
  const did = parseDid(f.did)
  if (!did.ok) throw keyError('key-invalid', `${path}: "did" is not a did:key (${did.message})`)
  if ('ciphertext' in f) {
    const kdf = f.kdf as Record<string, unknown> | undefined
    const cipher = f.cipher as Record<string, unknown> | undefined
    if (kdf?.name !== 'scrypt') throw keyError('key-invalid', `${path}: "kdf" must be {"name": "scrypt", …}`)
    if (cipher?.name !== 'xchacha20-poly1305') {
      throw keyError('key-invalid', `${path}: "cipher" must be {"name": "xchacha20-poly1305", …}`)
    }
    const params = checkScrypt(kdf.N, kdf.r, kdf.p, path)
    const salt = unb64(kdf.salt, 'kdf.salt', path)
    if (salt.length < 16) throw keyError('key-invalid', `${path}: "kdf.salt" must hold at least 16 bytes`)
    unb64(cipher.nonce, 'cipher.nonce', path, 24)
    unb64(f.ciphertext, 'ciphertext', path, 48)
    return {
      version: 1,
      did: f.did as string,
      kdf: { name: 'scrypt', ...params, salt: kdf.salt as string },
      cipher: { name: 'xchacha20-poly1305', nonce: cipher.nonce as string },
      ciphertext: f.ciphertext as string,
    }
  }
  unb64(f.secretKey, 'secretKey', path, 32)
  return { version: 1, did: f.did as string, secretKey: f.secretKey as string }
}

export function isEncrypted(file: KeyFile): file is EncryptedKeyFile {
  return 'ciphertext' in file
}

/**
 * Loads a key file as a `Signer` (node:crypto backend). An encrypted file
 * needs `passphrase`; a plain file ignores it. The did in the file must be
 * the one its secret key gives (`key-invalid` otherwise).
 */
export async function loadSigner(path: string, options: LoadKeyOptions = {}): Promise<Signer> {
  const file = await readKeyFile(path)
  let secretKey: Uint8Array
  if (isEncrypted(file)) {
    if (options.passphrase === undefined) {
      throw keyError('key-passphrase-required', `${path} is encrypted: give its passphrase to unlock it`)
    }
    const salt = unb64(file.kdf.salt, 'kdf.salt', path)
    const key = await deriveKey(options.passphrase, salt, file.kdf)
    try {
      secretKey = xchacha20poly1305(
        key,
        unb64(file.cipher.nonce, 'cipher.nonce', path, 24),
        aad(file.version, file.did),
      ).decrypt(unb64(file.ciphertext, 'ciphertext', path, 48))
    } catch (e) {
      throw keyError(
        'key-passphrase-wrong',
        `cannot unlock ${path}: the passphrase is wrong, or the file was altered`,
        e,
      )
    } finally {
      key.fill(0)
    }
  } else {
    secretKey = unb64(file.secretKey, 'secretKey', path, 32)
  }
  try {
    const signer = createSigner(secretKey, nativeSigner)
    if (signer.did !== file.did) {
      throw keyError(
        'key-invalid',
        `${path}: the did in the file (${file.did}) is not the one its secret key gives (${signer.did})`,
      )
    }
    return signer
  } finally {
    secretKey.fill(0)
  }
}

/** The did a key file names, without unlocking it (what a node needs of its steward key). */
export async function keyFileDid(path: string): Promise<string> {
  return (await readKeyFile(path)).did
}
