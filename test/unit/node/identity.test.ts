/**
 * Key files on disk: plain and encrypted round trips, refusals (overwrite,
 * permissions, wrong passphrase, tampering, a swapped did), and signatures
 * that the protocol's own verification accepts.
 */
import { execFileSync } from 'node:child_process'
import { chmod, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { allmendeHome, identityPath } from '../../../cli/homes.js'
import { isNodeError } from '../../../node/errors.js'
import {
  createKeyFile,
  DEFAULT_SCRYPT_N,
  type EncryptedKeyFile,
  keyFileDid,
  loadSigner,
} from '../../../node/identity.js'
import { decodeRecord, parseDid, signRecord, utf8, zip215 } from '../../../protocol/index.js'
import { Simulator } from '../../support/simulator.js'

/** Small scrypt cost for speed; one test below uses the default. */
const FAST = { scryptN: 2 ** 10 }
const posix = process.platform !== 'win32'

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (e) {
    if (isNodeError(e)) return e.code
    throw e
  }
  throw new Error('expected a rejection')
}

describe('key files', () => {
  let home: string
  let path: string

  beforeEach(async () => {
    home = join(await mkdtemp(join(tmpdir(), 'allmende-identity-')), 'home')
    path = identityPath(home)
  })
  afterEach(async () => {
    await rm(join(home, '..'), { recursive: true, force: true })
  })

  it('finds the home in $ALLMENDE_HOME, else ~/.allmende', () => {
    expect(allmendeHome({ ALLMENDE_HOME: '/srv/a' })).toBe('/srv/a')
    expect(allmendeHome({})).toMatch(/\.allmende$/)
    expect(identityPath('/srv/a')).toBe(join('/srv/a', 'identity.json'))
  })

  it('round-trips a plain key: 0600 file in a 0700 directory, did at top level, no temp files left', async () => {
    const { did } = await createKeyFile(path)
    expect(did).toMatch(/^did:key:z6Mk/)
    const json = JSON.parse(await readFile(path, 'utf8'))
    expect(Object.keys(json).sort()).toEqual(['did', 'secretKey', 'version'])
    expect(json.version).toBe(1)
    expect(json.did).toBe(did)
    expect(Buffer.from(json.secretKey, 'base64').length).toBe(32)
    if (posix) {
      expect((await stat(path)).mode & 0o777).toBe(0o600)
      expect((await stat(home)).mode & 0o777).toBe(0o700)
    }
    expect(await readdir(home)).toEqual(['identity.json'])

    const signer = await loadSigner(path)
    expect(signer.did).toBe(did)
    expect(await keyFileDid(path)).toBe(did)
  })

  it('round-trips an encrypted key, and the file holds no secret in clear', async () => {
    const { did } = await createKeyFile(path, { passphrase: 'correct horse', ...FAST })
    const json = JSON.parse(await readFile(path, 'utf8')) as EncryptedKeyFile
    expect(json).toMatchObject({
      version: 1,
      did,
      kdf: { name: 'scrypt', N: 1024, r: 8, p: 1 },
      cipher: { name: 'xchacha20-poly1305' },
    })
    expect(json).not.toHaveProperty('secretKey')
    expect(Buffer.from(json.cipher.nonce, 'base64').length).toBe(24)
    expect(Buffer.from(json.ciphertext, 'base64').length).toBe(48)
    // The node reads only `did` from a steward key; it is there without unlocking.
    expect(await keyFileDid(path)).toBe(did)

    const signer = await loadSigner(path, { passphrase: 'correct horse' })
    expect(signer.did).toBe(did)
  })

  it('normalises the passphrase (NFC), so a composed and a decomposed é unlock alike', async () => {
    await createKeyFile(path, { passphrase: 'caf\u00e9', ...FAST })
    const signer = await loadSigner(path, { passphrase: 'cafe\u0301' })
    expect(signer.did).toMatch(/^did:key:/)
  })

  it('uses the default scrypt cost for new files', async () => {
    const { did } = await createKeyFile(path, { passphrase: 'pw' })
    const json = JSON.parse(await readFile(path, 'utf8')) as EncryptedKeyFile
    expect(json.kdf.N).toBe(DEFAULT_SCRYPT_N)
    expect((await loadSigner(path, { passphrase: 'pw' })).did).toBe(did)
  })

  it('signs what the protocol verifies: raw messages and a whole record', async () => {
    await createKeyFile(path, { passphrase: 'pw', ...FAST })
    const signer = await loadSigner(path, { passphrase: 'pw' })
    const publicKey = parseDid(signer.did)
    if (!publicKey.ok) throw new Error(publicKey.message)
    expect(publicKey.value).toEqual(signer.publicKey)
    const message = utf8.encode('allmende')
    expect(zip215.verify(signer.sign(message), message, publicKey.value)).toBe(true)
    expect(zip215.verify(signer.sign(message), utf8.encode('allmendf'), publicKey.value)).toBe(false)

    const sim = new Simulator({ members: [{ name: 'a', roles: ['steward', 'voter'], weight: 1 }], base: 0 })
    const vote = signRecord(
      { kind: 'vote', federation: sim.federation, at: 1, body: { proposal: sim.federation, choice: 'yes' } },
      signer,
    )
    const decoded = decodeRecord(vote.bytes, { federation: sim.federation })
    expect(decoded.ok).toBe(true)
    expect(decoded.ok && decoded.value.record.author).toBe(signer.did)
  })

  it('refuses to overwrite an existing key unless asked, leaving it untouched', async () => {
    const { did } = await createKeyFile(path)
    const before = await readFile(path, 'utf8')
    expect(await codeOf(createKeyFile(path))).toBe('key-exists')
    expect(await codeOf(createKeyFile(path, { passphrase: 'pw', ...FAST }))).toBe('key-exists')
    expect(await readFile(path, 'utf8')).toBe(before)
    expect((await loadSigner(path)).did).toBe(did)
    expect(await readdir(home)).toEqual(['identity.json'])

    const replaced = await createKeyFile(path, { overwrite: true })
    expect(replaced.did).not.toBe(did)
    expect((await loadSigner(path)).did).toBe(replaced.did)
    if (posix) expect((await stat(path)).mode & 0o777).toBe(0o600)
  })

  it('asks for a passphrase, and rejects a wrong or empty one', async () => {
    await createKeyFile(path, { passphrase: 'right', ...FAST })
    expect(await codeOf(loadSigner(path))).toBe('key-passphrase-required')
    expect(await codeOf(loadSigner(path, { passphrase: 'wrong' }))).toBe('key-passphrase-wrong')
    expect(await codeOf(loadSigner(path, { passphrase: '' }))).toBe('key-passphrase-empty')
    expect(await codeOf(createKeyFile(join(home, 'other.json'), { passphrase: '' }))).toBe(
      'key-passphrase-empty',
    )
  })

  it('detects a tampered ciphertext, nonce, or salt', async () => {
    await createKeyFile(path, { passphrase: 'pw', ...FAST })
    const original = JSON.parse(await readFile(path, 'utf8')) as EncryptedKeyFile
    const flip = (b64: string) => {
      const bytes = Buffer.from(b64, 'base64')
      bytes[5]! ^= 1
      return bytes.toString('base64')
    }
    for (const tamper of [
      (f: EncryptedKeyFile) => ({ ...f, ciphertext: flip(f.ciphertext) }),
      (f: EncryptedKeyFile) => ({ ...f, cipher: { ...f.cipher, nonce: flip(f.cipher.nonce) } }),
      (f: EncryptedKeyFile) => ({ ...f, kdf: { ...f.kdf, salt: flip(f.kdf.salt) } }),
      (f: EncryptedKeyFile) => ({ ...f, kdf: { ...f.kdf, N: 2048 } }),
    ]) {
      await writeFile(path, JSON.stringify(tamper(original)), { mode: 0o600 })
      expect(await codeOf(loadSigner(path, { passphrase: 'pw' }))).toBe('key-passphrase-wrong')
    }
  })

  it('fails to decrypt under a swapped did (the did is bound as associated data)', async () => {
    await createKeyFile(path, { passphrase: 'pw', ...FAST })
    const other = join(home, 'other.json')
    const { did: otherDid } = await createKeyFile(other)
    const file = JSON.parse(await readFile(path, 'utf8')) as EncryptedKeyFile
    await writeFile(path, JSON.stringify({ ...file, did: otherDid }), { mode: 0o600 })
    expect(await codeOf(loadSigner(path, { passphrase: 'pw' }))).toBe('key-passphrase-wrong')
  })

  it('checks that a plain file’s did is the one its secret key gives', async () => {
    await createKeyFile(path)
    const other = join(home, 'other.json')
    const { did: otherDid } = await createKeyFile(other)
    const file = JSON.parse(await readFile(path, 'utf8'))
    await writeFile(path, JSON.stringify({ ...file, did: otherDid }), { mode: 0o600 })
    expect(await codeOf(loadSigner(path))).toBe('key-invalid')
  })

  it.skipIf(!posix)('refuses a key file that group or others may read, as ssh does', async () => {
    await createKeyFile(path)
    for (const mode of [0o640, 0o604, 0o644]) {
      await chmod(path, mode)
      const error = await loadSigner(path).catch((e: unknown) => e)
      expect(isNodeError(error) && error.code).toBe('key-permissions')
      expect((error as Error).message).toContain('chmod 600')
    }
    // Through a symbolic link (as secret mounts provide them) the target's mode decides.
    const link = join(home, 'link.json')
    await symlink(path, link)
    expect(await codeOf(loadSigner(link))).toBe('key-permissions')
    await chmod(path, 0o400)
    expect((await loadSigner(path)).did).toMatch(/^did:key:/)
    expect((await loadSigner(link)).did).toMatch(/^did:key:/)
  })

  it('names a missing file and malformed ones with stable codes', async () => {
    const missing = await loadSigner(join(home, 'none.json')).catch((e: unknown) => e)
    expect(isNodeError(missing) && missing.code).toBe('key-not-found')
    expect((missing as Error).message).toContain('allmende init')

    await createKeyFile(path)
    const good = JSON.parse(await readFile(path, 'utf8'))
    const bad = join(home, 'bad.json')
    for (const content of [
      'not json',
      '[]',
      JSON.stringify({ ...good, version: 2 }),
      JSON.stringify({ ...good, did: 'did:web:example.org' }),
      JSON.stringify({ ...good, secretKey: 'AAAA' }),
      JSON.stringify({ ...good, secretKey: `${good.secretKey}!` }),
      JSON.stringify({ version: 1, did: good.did, ciphertext: 'AAAA' }),
    ]) {
      await writeFile(bad, content, { mode: 0o600 })
      expect(await codeOf(loadSigner(bad)), content).toBe('key-invalid')
    }
    expect(await codeOf(loadSigner(home))).toBe('key-invalid')
    if (posix) {
      // A FIFO in the key's place is refused, not waited on.
      const fifo = join(home, 'fifo.json')
      execFileSync('mkfifo', ['-m', '600', fifo])
      expect(await codeOf(loadSigner(fifo))).toBe('key-invalid')
    }
  })

  it('refuses scrypt parameters that would cost unbounded memory', async () => {
    await createKeyFile(path, { passphrase: 'pw', ...FAST })
    const file = JSON.parse(await readFile(path, 'utf8')) as EncryptedKeyFile
    for (const kdf of [
      { ...file.kdf, N: 2 ** 24 },
      { ...file.kdf, N: 1000 },
      { ...file.kdf, r: 0 },
    ]) {
      await writeFile(path, JSON.stringify({ ...file, kdf }), { mode: 0o600 })
      expect(await codeOf(loadSigner(path, { passphrase: 'pw' }))).toBe('key-invalid')
    }
  })
})
