/**
 * `exec` closes the gap between the check and the load (docs/adr/0007), through the real binary
 * (`npm run build` first). The command gets a snapshot of the model directory that nobody else can
 * change: a reflink where the filesystem has one, otherwise a private read-only copy (0700 dir,
 * 0400 files) under --copy-limit, otherwise a refusal naming --in-place. The snapshot's bytes are
 * what is checked, and it is removed when the command exits, also when allmende is signalled.
 *
 * The status is proven offline by a genuine certificate (a one-steward federation ratifying the
 * generated model and signing a checkpoint, made in-process with the protocol code), so no node
 * is needed: the subject here is the directory, not the network. Each run gets its own TMPDIR, so
 * where snapshots go (and whether any is left) is seen exactly.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { constants, copyFileSync, existsSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { importDirectory } from '../../node/weights/directory.js'
import { buildCertificate } from '../../protocol/index.js'
import { bin, errorLine, jsonError, NO_NODE, type Run, runCli } from '../support/cli.js'
import { DEFAULT_RULES, rulesWith, Simulator } from '../support/simulator.js'
import { until } from '../support/until.js'

const MODEL = 'snap/tiny@1.0.0'
const INTERVAL = DEFAULT_RULES.checkpointIntervalMs
let dir: string
let federation: string
let tmp: string
let original: Map<string, Buffer>

/** A one-steward federation that ratified the model in `modelDir` and checkpointed it in the last hour. */
async function certify(modelDir: string): Promise<{ federation: string; car: Uint8Array }> {
  const weights = await importDirectory(modelDir)
  const sim = new Simulator({
    members: [{ name: 's1', roles: ['publisher', 'steward', 'voter'], weight: 1 }],
    rules: rulesWith({ sealThreshold: 1 }),
    // The checkpoint's epoch (base + 2 s) is an interval boundary at least a minute old (SPEC §11.2).
    base: Math.floor((Date.now() - 60_000) / INTERVAL) * INTERVAL - 2_000,
    name: 'exec snapshot',
  })
  const manifest = sim.manifest('s1', 0, {
    id: 'snap',
    name: 'snap/tiny',
    version: '1.0.0',
    weights: { root: weights.root, files: weights.files, size: weights.size },
  })
  sim.add(manifest)
  const proposal = sim.proposal('s1', 1, {
    closesAt: 1_100,
    action: { type: 'ratify-model', manifest: manifest.cid },
  })
  sim.add(proposal)
  sim.add(sim.vote('s1', 10, { proposal: proposal.cid, choice: 'yes' }))
  sim.add(sim.seal('s1', 1_300, { proposal: proposal.cid }))
  sim.add(sim.checkpoint('s1', 8_000, 2_000))
  return { federation: sim.federation.toString(), car: buildCertificate(sim.fold, MODEL) }
}

/** `exec` offline with the certificate; `TMPDIR` is this test's own, so snapshots are seen exactly. */
function exec(modelDir: string, command: string[], flags: string[] = []): Promise<Run> {
  return runCli(execArgs(modelDir, command, flags), {
    cwd: dir,
    home: join(dir, 'home'),
    env: { TMPDIR: tmp },
  })
}

function execArgs(modelDir: string, command: string[], flags: string[] = []): string[] {
  return [
    'exec',
    '--model',
    MODEL,
    '--dir',
    modelDir,
    '--certificate',
    'cert.car',
    '--federation',
    federation,
    '--max-age',
    '1h',
    ...flags,
    '--',
    ...command,
  ]
}

/** A node script as a command: `body` runs with `dir` (the original) and `marker` (where to report) defined. */
function script(body: string, values: { dir?: string; marker: string }): string[] {
  return [
    process.execPath,
    '-e',
    `const fs = require('node:fs'), path = require('node:path');
     const dir = ${JSON.stringify(values.dir ?? '')}, marker = ${JSON.stringify(values.marker)};
     const snap = process.env.ALLMENDE_MODEL_DIR;
     ${body}`,
  ]
}

/** True when this filesystem clones files (then exec takes a reflink instead of copying). */
function reflinks(where: string): boolean {
  const a = join(where, 'reflink-probe-a')
  const b = join(where, 'reflink-probe-b')
  writeFileSync(a, 'probe')
  try {
    copyFileSync(a, b, constants.COPYFILE_FICLONE_FORCE)
    return true
  } catch {
    return false
  } finally {
    for (const f of [a, b]) rmSync(f, { force: true })
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'allmende-exec-snapshot-'))
  tmp = join(dir, 'tmp')
  await mkdir(tmp)
  const model = await generateModel(join(dir, 'model'), { seed: 21, layers: 2, hidden: 64, vocab: 256 })
  original = new Map()
  for (const f of model.files) original.set(f, await readFile(join(dir, 'model', f)))
  const certified = await certify(join(dir, 'model'))
  federation = certified.federation
  await writeFile(join(dir, 'cert.car'), certified.car)
}, 60_000)

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true })
})

/** A fresh copy of the generated model, to be changed by one test only. */
async function modelCopy(name: string): Promise<string> {
  const target = join(dir, name)
  await mkdir(target)
  for (const [f, bytes] of original) {
    await mkdir(join(target, f, '..'), { recursive: true })
    await writeFile(join(target, f), bytes)
  }
  return target
}

describe('exec runs the command on a snapshot nobody else can change', () => {
  it('a file rewritten in the original after the check: the command still reads the verified bytes', async () => {
    const modelDir = await modelCopy('rewritten')
    const marker = join(dir, 'rewritten.json')
    // The command plays the attacker first: it rewrites the original, then reads what it was given.
    const r = await exec(
      modelDir,
      script(
        `fs.writeFileSync(path.join(dir, 'config.json'), '{"tampered": true}');
         const seen = fs.readFileSync(path.join(snap, 'config.json'));
         fs.writeFileSync(marker, JSON.stringify({
           snap, seen: seen.toString('base64'),
           dirMode: fs.statSync(snap).mode & 0o777,
           fileMode: fs.statSync(path.join(snap, 'config.json')).mode & 0o777,
         }));
         process.exit(7)`,
        { dir: modelDir, marker },
      ),
    )
    expect(r.code, r.stderr).toBe(7)
    const seen = JSON.parse(await readFile(marker, 'utf8'))
    expect(seen.snap).not.toBe(resolve(modelDir))
    expect(seen.snap.startsWith(`${tmp}/allmende-exec-`)).toBe(true)
    expect(Buffer.from(seen.seen, 'base64').equals(original.get('config.json')!)).toBe(true)
    expect(await readFile(join(modelDir, 'config.json'), 'utf8')).toBe('{"tampered": true}')
    expect(seen.dirMode).toBe(0o700)
    expect(seen.fileMode).toBe(0o400)
    expect(r.stderr).toMatch(
      /ok: .* is ratified and every file matches, checked in a snapshot of .* \((reflinks|a private read-only copy of \d+ bytes)\) at .*, removed when .* exits; running /,
    )
    // Removed when the command exited.
    expect(existsSync(seen.snap)).toBe(false)
    expect(await readdir(tmp)).toEqual([])
  }, 60_000)

  it('the snapshot is what is checked: a changed file in the original is refused, the command not run', async () => {
    const modelDir = await modelCopy('changed')
    const victim = [...original.keys()].find((f) => f.endsWith('.safetensors'))!
    const bytes = Buffer.from(original.get(victim)!)
    bytes[bytes.length - 1]! ^= 0x01
    await writeFile(join(modelDir, victim), bytes)
    const marker = join(dir, 'changed-ran')
    const r = await exec(modelDir, script('fs.writeFileSync(marker, snap)', { marker }))
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`sha256-mismatch ${victim}`)
    expect(existsSync(marker)).toBe(false)
    expect(await readdir(tmp)).toEqual([])
  }, 60_000)

  it('a model over --copy-limit without a reflink is refused naming --in-place', async () => {
    const modelDir = await modelCopy('over-limit')
    const marker = join(dir, 'over-limit-ran')
    const r = await runCli(
      [
        '--json',
        ...execArgs(modelDir, script('fs.writeFileSync(marker, snap)', { marker }), ['--copy-limit', '1KiB']),
      ],
      {
        cwd: dir,
        home: join(dir, 'home'),
        env: { TMPDIR: tmp },
      },
    )
    if (reflinks(tmp)) {
      // A reflink costs no copy: the limit does not apply.
      expect(r.code, r.stderr).toBe(0)
      expect(existsSync(marker)).toBe(true)
      return
    }
    expect(r.code).toBe(1)
    const error = jsonError(r)
    expect(error.code).toBe('snapshot-too-large')
    expect(error.message).toContain('more than --copy-limit 1 KiB')
    expect(error.message).toContain('--in-place')
    expect(existsSync(marker)).toBe(false)
    expect(await readdir(tmp)).toEqual([])
  }, 60_000)

  it('--in-place checks through open descriptors, gives the command the directory itself, and says the risk', async () => {
    const modelDir = await modelCopy('in-place')
    const marker = join(dir, 'in-place.txt')
    const r = await exec(modelDir, script('fs.writeFileSync(marker, snap); process.exit(3)', { marker }), [
      '--in-place',
    ])
    expect(r.code, r.stderr).toBe(3)
    expect(await readFile(marker, 'utf8')).toBe(resolve(modelDir))
    expect(r.stderr).toContain(
      `allmende: note: --in-place: the files of ${modelDir} are checked through open file descriptors, but the command opens them again by name: anyone who can write to ${modelDir} can change them between the check and the load`,
    )
    expect(await readdir(tmp)).toEqual([])
    const help = await runCli(['exec', '--help'], { cwd: dir, home: join(dir, 'home') })
    expect(help.stdout.replace(/\s+/g, ' ')).toContain(
      'anyone who can write to DIR can then change the files between the check and the load',
    )

    // A changed file is still caught in place (read through its descriptor), and nothing runs.
    const bytes = Buffer.from(original.get('config.json')!)
    bytes[0]! ^= 0xff
    await writeFile(join(modelDir, 'config.json'), bytes)
    await rm(marker)
    const refused = await exec(modelDir, script('fs.writeFileSync(marker, snap)', { marker }), ['--in-place'])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain('sha256-mismatch config.json')
    expect(existsSync(marker)).toBe(false)
  }, 60_000)

  it('SIGTERM to allmende while the command runs: passed on to the command, and the snapshot removed', async () => {
    const { child, seen } = await startRunning('signalled', "process.on('SIGTERM', () => process.exit(42));")
    expect(existsSync(seen.snap)).toBe(true)
    child.kill('SIGTERM')
    const code = await exited(child)
    // The command got the signal (it exits 42 on SIGTERM) and allmende passed its code on.
    expect(code).toBe(42)
    expect(existsSync(seen.snap)).toBe(false)
    expect(await readdir(tmp)).toEqual([])
  }, 60_000)

  it('a snapshot left by an exec killed outright (SIGKILL) is removed by the next exec', async () => {
    const { child, seen, modelDir } = await startRunning('killed')
    child.kill('SIGKILL')
    await exited(child)
    process.kill(seen.pid, 'SIGKILL')
    await until(() => !alive(seen.pid), 'the orphaned command to end', 30_000, 50)
    expect(existsSync(seen.snap)).toBe(true)
    // Read-only files in a private directory: still removable by their owner.
    expect(statSync(seen.snap).mode & 0o777).toBe(0o700)

    const next = await exec(modelDir, [process.execPath, '-e', 'process.exit(0)'])
    expect(next.code, next.stderr).toBe(0)
    expect(existsSync(seen.snap)).toBe(false)
    expect(await readdir(tmp)).toEqual([])
  }, 60_000)

  it('a bad --copy-limit: exit 2, one line, nothing run', async () => {
    const bad = await exec(join(dir, 'model'), [process.execPath, '-e', ''], ['--copy-limit', 'lots'])
    expect(bad.code).toBe(2)
    expect(errorLine(bad)).toBe('allmende: --copy-limit: not a size: "lots" (use e.g. 8GiB or 512MiB)')
    expect(await readdir(tmp)).toEqual([])
  })
})

/**
 * `allmende exec` on a fresh copy `name` of the model, as a child this test can signal, running a
 * command that reports its snapshot and pid, runs `onStart`, and then keeps running until it is
 * stopped. Resolves once the command has reported.
 */
async function startRunning(
  name: string,
  onStart = '',
): Promise<{ child: ChildProcess; seen: { snap: string; pid: number }; modelDir: string }> {
  const modelDir = await modelCopy(name)
  const marker = join(dir, `${name}.json`)
  const child = startExec(
    modelDir,
    script(
      `fs.writeFileSync(marker, JSON.stringify({ snap, pid: process.pid }));
       ${onStart}
       setInterval(() => {}, 1000)`,
      { marker },
    ),
  )
  const seen = await until(
    async () => (existsSync(marker) ? JSON.parse(await readFile(marker, 'utf8')) : undefined),
    'the command to start',
    30_000,
    50,
  )
  return { child, seen, modelDir }
}

/** `allmende exec` as a child this test can signal. */
function startExec(modelDir: string, command: string[]): ChildProcess {
  return spawn(process.execPath, [bin, ...execArgs(modelDir, command)], {
    cwd: dir,
    env: { ...process.env, ALLMENDE_HOME: join(dir, 'home'), ALLMENDE_NODE: NO_NODE, TMPDIR: tmp },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((done) => {
    if (child.exitCode !== null) done(child.exitCode)
    else child.once('exit', (code) => done(code))
  })
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
