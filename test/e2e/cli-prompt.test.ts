/**
 * Passphrases typed at a terminal (cli/prompt.ts): the real binary under a pseudo-terminal made
 * by `script` (util-linux), the input typed into it after the prompt appears. Echo must be off,
 * a wrong passphrase must be one line and exit 1, and without a terminal nothing waits for input.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadSigner } from '../../node/identity.js'
import { bin, errorLine, runCli } from '../support/cli.js'

const hasScript = spawnSync('script', ['--version']).status === 0

interface PtyRun {
  readonly code: number | null
  /** Everything the terminal showed (prompts, output, errors; never the typed passphrase). */
  readonly screen: string
}

/**
 * Runs `allmende ...args` on a pseudo-terminal and types each of `answers` (then Enter) once
 * the screen shows the prompt before it.
 */
function onTerminal(args: string[], home: string, cwd: string, answers: { after: string; type: string }[]) {
  return new Promise<PtyRun>((resolve, reject) => {
    const command = [process.execPath, bin, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ')
    const child = spawn('script', ['-qec', command, '/dev/null'], {
      cwd,
      env: {
        ...process.env,
        ALLMENDE_HOME: home,
        ALLMENDE_PASSPHRASE: '',
        ALLMENDE_NODE: 'http://127.0.0.1:9',
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let screen = ''
    let next = 0
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    // Answer i is typed once its prompt is on the screen as often as answers 0..i wait for it.
    const due = (i: number) => {
      const a = answers[i]!
      const wanted = answers.slice(0, i + 1).filter((b) => b.after === a.after).length
      return screen.split(a.after).length - 1 >= wanted
    }
    child.stdout.on('data', (d: Buffer) => {
      screen += d.toString()
      while (next < answers.length && due(next)) child.stdin.write(`${answers[next++]!.type}\r`)
    })
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, screen })
    })
  })
}

describe.skipIf(!hasScript)('passphrases at a terminal', () => {
  let dir: string
  let home: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'allmende-prompt-'))
    home = join(dir, 'home')
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('init --encrypt asks twice without echo; two different answers write nothing', async () => {
    const differ = await onTerminal(['init', '--encrypt'], home, dir, [
      { after: 'new passphrase: ', type: 'one thing' },
      { after: 'the same again: ', type: 'another' },
    ])
    expect(differ.code).toBe(1)
    expect(differ.screen).toContain('the two passphrases differ; nothing was written')
    expect(existsSync(join(home, 'identity.json'))).toBe(false)

    const made = await onTerminal(['init', '--encrypt'], home, dir, [
      { after: 'new passphrase: ', type: 'correct horse battery' },
      { after: 'the same again: ', type: 'correct horse battery' },
    ])
    expect(made.code, made.screen).toBe(0)
    expect(made.screen).toContain('(encrypted)')
    expect(made.screen).not.toContain('correct horse')
    const file = JSON.parse(await readFile(join(home, 'identity.json'), 'utf8')) as { did: string }
    const signer = await loadSigner(join(home, 'identity.json'), { passphrase: 'correct horse battery' })
    expect(signer.did).toBe(file.did)
  }, 60_000)

  it('a command signing with the encrypted key asks for it; a wrong one is one line, exit 1', async () => {
    const file = JSON.parse(await readFile(join(home, 'identity.json'), 'utf8')) as { did: string }
    const create = (out: string) => [
      'federation',
      'create',
      '--name',
      'prompted',
      '--member',
      `${file.did}:steward,voter,publisher`,
      '--seal-threshold',
      '1',
      '--out',
      out,
    ]
    const wrong = await onTerminal(create('wrong.car'), home, dir, [
      { after: 'passphrase for ', type: 'not it' },
    ])
    expect(wrong.code).toBe(1)
    expect(wrong.screen).toMatch(
      /allmende: cannot unlock .*identity\.json: the passphrase is wrong, or the file was altered/,
    )
    expect(existsSync(join(dir, 'wrong.car'))).toBe(false)

    const right = await onTerminal(create('right.car'), home, dir, [
      { after: 'passphrase for ', type: 'correct horse battery' },
    ])
    expect(right.code, right.screen).toBe(0)
    expect(right.screen).toMatch(/federation bafy/)
    expect(existsSync(join(dir, 'right.car'))).toBe(true)
  }, 60_000)

  it('without a terminal nothing waits: one line naming the ways to give a passphrase', async () => {
    const file = JSON.parse(await readFile(join(home, 'identity.json'), 'utf8')) as { did: string }
    const r = await runCli(
      [
        'federation',
        'create',
        '--name',
        'x',
        '--member',
        `${file.did}:steward,voter`,
        '--seal-threshold',
        '1',
        '--out',
        'x.car',
      ],
      { cwd: dir, home },
    )
    expect(r.code).toBe(1)
    expect(errorLine(r)).toMatch(
      /is encrypted: give its passphrase with --passphrase-file or \$ALLMENDE_PASSPHRASE$/,
    )
    const init = await runCli(['init', '--encrypt', '--steward-key', 'steward.key'], { cwd: dir, home })
    expect(init.code).toBe(2)
    expect(errorLine(init)).toMatch(/--encrypt: no terminal to ask on/)
  }, 60_000)
})
