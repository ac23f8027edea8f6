/**
 * Certificates through the real binary (`npm run build` first; docs/adr/0026): `certificate export`
 * in compact and full mode and `--since` a trusted head, `certificate verify FILE` without a model
 * directory, `--at TIME`, and the online verify asking for the chain after its trusted head. One
 * steward node on the wall clock (checkpoints every 2 s); the federation first admits a member
 * (a governance step with votes, which a full certificate carries and a compact one does not),
 * then ratifies tiny@1.0.0 on that head, then admits another member.
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readTrust, trustPath } from '../../cli/trust-marks.js'
import { generateModel } from '../../fixtures/models.js'
import type { AllmendeNode } from '../../node/index.js'
import { isTrustedHead, type Verified } from '../../protocol/index.js'
import { jsonError, type Run, runCli } from '../support/cli.js'
import { submit } from '../support/cluster.js'
import { rulesWith, type Simulator } from '../support/simulator.js'
import {
  admission,
  holdWeights,
  type StewardNodes,
  startOnRealClock,
  untilFinalPassed,
} from '../support/stewards.js'
import { until } from '../support/until.js'

const KEY_PREFIX = 'allmende-certificate-cli-test:'
const MODEL = 'tiny@1.0.0'
const rules = rulesWith({
  sealThreshold: 1,
  votingPeriodMs: 2_500,
  sealGraceMs: 1_000,
  weightsDeadlineMs: 1_500,
  sealDeadlineMs: 4_000,
  checkpointIntervalMs: 2_000,
})
/** Waits on what the steward does by itself, on a loaded machine. */
const DECISION_MS = 60_000

let root: string
let modelDir: string
let sim: Simulator
let stewardNodes: StewardNodes | undefined
let node: AllmendeNode
let federation: string
/** The first admission: the head the ratification is based on. */
let admitted: Verified<'proposal'>
let expectedFiles: { path: string; size: number; sha256: string }[]

function run(who: string, args: string[], url: string = node.apiUrl): Promise<Run> {
  return runCli(args, { cwd: root, home: join(root, who), node: url })
}

interface Proven {
  ok: boolean
  model: string | null
  status: string
  manifest: string | null
  files: { path: string; size: number; sha256: string }[]
  checkpoint: { cid: string; height: number; epoch: number; age: number } | null
  mode: string | null
  since: string | null
  at: string
  atGiven: boolean
  trust: string
  problems: { code: string; message: string }[]
}

/** `certificate verify FILE` by `who`, with --json, the federation and `more`. */
async function verifyFile(
  who: string,
  file: string,
  more: string[] = [],
): Promise<{ run: Run; proven: Proven }> {
  const r = await run(who, [
    '--json',
    'certificate',
    'verify',
    join(root, file),
    '--federation',
    federation,
    ...more,
  ])
  return { run: r, proven: r.json<Proven>() }
}

/** `certificate export` of tiny@1.0.0 to FILE by `who`, waiting for a covering checkpoint; must exit 0. */
async function exportTo(who: string, file: string, more: string[] = []): Promise<Record<string, unknown>> {
  const r = await run(who, [
    ...['--json', 'certificate', 'export', MODEL, '-o', join(root, file)],
    ...['--federation', federation, '--wait', '--timeout', '60s', ...more],
  ])
  expect(r.code, r.stderr).toBe(0)
  return r.json()
}

/** The one error line of a --json run, after any notices (e.g. the pin `--federation` wrote). */
function errorOf(r: Run): { code: string; message: string } {
  const lines = r.stderr.trim().split('\n')
  expect(lines.filter((l) => !l.startsWith('{"notice"'))).toHaveLength(1)
  return JSON.parse(lines.at(-1)!).error
}

function codes(proven: Proven): string[] {
  return proven.problems.map((p) => p.code)
}

/** The notices a run wrote on stderr in --json mode. */
function notices(r: Run): { code: string; message: string }[] {
  return r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{"notice"'))
    .map((l) => JSON.parse(l).notice)
}

/** Submits `proposal` and a yes vote by each of `voters`, and waits until it passed. */
async function decide(proposal: Verified<'proposal'>, voters: readonly string[]): Promise<void> {
  const t = Date.now() - sim.base
  for (const r of [
    proposal,
    ...voters.map((v) => sim.vote(v, t + 5, { proposal: proposal.cid, choice: 'yes' })),
  ])
    expect((await submit(node, r)).status).toBe(201)
  await untilFinalPassed([node], proposal.cid, DECISION_MS)
}

/** An admission of `who`, made now and closing 2.6 s from now, on the head `basis`. */
function admissionNow(who: string, basis: CID): Verified<'proposal'> {
  const t = Date.now() - sim.base
  const genesisBased = admission(sim, 's1', t, who, t + 2_600)
  return sim.proposal('s1', t, { closesAt: t + 2_600, action: genesisBased.record.body.action, basis })
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'allmende-certificate-cli-'))
  modelDir = join(root, 'model')
  const model = await generateModel(modelDir, { seed: 23, layers: 2, hidden: 64, vocab: 256 })
  expectedFiles = await Promise.all(
    model.files.map(async (path) => {
      const bytes = await readFile(join(modelDir, path))
      return { path, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') }
    }),
  )
  const started = await startOnRealClock(
    { name: 'certificate cli', keyPrefix: KEY_PREFIX, stewards: ['s1'], rules },
    { root, tag: 'steward', names: ['s1'], helia: true },
  )
  sim = started.sim
  stewardNodes = started.net
  node = stewardNodes.nodes[0]!
  federation = sim.federation.toString()
  const weights = await holdWeights([node], modelDir)

  admitted = admissionNow('x1', sim.federation)
  await decide(admitted, ['s1', 'v1'])
  const t = Date.now() - sim.base
  const manifest = sim.manifest('s1', t, { id: 'tiny', name: 'tiny', version: '1.0.0', weights })
  expect((await submit(node, manifest)).status).toBe(201)
  const ratification = sim.proposal('s1', t + 1, {
    closesAt: t + 2_600,
    action: { type: 'ratify-model', manifest: manifest.cid },
    basis: admitted.cid,
  })
  await decide(ratification, ['s1', 'v1'])
}, 120_000)

afterAll(async () => {
  await stewardNodes?.stop()
  if (root) await rm(root, { recursive: true, force: true })
})

describe('certificate export and certificate verify', () => {
  it('the node refuses an export mode it does not know with 400 bad-mode, without echoing it', async () => {
    const res = await fetch(
      `${node.apiUrl}/certificates/${encodeURIComponent(MODEL)}?mode=${'x'.repeat(2000)}`,
    )
    expect(res.status).toBe(400)
    const body = (await res.json()) as { error: { code: string; message: string } }
    expect(body.error.code).toBe('bad-mode')
    expect(body.error.message).not.toContain('xxx')
  })

  it('export is compact by default and full with --full; both verify, the full one larger', async () => {
    const compact = await exportTo('exporter', 'compact.car')
    const full = await exportTo('exporter', 'full.car', ['--full'])
    expect(compact).toMatchObject({ model: MODEL, status: 'ratified', mode: 'compact', since: null })
    expect(full).toMatchObject({ model: MODEL, status: 'ratified', mode: 'full', since: null })
    const compactBytes = (await stat(join(root, 'compact.car'))).size
    const fullBytes = (await stat(join(root, 'full.car'))).size
    expect(compact.bytes).toBe(compactBytes)
    // The admission's votes and the seal's list blocks are in the full file only.
    expect(fullBytes).toBeGreaterThan(compactBytes)

    for (const [who, file, mode] of [
      ['auditor', 'compact.car', 'compact'],
      ['full-auditor', 'full.car', 'full'],
    ] as const) {
      const { run: r, proven } = await verifyFile(who, file, ['--model', MODEL, '--max-age', '1h'])
      expect(r.code, r.stdout).toBe(0)
      expect(proven).toMatchObject({
        ok: true,
        model: MODEL,
        status: 'ratified',
        mode,
        since: null,
        problems: [],
      })
      expect(proven.files).toEqual(expectedFiles)
      expect(proven.manifest).toMatch(/^baf/)
      expect(proven.checkpoint!.height).toBeGreaterThanOrEqual(1)
      expect(proven).toMatchObject({ atGiven: false, trust: 'moved' })
      expect(Date.parse(proven.at)).toBeGreaterThan(Date.now() - 60_000)
      expect(await readTrust(federation, join(root, who))).toMatchObject({
        height: proven.checkpoint!.height,
        epoch: proven.checkpoint!.epoch,
      })
    }
  }, 120_000)

  it('says what it proves in words: model, status, files, checkpoint, mode, chain, time, trust mark', async () => {
    const r = await run('reader', [
      ...['certificate', 'verify', join(root, 'compact.car'), '--federation', federation, '--max-age', '1h'],
    ])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain(`ok: the certificate proves ${MODEL} ratified by federation ${federation}`)
    expect(r.stdout).toMatch(/ {2}mode {8}compact \(/)
    expect(r.stdout).toContain('  chain       from the genesis')
    expect(r.stdout).toMatch(/ {2}checkpoint {2}baf/)
    expect(r.stdout).toContain("(this computer's clock)")
    expect(r.stdout).toContain('  trust mark  moved to this checkpoint')
    for (const f of expectedFiles) expect(r.stdout).toContain(`${f.sha256}`)
  }, 60_000)

  it('refuses another model, a changed byte and another federation: exit 1, with codes, the mark unmoved', async () => {
    const kept = await readFile(trustPath(federation, join(root, 'auditor')))
    const wrong = await verifyFile('auditor', 'compact.car', ['--model', 'other@1.0.0', '--max-age', '1h'])
    expect(wrong.run.code).toBe(1)
    expect(wrong.proven.ok).toBe(false)
    expect(codes(wrong.proven)).toContain('cert-wrong-model')

    const forged = Uint8Array.from(await readFile(join(root, 'compact.car')))
    forged[forged.length - 1]! ^= 0x01
    await writeFile(join(root, 'forged.car'), forged)
    const changed = await verifyFile('auditor', 'forged.car', ['--max-age', '1h'])
    expect(changed.run.code).toBe(1)
    expect(codes(changed.proven)[0]).toMatch(/^cert-/)
    expect(changed.proven.trust).toBe('kept')

    const elsewhere = await run('auditor', [
      ...['--json', 'certificate', 'verify', join(root, 'compact.car')],
      ...['--federation', admitted.cid.toString(), '--max-age', '1h'],
    ])
    expect(elsewhere.code).toBe(1)
    expect(elsewhere.json<Proven>().problems.map((p) => p.code)).toEqual([
      expect.stringMatching(/^cert-(header|genesis-mismatch)$/),
    ])
    const text = await run('auditor', [
      'certificate',
      'verify',
      join(root, 'forged.car'),
      '--federation',
      federation,
    ])
    expect(text.code).toBe(1)
    expect(text.stdout).toMatch(/^FAILED: /)
    expect(text.stdout).toMatch(/\n {2}cert-[a-z-]+: /)
    expect(await readFile(trustPath(federation, join(root, 'auditor')))).toEqual(kept)

    const unread = await run('auditor', [
      '--json',
      'certificate',
      'verify',
      join(root, 'none.car'),
      '--federation',
      federation,
    ])
    expect(unread.code).toBe(2)
    expect(jsonError(unread).code).toBe('usage')
  }, 60_000)
})

describe('--at TIME', () => {
  let epoch: number
  let signable: number

  beforeAll(async () => {
    const { proven } = await verifyFile('at-probe', 'compact.car', ['--max-age', '1h'])
    epoch = proven.checkpoint!.epoch
    signable = epoch + rules.sealDeadlineMs
  })

  it('before the checkpoint existed: not yet existing at TIME; the trust mark neither read nor moved', async () => {
    const kept = await readFile(trustPath(federation, join(root, 'auditor')))
    const past = new Date(epoch - 3_600_000).toISOString()
    const { run: r, proven } = await verifyFile('auditor', 'compact.car', ['--at', past])
    expect(r.code).toBe(1)
    expect(proven).toMatchObject({ ok: false, at: past, atGiven: true, trust: 'not-used' })
    const future = proven.problems.find((p) => p.code === 'cert-future')
    expect(future?.message).toContain(`did not exist yet at ${past}`)
    expect(future?.message).not.toContain("this computer's clock")
    expect(await readFile(trustPath(federation, join(root, 'auditor')))).toEqual(kept)

    const text = await run('auditor', [
      'certificate',
      'verify',
      join(root, 'compact.car'),
      '--federation',
      federation,
      '--at',
      past,
    ])
    expect(text.stdout).toContain(`verified as of ${past} (given with --at)`)
    expect(text.stdout).toContain('trust mark  neither read nor moved (--at)')
  }, 60_000)

  it('long after it: stale (ms since the epoch are accepted too)', async () => {
    const later = signable + 86_400_000
    const { run: r, proven } = await verifyFile('auditor', 'compact.car', ['--at', String(later)])
    expect(r.code).toBe(1)
    expect(proven.at).toBe(new Date(later).toISOString())
    expect(codes(proven)).toEqual(['cert-stale'])
  }, 60_000)

  it('does not read the mark: a certificate older than the trusted one verifies as of its own time', async () => {
    // The auditor comes to trust a newer checkpoint than compact.car's.
    await until(
      () => (node.store.fold.state().checkpoint?.epoch ?? 0) > epoch,
      'a newer checkpoint',
      DECISION_MS,
      100,
    )
    await exportTo('exporter', 'newer.car')
    expect((await verifyFile('auditor', 'newer.car', ['--max-age', '1h'])).run.code).toBe(0)
    const now = await verifyFile('auditor', 'compact.car', ['--max-age', '1h'])
    expect(codes(now.proven)).toContain('cert-rollback')

    const then = new Date(signable + 1_000).toISOString()
    const { run: r, proven } = await verifyFile('auditor', 'compact.car', ['--at', then])
    expect(r.code, r.stdout).toBe(0)
    expect(proven).toMatchObject({ ok: true, at: then, trust: 'not-used', problems: [] })
    // A home that never verified anything keeps no mark after --at.
    expect((await verifyFile('passer-by', 'compact.car', ['--at', then])).run.code).toBe(0)
    expect(existsSync(trustPath(federation, join(root, 'passer-by')))).toBe(false)
  }, 120_000)

  it('verify DIR --certificate --at: the output names the time; a notice says the mark was not used', async () => {
    const then = new Date(signable + 1_000).toISOString()
    const args = [...['verify', modelDir, '--model', MODEL, '--certificate', join(root, 'compact.car')]]
    const r = await run('auditor', ['--json', ...args, '--federation', federation, '--at', then])
    expect(r.code, r.stdout).toBe(0)
    expect(r.json()).toEqual({ ok: true, status: 'ratified', problems: [], at: then })
    expect(notices(r)).toEqual([
      { code: 'trust-mark-unused', message: expect.stringContaining('was neither read nor moved') },
    ])
    const text = await run('auditor', [...args, '--federation', federation, '--at', then])
    expect(text.stdout).toContain(`(verified as of ${then}, given with --at)`)

    const past = new Date(epoch - 60_000).toISOString()
    const early = await run('auditor', ['--json', ...args, '--federation', federation, '--at', past])
    expect(early.code).toBe(1)
    const problem = early.json<{ problems: { code: string; message: string }[] }>().problems[0]!
    expect(problem).toMatchObject({ code: 'cert-future' })
    expect(problem.message).toContain(`did not exist yet at ${past}`)

    const bad = await run('auditor', [
      '--json',
      ...args,
      '--federation',
      federation,
      '--at',
      '2025-05-01T12:00',
    ])
    expect(bad.code).toBe(2)
    expect(jsonError(bad).message).toContain('--at: not a time')
  }, 60_000)
})

describe('--since a trusted head', () => {
  it('exports only the chain after the head this home trusts; it verifies from that head, and nowhere else', async () => {
    await exportTo('deployer', 'first.car')
    expect((await verifyFile('deployer', 'first.car', ['--max-age', '1h'])).run.code).toBe(0)
    const trusted = await readTrust(federation, join(root, 'deployer'))
    expect(isTrustedHead(trusted) && trusted.head.equals(admitted.cid)).toBe(true)

    // Another governance step after the trusted head, and a checkpoint on it.
    const second = admissionNow('x2', admitted.cid)
    await decide(second, ['s1', 'v1', 'x1'])
    await until(
      () => node.store.fold.state().checkpoint?.head.equals(second.cid) === true,
      'a checkpoint on the second admission',
      DECISION_MS,
      100,
    )
    const since = await exportTo('deployer', 'since.car', ['--since', 'trusted'])
    expect(since).toMatchObject({ mode: 'compact', since: admitted.cid.toString() })
    const whole = await exportTo('deployer', 'whole.car')
    expect(whole).toMatchObject({ since: null })
    expect(since.bytes as number).toBeLessThan(whole.bytes as number)

    const { run: r, proven } = await verifyFile('deployer', 'since.car', ['--max-age', '1h'])
    expect(r.code, r.stdout).toBe(0)
    expect(proven).toMatchObject({ ok: true, since: admitted.cid.toString(), trust: 'moved' })
    const moved = await readTrust(federation, join(root, 'deployer'))
    expect(isTrustedHead(moved) && moved.head.equals(second.cid)).toBe(true)

    const stranger = await verifyFile('stranger', 'since.car', ['--max-age', '1h'])
    expect(stranger.run.code).toBe(1)
    expect(codes(stranger.proven)).toEqual(['cert-since'])
  }, 180_000)

  it('--since trusted with no head kept is refused; --since CID this home does not trust is written unverified', async () => {
    const none = await run('newcomer', [
      ...['--json', 'certificate', 'export', MODEL, '-o', join(root, 'x.car'), '--federation', federation],
      ...['--since', 'trusted'],
    ])
    expect(none.code).toBe(1)
    expect(errorOf(none).code).toBe('no-trusted-head')
    expect(existsSync(join(root, 'x.car'))).toBe(false)

    const forOthers = await run('newcomer', [
      ...['--json', 'certificate', 'export', MODEL, '-o', join(root, 'for-others.car')],
      ...['--federation', federation, '--since', admitted.cid.toString()],
    ])
    expect(forOthers.code, forOthers.stderr).toBe(0)
    expect(forOthers.json()).toMatchObject({ since: admitted.cid.toString() })
    expect(notices(forOthers).map((n) => n.code)).toContain('since-unverified')
  }, 120_000)
})

describe('the online verify', () => {
  let proxy: Server
  let proxyUrl: string
  const asked: string[] = []

  beforeAll(async () => {
    // A pass-through in front of the node that notes every path asked for.
    proxy = createServer(async (req, res) => {
      asked.push(req.url ?? '')
      const answer = await fetch(`${node.apiUrl}${req.url}`, {
        headers: { accept: req.headers.accept ?? '*/*' },
      })
      res.writeHead(answer.status, {
        'content-type': answer.headers.get('content-type') ?? 'application/octet-stream',
      })
      res.end(Buffer.from(await answer.arrayBuffer()))
    })
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`
  })
  afterAll(async () => {
    proxy.closeAllConnections()
    await new Promise((resolve) => proxy.close(resolve))
  })

  it('asks for the chain after its trusted head, in the mode asked for, and verifies it as offline', async () => {
    const trusted = await readTrust(federation, join(root, 'deployer'))
    if (!isTrustedHead(trusted)) throw new Error('the deployer keeps no trusted head')
    const args = [
      '--json',
      'verify',
      modelDir,
      '--model',
      MODEL,
      '--federation',
      federation,
      '--max-age',
      '1h',
    ]
    const r = await run('deployer', args, proxyUrl)
    expect(r.code, r.stdout).toBe(0)
    expect(asked).toContain(`/certificates/${encodeURIComponent(MODEL)}?since=${trusted.head}`)

    const full = await run('deployer', [...args, '--full'], proxyUrl)
    expect(full.code, full.stdout).toBe(0)
    const head = (await readTrust(federation, join(root, 'deployer'))) as typeof trusted
    expect(asked).toContain(`/certificates/${encodeURIComponent(MODEL)}?mode=full&since=${head.head}`)
  }, 60_000)
})

describe('a certificate over the cap', () => {
  it("export shows the node's refusal as it is, naming --since: exit 1", async () => {
    const message =
      'the certificate would be 70000000 bytes, over the cap of 67108864: export it --since a head the verifier already trusts'
    // A node whose certificate would be too large: its status, and the export route's refusal.
    const tooLarge = createServer((req, res) => {
      const json = (status: number, body: unknown) =>
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
      if (req.url === '/status') json(200, { federation })
      else json(413, { error: { code: 'cert-too-large', message } })
    })
    await new Promise<void>((resolve) => tooLarge.listen(0, '127.0.0.1', resolve))
    try {
      const url = `http://127.0.0.1:${(tooLarge.address() as { port: number }).port}`
      const r = await run(
        'exporter',
        ['--json', 'certificate', 'export', MODEL, '-o', join(root, 'huge.car'), '--federation', federation],
        url,
      )
      expect(r.code).toBe(1)
      expect(errorOf(r)).toEqual({ code: 'cert-too-large', message })
      expect(existsSync(join(root, 'huge.car'))).toBe(false)
    } finally {
      tooLarge.closeAllConnections()
      await new Promise((resolve) => tooLarge.close(resolve))
    }
  }, 60_000)
})
