/**
 * The deployer commands through the real binary (`npm run build` first): `fetch` downloads a
 * published model from a node's trustless gateway, every block verified, and resumes after an
 * interruption keeping the files already complete; `exec` refuses to run a command for a model
 * that is not ratified, and runs one on a snapshot of a ratified one (online, through the node's
 * certificate, or offline with an exported one).
 */
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type GeneratedModel, generateModel } from '../../fixtures/models.js'
import { foundOneMemberFederation, nodeInitArgs, publishArgs, type Run, runCli } from '../support/cli.js'
import { type Daemon, startDaemon } from '../support/daemon.js'
import { until } from '../support/until.js'

let dir: string
let daemon: Daemon | undefined
let model: GeneratedModel

function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runCli(args, { cwd: dir, home: join(dir, 'alice'), node: daemon?.api, env })
}

/** ALLMENDE_MODEL_DIR as exec gave it: a snapshot in the temp directory, not DIR, gone once the command exited. */
async function isRemovedSnapshot(modelDir: string): Promise<void> {
  expect(modelDir).not.toBe(join(dir, 'deployed'))
  expect(modelDir.startsWith(join(tmpdir(), 'allmende-exec-'))).toBe(true)
  expect(existsSync(modelDir)).toBe(false)
}

async function sameFiles(a: string, b: string): Promise<void> {
  for (const f of model.files) {
    expect(Buffer.compare(await readFile(join(a, f)), await readFile(join(b, f))), f).toBe(0)
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'allmende-cli-deploy-'))
  await foundOneMemberFederation(run, 'deploy test', join(dir, 'node'))
  daemon = await startDaemon(join(dir, 'node'))
  // Small shards, so the model has several weight files.
  model = await generateModel(join(dir, 'model'), {
    seed: 11,
    layers: 2,
    hidden: 64,
    vocab: 256,
    maxShardBytes: 64 * 1024,
  })
  const published = await run([
    '--json',
    ...publishArgs('model', {
      name: 'deploy-model',
      version: '1.0.0',
      license: 'Apache-2.0',
      languages: 'en',
    }),
  ])
  expect(published.code, published.stderr).toBe(0)
}, 120_000)

afterAll(async () => {
  await daemon?.kill()
  await rm(dir, { recursive: true, force: true })
})

describe('allmende fetch', () => {
  it('fetches a published model into a fresh directory: files identical to the originals', async () => {
    const r = await run(['--json', 'fetch', 'deploy-model@1.0.0', '--out', 'fresh'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json()).toMatchObject({
      model: 'deploy-model@1.0.0',
      dir: join(dir, 'fresh'),
      files: model.files.length,
      bytes: model.bytes,
    })
    await sameFiles(join(dir, 'model'), join(dir, 'fresh'))
  })

  it('resumes: a complete file is kept untouched, a truncated one is fetched again', async () => {
    expect(model.files.length).toBeGreaterThan(2)
    const [kept, cut] = [model.files[0]!, model.files[model.files.length - 1]!]
    await mkdir(join(dir, 'resume'), { recursive: true })
    await writeFile(join(dir, 'resume', kept), await readFile(join(dir, 'model', kept)))
    const full = await readFile(join(dir, 'model', cut))
    await writeFile(join(dir, 'resume', cut), full.subarray(0, Math.floor(full.length / 2)))
    const past = new Date(Date.now() - 3600_000)
    const { utimes } = await import('node:fs/promises')
    await utimes(join(dir, 'resume', kept), past, past)
    const before = (await stat(join(dir, 'resume', kept))).mtimeMs

    const r = await run(['--json', 'fetch', 'deploy-model@1.0.0', '--out', 'resume'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json()).toMatchObject({ files: model.files.length, fetched: model.files.length - 1 })
    await sameFiles(join(dir, 'model'), join(dir, 'resume'))
    expect((await stat(join(dir, 'resume', kept))).mtimeMs).toBe(before)
  })

  it('a file in DIR that is not in the manifest is exit 1, named', async () => {
    await mkdir(join(dir, 'extra'), { recursive: true })
    await writeFile(join(dir, 'extra', 'notes.txt'), 'not in the manifest')
    const r = await run(['--json', 'fetch', 'deploy-model@1.0.0', '--out', 'extra'])
    expect(r.code).toBe(1)
    const error = JSON.parse(r.stderr.trim()).error as { code: string; message: string }
    expect(error.code).toBe('file-extra')
    expect(error.message).toMatch(/^notes\.txt: /)
  })

  it('an unknown model is exit 1; a node that is down is exit 3', async () => {
    const unknown = await run(['--json', 'fetch', 'nope@1.0.0', '--out', 'x'])
    expect(unknown.code).toBe(1)
    const down = await run(['--json', 'fetch', 'deploy-model@1.0.0', '--out', 'x'], {
      ALLMENDE_NODE: 'http://127.0.0.1:9',
    })
    expect(down.code).toBe(3)
    expect(JSON.parse(down.stderr.trim()).error.code).toBe('node-unreachable')
  })
})

describe('allmende exec', () => {
  it('refuses a model that is not ratified: exit 1 naming the reason, the command not run', async () => {
    const marker = join(dir, 'ran.txt')
    const r = await run([
      'exec',
      '--model',
      'deploy-model@1.0.0',
      '--dir',
      'fresh',
      '--',
      process.execPath,
      '-e',
      `require('node:fs').writeFileSync(${JSON.stringify(marker)}, process.env.ALLMENDE_MODEL_DIR)`,
    ])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/not-ratified.*deploy-model@1\.0\.0 is proposed, not ratified/)
    expect(existsSync(marker)).toBe(false)
  })
})

describe('allmende exec on a ratified model', () => {
  let second: Daemon | undefined
  afterAll(async () => {
    await second?.kill()
  })

  it('a one-steward federation ratifies and checkpoints; exec runs the command with ALLMENDE_MODEL_DIR, online and with a certificate', async () => {
    const env = { ALLMENDE_HOME: join(dir, 'carol') }
    const me = await run(['--json', 'init'], env)
    expect(me.code, me.stderr).toBe(0)
    const did = me.json().did as string
    const sk = await run(['--json', 'init', '--steward-key', join(dir, 'steward.key')], env)
    expect(sk.code, sk.stderr).toBe(0)
    const steward = sk.json().did as string
    const created = await run(
      [
        '--json',
        'federation',
        'create',
        '--name',
        'ratify test',
        '--member',
        `${did}:publisher,voter`,
        '--member',
        `${steward}:steward`,
        '--voting-period',
        '3s',
        '--seal-threshold',
        '1',
        '--seal-grace',
        '1s',
        '--weights-deadline',
        '3s',
        '--seal-deadline',
        '6s',
        '--checkpoint-interval',
        '2s',
        '--out',
        'genesis2.car',
      ],
      env,
    )
    expect(created.code, created.stderr).toBe(0)
    const federation = created.json().federation as string
    const cosigned = await run(
      ['--json', 'federation', 'cosign', 'genesis2.car', '--key', 'steward.key'],
      env,
    )
    expect(cosigned.code, cosigned.stderr).toBe(0)
    const node = await run(
      [
        '--json',
        ...nodeInitArgs('genesis2.car', join(dir, 'node2')),
        '--steward-key',
        join(dir, 'steward.key'),
      ],
      env,
    )
    expect(node.code, node.stderr).toBe(0)
    second = await startDaemon(join(dir, 'node2'))
    const on = { ...env, ALLMENDE_NODE: second.api }
    const published = await run(
      [
        '--json',
        ...publishArgs('model', {
          name: 'ratified-model',
          version: '1.0.0',
          license: 'Apache-2.0',
          languages: 'en',
        }),
      ],
      on,
    )
    expect(published.code, published.stderr).toBe(0)
    const proposed = await run(['--json', 'propose', 'ratify', 'ratified-model@1.0.0', '--closes', '3s'], on)
    expect(proposed.code, proposed.stderr).toBe(0)
    const vote = await run(['--json', 'vote', proposed.json().proposal as string, 'yes'], on)
    expect(vote.code, vote.stderr).toBe(0)

    await until(
      async () =>
        (await run(['--json', 'model', 'show', 'ratified-model@1.0.0'], on)).json().status === 'ratified',
      'ratified-model@1.0.0 ratified',
      60_000,
      500,
    )
    const fetched = await run(['--json', 'fetch', 'ratified-model@1.0.0', '--out', 'deployed'], on)
    expect(fetched.code, fetched.stderr).toBe(0)
    // A certificate once a checkpoint covers the decision: export waits for it (checkpoints
    // come every 2 s, signed 6 s after their epoch).
    const exported = await run(
      [
        '--json',
        'certificate',
        'export',
        'ratified-model@1.0.0',
        '-o',
        join(dir, 'cert.car'),
        '--wait',
        '--timeout',
        '60s',
      ],
      on,
    )
    expect(exported.code, `${exported.stderr}\n${second.stderr()}`).toBe(0)
    const checked = await run(
      [
        '--json',
        'verify',
        'deployed',
        '--model',
        'ratified-model@1.0.0',
        '--certificate',
        join(dir, 'cert.car'),
        '--federation',
        federation,
        '--max-age',
        '1h',
      ],
      on,
    )
    expect(checked.code, `${checked.stdout}\n${second.stderr()}`).toBe(0)

    const marker = join(dir, 'seen.txt')
    const script = `require('node:fs').writeFileSync(${JSON.stringify(marker)}, process.env.ALLMENDE_MODEL_DIR); process.exit(7)`
    /** `exec` of the script on the deployed model, checked as `flags` say. */
    const execScript = (flags: string[], execEnv: Record<string, string>) =>
      run(
        [
          'exec',
          '--model',
          'ratified-model@1.0.0',
          '--dir',
          'deployed',
          ...flags,
          '--',
          process.execPath,
          '-e',
          script,
        ],
        execEnv,
      )
    // Online: the node's certificate (fresh within a minute), then the command on a snapshot.
    const online = await execScript(['--max-age', '1m'], on)
    expect(online.code, online.stderr).toBe(7)
    await isRemovedSnapshot(await readFile(marker, 'utf8'))
    await rm(marker)

    // The online check kept the node's newest checkpoint as the trust mark; one signed since the
    // export above would make cert.car a rollback (SPEC §12.3). Export again, as a deployer would.
    const again = await run(
      ['--json', 'certificate', 'export', 'ratified-model@1.0.0', '-o', join(dir, 'cert-now.car')],
      on,
    )
    expect(again.code, again.stderr).toBe(0)
    const offline = await execScript(
      ['--certificate', join(dir, 'cert-now.car'), '--federation', federation, '--max-age', '1h'],
      { ...env, ALLMENDE_NODE: 'http://127.0.0.1:9' },
    )
    expect(offline.code, offline.stderr).toBe(7)
    await isRemovedSnapshot(await readFile(marker, 'utf8'))
    await rm(marker)

    // One flipped byte: exec refuses, naming the file, and the command does not run.
    const victim = model.files[model.files.length - 1]!
    const bytes = await readFile(join(dir, 'deployed', victim))
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff
    await writeFile(join(dir, 'deployed', victim), bytes)
    const tampered = await execScript(['--max-age', '1m'], on)
    expect(tampered.code).toBe(1)
    expect(tampered.stderr).toContain(`sha256-mismatch ${victim}`)
    expect(existsSync(marker)).toBe(false)
  }, 120_000)
})
