import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer, type Server, type ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateModel } from '../../fixtures/models.js'
import { verifyModel } from '../../index.js'
import type { AllmendeNode } from '../../node/index.js'
import { checkpointDue } from '../../protocol/checkpoint-due.js'
import { buildCertificate, cidKey, type Verified } from '../../protocol/index.js'
import { jsonError, type Run, runCli } from '../support/cli.js'
import { submit } from '../support/cluster.js'
import { rulesWith, Simulator } from '../support/simulator.js'
import { holdWeights, ratification, type StewardNodes, startOnRealClock } from '../support/stewards.js'
import { until } from '../support/until.js'

const KEY_PREFIX = 'allmende-deployer-trust-test:'
const MODEL = 'tiny@1.0.0'
const rules = rulesWith({
  sealThreshold: 1,
  votingPeriodMs: 2_500,
  sealGraceMs: 1_000,
  weightsDeadlineMs: 1_500,
  sealDeadlineMs: 20_000,
  checkpointIntervalMs: 5_000,
})

let root: string
let modelDir: string
let sim: Simulator
let stewardNodes: StewardNodes | undefined
let node: AllmendeNode
let proposal: Verified<'proposal'>
/** The certificate `certificate export --wait` wrote: genuine, covering the ratification. */
let certificate: Uint8Array

/** `allmende ...args` as the deployer `who` (their own home), talking to `url`. */
function run(who: string, args: string[], url: string = node.apiUrl): Promise<Run> {
  return runCli(args, { cwd: root, home: join(root, who), node: url })
}

interface Verdict {
  ok: boolean
  status: string
  problems: { code: string; path?: string; message: string }[]
}

function codes(r: Run): string[] {
  return r.json<Verdict>().problems.map((p) => p.code)
}

/** The notices a run wrote on stderr in --json mode. */
function notices(r: Run): { code: string; message: string }[] {
  return r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{"notice"'))
    .map((l) => JSON.parse(l).notice)
}

function confirmed(): boolean {
  return node.store.fold.state().proposals.get(cidKey(proposal.cid))?.confirmed === true
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'allmende-deployer-trust-'))
  modelDir = join(root, 'model')
  await generateModel(modelDir, { seed: 17, layers: 2, hidden: 64, vocab: 256 })
  const started = await startOnRealClock(
    { name: 'deployer trust', keyPrefix: KEY_PREFIX, stewards: ['s1'], rules },
    { root, tag: 'steward', names: ['s1'], helia: true },
  )
  sim = started.sim
  stewardNodes = started.net
  node = stewardNodes.nodes[0]!
  // The weights in the node's own blockstore, so the steward can check them before sealing.
  const weights = await holdWeights([node], modelDir)

  const t = Date.now() - sim.base
  const manifest = sim.manifest('s1', t, { id: 'tiny', name: 'tiny', version: '1.0.0', weights })
  proposal = ratification(sim, 's1', t + 1, manifest.cid, t + 2_600)
  for (const r of [manifest, proposal, sim.vote('s1', t + 10, { proposal: proposal.cid, choice: 'yes' })])
    expect((await submit(node, r)).status).toBe(201)
}, 60_000)

afterAll(async () => {
  await stewardNodes?.stop()
  if (root) await rm(root, { recursive: true, force: true })
})

describe('before a checkpoint covers the ratification, the node says ratified and nothing passes', () => {
  it('online verify and exec refuse (ratified-unconfirmed, with when the checkpoint is due); the first use pins the federation', async () => {
    await until(
      () => node.store.fold.state().models.get(MODEL)?.status === 'ratified',
      'the ratification',
      60_000,
      50,
    )
    expect(confirmed()).toBe(false)
    const shown = await run('deployer', ['--json', 'model', 'show', MODEL])
    expect(shown.json()).toMatchObject({ status: 'ratified', confirmed: false })

    const due = checkpointDue(rules, proposal.record.body.closesAt, Date.now())
    const online = await run('deployer', ['--json', 'verify', modelDir, '--model', MODEL])
    expect(online.code, online.stderr).toBe(1)
    expect(online.json<Verdict>()).toMatchObject({ ok: false, status: 'unknown' })
    expect(codes(online)).toEqual(['ratified-unconfirmed'])
    const message = online.json<Verdict>().problems[0]!.message
    expect(message).toContain(`says ${MODEL} is ratified, but it serves no certificate for it (not-covered:`)
    expect(message).toContain("a node's word alone never passes")
    expect(message).toContain(`is due at ${new Date(due.at).toISOString()}`)
    // Trust on first use: said, and pinned.
    const pinned = notices(online)
    expect(pinned).toEqual([
      {
        code: 'federation-pinned',
        message: expect.stringMatching(/^trust on first use: pinned federation /),
      },
    ])
    expect(pinned[0]!.message).toContain(sim.federation.toString())
    const pin = JSON.parse(await readFile(join(root, 'deployer', 'federation.json'), 'utf8'))
    expect(pin).toMatchObject({ federation: sim.federation.toString(), from: node.apiUrl })

    const marker = join(root, 'exec-ran')
    const exec = await run('deployer', [
      'exec',
      '--model',
      MODEL,
      '--dir',
      modelDir,
      '--',
      process.execPath,
      '-e',
      `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran')`,
    ])
    expect(exec.code).toBe(1)
    expect(exec.stderr).toMatch(/refusing to run .*: ratified-unconfirmed: /)
    expect(existsSync(marker)).toBe(false)
    // The window was real: still no checkpoint covered the decision after the runs.
    expect(confirmed()).toBe(false)
  }, 90_000)

  it('certificate export exits 1 with the due time; --wait then writes a certificate that verifies', async () => {
    const file = join(root, 'tiny.car')
    const due = checkpointDue(rules, proposal.record.body.closesAt, Date.now())
    const early = await run('deployer', ['--json', 'certificate', 'export', MODEL, '-o', file])
    expect(confirmed()).toBe(false)
    expect(early.code).toBe(1)
    const error = jsonError(early)
    expect(error.code).toBe('not-covered')
    expect(error.message).toContain(`the next checkpoint is due at ${new Date(due.at).toISOString()} (in `)
    expect(error.message).toMatch(/Run again then, or add --wait$/)
    expect(existsSync(file)).toBe(false)

    const waited = await run('deployer', [
      '--json',
      'certificate',
      'export',
      MODEL,
      '-o',
      file,
      '--wait',
      '--timeout',
      '90s',
    ])
    expect(waited.code, waited.stderr).toBe(0)
    expect(waited.json()).toMatchObject({ model: MODEL, file, status: 'ratified' })
    expect(confirmed()).toBe(true)
    certificate = new Uint8Array(await readFile(file))
    const offline = await verifyModel(modelDir, {
      model: MODEL,
      certificate,
      federation: sim.federation,
      maxAgeMs: 600_000,
    })
    expect(offline).toMatchObject({ ok: true, status: 'ratified', problems: [] })

    // Online now passes, through the node's certificate; nothing is pinned again.
    const online = await run('deployer', ['--json', 'verify', modelDir, '--model', MODEL, '--max-age', '1m'])
    expect(online.code, online.stdout).toBe(0)
    expect(online.json()).toEqual({ ok: true, status: 'ratified', problems: [] })
    expect(notices(online)).toEqual([])
  }, 120_000)
})

/** A lying node: a real HTTP server answering what the test sets, 404 for everything else. */
class Liar {
  federation = ''
  model: Record<string, unknown> = {}
  certificate: Uint8Array | 'none' | 'endless' = 'none'
  certificateRequests = 0
  /** Records served at /records/:id (CBOR). */
  records = new Map<string, Uint8Array>()
  // Routed by path: a real node takes the certificate route's query (`?mode=…&since=…`) too.
  private readonly server: Server = createServer((req, res) =>
    this.answer((req.url ?? '').split('?')[0]!, res),
  )
  url = ''

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`
  }

  stop(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  private answer(url: string, res: ServerResponse): void {
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
    }
    const record = this.records.get(decodeURIComponent(url.replace(/^\/records\//, '')))
    if (url === '/status') json(200, { federation: this.federation })
    else if (url.startsWith('/records/') && record)
      res.writeHead(200, { 'content-type': 'application/cbor' }).end(Buffer.from(record))
    else if (url === `/models/${encodeURIComponent(MODEL)}`) json(200, this.model)
    else if (url !== `/certificates/${encodeURIComponent(MODEL)}`)
      json(404, { error: { code: 'not-found', message: `no ${url}` } })
    else {
      this.certificateRequests++
      if (this.certificate === 'none')
        json(404, { error: { code: 'no-certificate', message: 'no checkpoint has been counted yet' } })
      else if (this.certificate === 'endless') this.endless(res)
      else
        res.writeHead(200, { 'content-type': 'application/vnd.ipld.car' }).end(Buffer.from(this.certificate))
    }
  }

  /** 1 MiB chunks until the client hangs up (at most 80 MiB: the loop ends by itself). */
  private endless(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/vnd.ipld.car' })
    const chunk = Buffer.alloc(1024 * 1024, 0xa5)
    let sent = 0
    const more = () => {
      while (sent < 80 && !res.destroyed) {
        sent++
        if (!res.write(chunk)) return void res.once('drain', more)
      }
      res.end()
    }
    more()
  }
}

/** Another federation that ratified a `tiny@1.0.0` and checkpointed it: a genuine certificate, of the wrong federation. */
function elsewhere(): { federation: string; car: Uint8Array; manifest: Verified<'manifest'> } {
  const other = new Simulator({
    members: [{ name: 's1', roles: ['publisher', 'steward', 'voter'], weight: 1 }],
    rules: rulesWith({ sealThreshold: 1 }),
    // The checkpoint below (epoch 2 s after the base) falls on an hour, the interval, as SPEC's
    // checkpoint-epoch rule demands; at most an hour ago, so it is fresh (2 intervals).
    base: Math.floor(Date.now() / 3_600_000) * 3_600_000 - 2_000,
    name: 'another federation',
  })
  const m = other.manifest('s1', 0, { id: 'tiny', name: 'tiny', version: '1.0.0' })
  other.add(m)
  const p = other.proposal('s1', 1, { closesAt: 1_100, action: { type: 'ratify-model', manifest: m.cid } })
  other.add(p)
  other.add(other.vote('s1', 10, { proposal: p.cid, choice: 'yes' }))
  other.add(other.seal('s1', 1_300, { proposal: p.cid }))
  other.add(other.checkpoint('s1', 8_000, 2_000))
  return { federation: other.federation.toString(), car: buildCertificate(other.fold, MODEL), manifest: m }
}

describe('a node that lies never gets a model through', () => {
  const liar = new Liar()
  const ratified = {
    name: 'tiny',
    version: '1.0.0',
    status: 'ratified',
    manifest: null,
    proposal: null,
    manifests: [],
  }
  beforeAll(async () => {
    await liar.start()
  })
  afterAll(async () => {
    await liar.stop()
  })
  /** The deployer's `verify` of the model against what the liar says. */
  const verifyAtLiar = () => run('deployer', ['--json', 'verify', modelDir, '--model', MODEL], liar.url)

  it('a node of another federation than the pinned one: federation-mismatch, saying how to re-pin', async () => {
    const other = elsewhere()
    liar.federation = other.federation
    liar.model = ratified
    liar.certificate = other.car
    const r = await verifyAtLiar()
    expect(r.code).toBe(1)
    const error = jsonError(r)
    expect(error.code).toBe('federation-mismatch')
    expect(error.message).toContain(
      `serves federation ${other.federation}, but this home trusts federation ${sim.federation}`,
    )
    expect(error.message).toContain(`run again with --federation ${other.federation} --pin`)
    expect(liar.certificateRequests).toBe(0)
    const pin = JSON.parse(await readFile(join(root, 'deployer', 'federation.json'), 'utf8'))
    expect(pin.federation).toBe(sim.federation.toString())

    // Re-pinned on purpose: that federation's certificate is then checked (and is genuine).
    const repinned = await run(
      'deployer',
      [
        '--json',
        'verify',
        modelDir,
        '--model',
        MODEL,
        '--federation',
        other.federation,
        '--pin',
        '--max-age',
        '1h',
      ],
      liar.url,
    )
    expect(notices(repinned)).toEqual([
      { code: 'federation-pinned', message: expect.stringContaining(other.federation) },
    ])
    // Its manifest is another model's: the files do not match, and nothing passes.
    expect(repinned.code).toBe(1)
    expect(repinned.json<Verdict>().status).toBe('ratified')
    expect(JSON.parse(await readFile(join(root, 'deployer', 'federation.json'), 'utf8')).federation).toBe(
      other.federation,
    )
    // Back to ours, on purpose.
    const back = await run('deployer', [
      ...['--json', 'verify', modelDir, '--model', MODEL, '--max-age', '1m'],
      ...['--federation', sim.federation.toString(), '--pin'],
    ])
    expect(back.code, back.stdout).toBe(0)
  }, 60_000)

  it('says it serves our federation, but its certificate is another federation’s: cert-header', async () => {
    liar.federation = sim.federation.toString()
    liar.model = ratified
    liar.certificate = elsewhere().car
    const r = await run(
      'deployer',
      ['--json', 'verify', modelDir, '--model', MODEL, '--max-age', '1h'],
      liar.url,
    )
    expect(r.code).toBe(1)
    expect(r.json<Verdict>()).toMatchObject({ ok: false, status: 'unknown' })
    expect(codes(r)).toEqual(['cert-header', 'ratified-unconfirmed'])
  }, 60_000)

  it('a forged certificate (one byte changed) or a stale one: refused', async () => {
    liar.federation = sim.federation.toString()
    liar.model = ratified
    const forged = Uint8Array.from(certificate)
    forged[forged.length - 1]! ^= 0x01
    liar.certificate = forged
    const r = await run(
      'deployer',
      ['--json', 'verify', modelDir, '--model', MODEL, '--max-age', '1h'],
      liar.url,
    )
    expect(r.code).toBe(1)
    expect(r.json<Verdict>().ok).toBe(false)
    expect(codes(r)[0]).toMatch(/^cert-/)

    liar.certificate = certificate
    const stale = await run(
      'deployer',
      ['--json', 'verify', modelDir, '--model', MODEL, '--max-age', '1ms'],
      liar.url,
    )
    expect(stale.code).toBe(1)
    expect(codes(stale)).toContain('cert-stale')
  }, 60_000)

  it('a genuine certificate, but the node says revoked: refused as its unconfirmed word', async () => {
    liar.federation = sim.federation.toString()
    liar.model = { ...ratified, status: 'revoked', proposal: proposal.cid.toString() }
    // The node's newest: the deployer has since accepted newer checkpoints than the exported one.
    liar.certificate = buildCertificate(node.store.fold, MODEL)
    const r = await run(
      'deployer',
      ['--json', 'verify', modelDir, '--model', MODEL, '--max-age', '1h'],
      liar.url,
    )
    expect(r.code).toBe(1)
    expect(r.json<Verdict>()).toMatchObject({ ok: false, status: 'revoked' })
    expect(codes(r)).toEqual(['revoked-unconfirmed'])
    expect(r.json<Verdict>().problems[0]!.message).toContain(
      `says ${MODEL} is revoked by ${proposal.cid}, final but not yet covered by a counted checkpoint: the node's unconfirmed word`,
    )
    const marker = join(root, 'revoked-ran')
    const exec = await run(
      'deployer',
      [
        'exec',
        '--model',
        MODEL,
        '--dir',
        modelDir,
        '--max-age',
        '1h',
        '--',
        process.execPath,
        '-e',
        `require('node:fs').writeFileSync(${JSON.stringify(marker)}, '')`,
      ],
      liar.url,
    )
    expect(exec.code).toBe(1)
    expect(exec.stderr).toContain('revoked-unconfirmed')
    expect(existsSync(marker)).toBe(false)
  }, 60_000)

  it('"ratified" with no certificate at all: never passes', async () => {
    liar.federation = sim.federation.toString()
    liar.model = ratified
    liar.certificate = 'none'
    const r = await verifyAtLiar()
    expect(r.code).toBe(1)
    expect(codes(r)).toEqual(['ratified-unconfirmed'])
    const exported = await run(
      'deployer',
      ['--json', 'certificate', 'export', MODEL, '-o', join(root, 'none.car')],
      liar.url,
    )
    expect(exported.code).toBe(1)
    expect(jsonError(exported).code).toBe('no-certificate')
    expect(existsSync(join(root, 'none.car'))).toBe(false)
  }, 60_000)

  it('fetch: a manifest signed in another federation than the pinned one is refused', async () => {
    const other = elsewhere()
    liar.federation = sim.federation.toString()
    liar.model = { ...ratified, manifest: other.manifest.cid.toString() }
    liar.records.set(other.manifest.cid.toString(), other.manifest.bytes)
    const out = join(root, 'fetched-from-liar')
    const r = await run('deployer', ['--json', 'fetch', MODEL, '--out', out], liar.url)
    expect(r.code).toBe(1)
    expect(jsonError(r).code).toBe('bad-answer')
    expect(existsSync(out)).toBe(false)
  }, 60_000)

  it('an answer longer than a certificate can be is cut off: answer-too-large', async () => {
    liar.federation = sim.federation.toString()
    liar.model = ratified
    liar.certificate = 'endless'
    const r = await verifyAtLiar()
    expect(r.code).toBe(1)
    expect(codes(r)).toEqual(['ratified-unconfirmed'])
    expect(r.json<Verdict>().problems[0]!.message).toContain(
      `(answer-too-large: the node at ${liar.url} answered /certificates/${encodeURIComponent(MODEL)} with more than ${64 * 1024 * 1024 + 1} bytes)`,
    )
  }, 60_000)
})
