/**
 * Which key a command signs with, and its passphrase: `--key FILE` or the personal identity
 * (`$ALLMENDE_HOME/identity.json`); the passphrase from `--passphrase-file` or
 * `$ALLMENDE_PASSPHRASE`, never from a plain argument (it would show in `ps` and the shell history).
 */
import { readFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { loadSigner, readKeyFile, type Signer } from '../node/index.js'
import { CliError, usage } from './context.js'
import { identityPath } from './homes.js'
import { askHidden, canPrompt } from './prompt.js'

export interface KeyOptions {
  key?: string
  passphraseFile?: string
}

export function withKey(cmd: Command, what = 'the key to sign with'): Command {
  return cmd
    .option('--key <file>', `${what} (default: $ALLMENDE_HOME/identity.json)`)
    .option(
      '--passphrase-file <file>',
      'read the key passphrase from this file (or set $ALLMENDE_PASSPHRASE)',
    )
}

export async function passphrase(opts: KeyOptions): Promise<string | undefined> {
  if (opts.passphraseFile !== undefined) {
    let text: string
    try {
      text = await readFile(opts.passphraseFile, 'utf8')
    } catch (e) {
      throw usage(`--passphrase-file: cannot read ${opts.passphraseFile}: ${(e as Error).message}`)
    }
    // One trailing newline is how files end, not part of the passphrase.
    return text.replace(/\r?\n$/, '')
  }
  const env = process.env.ALLMENDE_PASSPHRASE
  return env !== undefined && env.length > 0 ? env : undefined
}

export function keyPath(opts: KeyOptions): string {
  return opts.key ?? identityPath()
}

export async function signerOf(opts: KeyOptions): Promise<Signer> {
  const path = keyPath(opts)
  const file = await readKeyFile(path)
  let pass = 'ciphertext' in file ? await passphrase(opts) : undefined
  // A person at a terminal is asked; a script without a passphrase gets one clear error.
  if ('ciphertext' in file && pass === undefined && canPrompt())
    pass = await askHidden(`passphrase for ${path}: `)
  if ('ciphertext' in file && pass === undefined) {
    throw new CliError(
      'key-passphrase-required',
      `${path} is encrypted: give its passphrase with --passphrase-file or $ALLMENDE_PASSPHRASE`,
    )
  }
  return loadSigner(path, pass === undefined ? {} : { passphrase: pass })
}
