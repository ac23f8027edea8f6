/** `allmende init`: a personal identity, or a node's steward key. */
import { mkdir } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import type { Command } from 'commander'
import { createKeyFile } from '../../node/index.js'
import { action, CliError, examples, usage } from '../context.js'
import { allmendeHome, identityPath } from '../homes.js'
import { passphrase } from '../keys.js'
import { askHidden, canPrompt } from '../prompt.js'

export function registerInit(cli: Command): void {
  const cmd = cli
    .command('init')
    .description('create your identity ($ALLMENDE_HOME/identity.json) or a steward key, and print its did')
    .option('--steward-key <file>', "create a node's steward key in FILE instead of your personal identity")
    .option(
      '--passphrase-file <file>',
      'encrypt the key with the passphrase in this file (or set $ALLMENDE_PASSPHRASE); none = a plain 0600 file',
    )
    .option('--encrypt', 'ask for a passphrase on the terminal (twice) and encrypt the key with it')
  examples(cmd, [
    'allmende init',
    'allmende init --encrypt',
    'ALLMENDE_PASSPHRASE=… allmende init',
    'allmende init --steward-key /srv/allmende/steward.key --passphrase-file /run/secrets/steward-pass',
  ])
  cmd.action(
    action<{ stewardKey?: string; passphraseFile?: string; encrypt?: boolean }>(async (ctx, opts) => {
      const path = resolve(opts.stewardKey ?? identityPath())
      if (opts.stewardKey === '') throw usage('--steward-key needs a file name')
      let pass = await passphrase(opts)
      if (opts.encrypt && pass === undefined) {
        if (!canPrompt())
          throw usage(
            '--encrypt: no terminal to ask on; give the passphrase with --passphrase-file or $ALLMENDE_PASSPHRASE',
          )
        const first = await askHidden('new passphrase: ')
        const again = await askHidden('the same again: ')
        if (first !== again)
          throw new CliError('key-passphrase-mismatch', 'the two passphrases differ; nothing was written')
        if (first === '')
          throw usage('an empty passphrase encrypts nothing; type one, or leave out --encrypt')
        pass = first
      }
      await mkdir(opts.stewardKey ? dirname(path) : allmendeHome(), { recursive: true, mode: 0o700 })
      const { did } = await createKeyFile(path, pass === undefined ? {} : { passphrase: pass })
      ctx.out({ did, file: path, encrypted: pass !== undefined }, [
        `${opts.stewardKey ? 'steward key' : 'identity'} ${did}`,
        `written to ${path}${pass === undefined ? ' (not encrypted)' : ' (encrypted)'}`,
      ])
    }),
  )
}
