/**
 * Asking for a passphrase on the terminal, without echoing it: the way `ssh-keygen` and `gpg`
 * do, so a person at a keyboard never has to put a passphrase in a file or an environment
 * variable. Only when stdin and stderr are terminals; scripts use `--passphrase-file` or
 * `$ALLMENDE_PASSPHRASE` and are never stopped by a prompt.
 */
import { CliError } from './context.js'

export function canPrompt(): boolean {
  return process.stdin.isTTY === true && process.stderr.isTTY === true
}

/** Reads one line from the terminal with echo off. Ctrl-C ends the command (exit 130). */
export function askHidden(question: string): Promise<string> {
  const stdin = process.stdin
  if (!canPrompt()) throw new CliError('no-terminal', 'no terminal to ask for the passphrase on', 2)
  // Echo off before the question shows, so nothing typed after it can appear on the screen.
  stdin.setRawMode(true)
  process.stderr.write(question)
  return new Promise((resolve) => {
    let answer = ''
    const done = () => {
      stdin.setRawMode(false)
      stdin.pause()
      stdin.off('data', onData)
      process.stderr.write('\n')
    }
    const onData = (data: Buffer) => {
      for (const ch of data.toString('utf8')) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          done()
          resolve(answer)
          return
        }
        if (ch === '\u0003') {
          done()
          process.exit(130)
        }
        if (ch === '\u007f' || ch === '\b') answer = [...answer].slice(0, -1).join('')
        else if (ch >= ' ') answer += ch
      }
    }
    stdin.resume()
    stdin.on('data', onData)
  })
}
