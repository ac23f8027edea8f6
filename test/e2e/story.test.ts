/**
 * The whole story through the real binary (`npm run build` first), as the people of a federation
 * would live it, each with their own `$ALLMENDE_HOME`, against three `allmende node start`
 * daemons on 127.0.0.1 (seal threshold 2):
 *
 * three stewards found the federation (create, cosign) and start their nodes, joined by
 * bootstrap; a publisher publishes a generated model to one node; a license reviewer and an
 * evaluator attest it; a voter proposes to ratify it and the voters vote; the stewards seal on
 * their own, and every node lists the model as ratified; a deployer fetches it from another node
 * than the one it was published to, verifies it online (through the node's certificate, the
 * federation pinned on first use) and offline with an exported certificate, and runs a command on
 * a snapshot of it with `exec`; one flipped byte and one extra file are named by `verify`
 * and `exec`; a revocation passes, and after a new checkpoint `verify` names it, online and
 * offline with a fresh certificate.
 *
 * Then bad input through the CLI, on the same federation: each mistake is one line naming what
 * is wrong, with the right exit code.
 *
 * Records are made at real time: the federation's timings are seconds long (8 s voting, 2 s seal
 * grace, 8 s weights deadline, 10 s seal deadline, 2 s checkpoints), and every wait is a bounded
 * poll through the CLI.
 */
import { existsSync } from 'node:fs'
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { type GeneratedModel, generateModel } from '../../fixtures/models.js'
import {
  closedPort,
  errorLine,
  jsonError,
  nodeInitArgs,
  publishArgs,
  type Run,
  runCli,
} from '../support/cli.js'
import { type Daemon, startDaemon } from '../support/daemon.js'
import { until } from '../support/until.js'

const STEWARDS = ['steward-1', 'steward-2', 'steward-3'] as const
const PEOPLE = ['alice', 'bob', 'publisher', 'reviewer', 'evaluator', 'deployer'] as const
type Who = (typeof STEWARDS)[number] | (typeof PEOPLE)[number]
/** Bob keeps his identity encrypted; his commands get the passphrase in $ALLMENDE_PASSPHRASE. */
const BOB_PASSPHRASE = 'correct horse battery staple'
const NAME = 'story/tiny-model'
const MODEL = `${NAME}@1.0.0`
const REASON = 'the training data licence was withdrawn'
/** Generous bounds for what the stewards do on their own (seconds-long timings, a loaded machine). */
const DECISION_MS = 60_000

let dir: string
const nodes: Daemon[] = []
const dids: Partial<Record<Who, string>> = {}
let federation: string
let model: GeneratedModel
let manifest: string
let ratification: string

interface Options {
  node?: Daemon
  env?: Record<string, string>
}

/** `allmende ...args` run by `who`: their home, the node they talk to, Bob's passphrase. */
function run(who: Who, args: string[], options: Options = {}): Promise<Run> {
  return runCli(args, {
    cwd: dir,
    home: join(dir, who),
    ...(options.node ? { node: options.node.api } : {}),
    env: { ...(who === 'bob' ? { ALLMENDE_PASSPHRASE: BOB_PASSPHRASE } : {}), ...options.env },
  })
}

/**
 * The node the deployer checks online and exports certificates from. One node: every online
 * check keeps the node's newest checkpoint as the trust mark, and another node that has not yet
 * counted that checkpoint (a moment behind) would serve a certificate that is a rollback.
 */
const DEPLOYER_NODE = () => nodes[1]!

/** `certificate export MODEL -o FILE` from the deployer's node, and what it printed. */
async function exportCertificate(file: string): Promise<Record<string, unknown>> {
  return ok(
    await run('deployer', ['--json', 'certificate', 'export', MODEL, '-o', file], { node: DEPLOYER_NODE() }),
  )
}

/** Exit 0, and the JSON it printed; otherwise the test fails showing everything it said. */
function ok<T = Record<string, unknown>>(r: Run): T {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0)
  return r.json<T>()
}

interface ModelEntry {
  name: string
  version: string
  status: string
  manifest: string | null
  proposal: string | null
  manifests: string[]
}

async function modelOn(node: Daemon): Promise<ModelEntry | undefined> {
  const listed = ok<{ models: ModelEntry[] }>(await run('deployer', ['--json', 'model', 'list'], { node }))
  return listed.models.find((m) => `${m.name}@${m.version}` === MODEL)
}

/** Bounded polling, through the CLI, for what the stewards do on their own. */
async function eventually<T>(fn: () => Promise<T | undefined>, what: string): Promise<T> {
  return (await until(fn, what, DECISION_MS, 250)) as T
}

/** Polls `model list` on every node until each shows MODEL with `status`. */
async function everyNodeShows(status: string): Promise<ModelEntry[]> {
  return eventually(async () => {
    const entries = await Promise.all(nodes.map(modelOn))
    return entries.every((e) => e?.status === status) ? (entries as ModelEntry[]) : undefined
  }, `${MODEL} ${status} on every node`)
}

interface ProposalShown {
  id: string
  status: string
  outcome?: string
  weightsVerified?: boolean
  confirmed: boolean
  tally: { yes: number; no: number; abstain: number }
}

async function proposalOn(node: Daemon, id: string): Promise<ProposalShown> {
  return ok<ProposalShown>(await run('deployer', ['--json', 'proposal', 'show', id], { node }))
}

/** Polls `proposal show` until the proposal is final and a counted checkpoint covers it. */
async function confirmed(node: Daemon, id: string): Promise<ProposalShown> {
  return eventually(async () => {
    const p = await proposalOn(node, id)
    return p.confirmed ? p : undefined
  }, `a checkpoint covering ${id}`)
}

/**
 * `--json verify DIR --model REF`: online through the node's certificate (the federation pinned
 * on first use), or offline when a certificate file is given; either fresh within 10 min.
 */
function verifyArgs(ref: string, dirName: string, certificate?: string, fed = federation): string[] {
  return [
    '--json',
    'verify',
    dirName,
    '--model',
    ref,
    ...(certificate ? ['--certificate', certificate, '--federation', fed] : []),
    '--max-age',
    '10m',
  ]
}

interface Verdict {
  ok: boolean
  status: string
  problems: { code: string; path?: string; message: string }[]
}

/**
 * `exec` of `script(marker)` on MODEL in `dirName`: online (fresh within 10 min), or offline with
 * a certificate (our federation unless another is named; `--max-age` only when given).
 */
function execArgs(
  dirName: string,
  marker: string,
  certificate?: { file: string; federation?: string; maxAge?: string },
): string[] {
  const trust = certificate
    ? [
        '--certificate',
        certificate.file,
        '--federation',
        certificate.federation ?? federation,
        ...(certificate.maxAge ? ['--max-age', certificate.maxAge] : []),
      ]
    : ['--max-age', '10m']
  return ['exec', '--model', MODEL, '--dir', dirName, ...trust, '--', ...script(marker)]
}

/** The ALLMENDE_MODEL_DIR exec gave: a snapshot of DIR in the temp directory, removed once the command exited. */
function expectRemovedSnapshot(modelDir: string, dirName: string): void {
  expect(modelDir).not.toBe(join(dir, dirName))
  expect(modelDir.startsWith(join(tmpdir(), 'allmende-exec-'))).toBe(true)
  expect(existsSync(modelDir)).toBe(false)
}

/** A command for `exec`: writes the ALLMENDE_MODEL_DIR it was given to `marker`, exits 7. */
function script(marker: string): string[] {
  return [
    process.execPath,
    '-e',
    `require('node:fs').writeFileSync(${JSON.stringify(marker)}, process.env.ALLMENDE_MODEL_DIR); process.exit(7)`,
  ]
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'allmende-story-'))
  // Every person runs `allmende init`; each steward institution makes its node's steward key.
  const inits = await Promise.all([
    ...STEWARDS.map((s) => run(s, ['--json', 'init', '--steward-key', `${s}/steward.key`])),
    ...PEOPLE.map((p) => run(p, ['--json', 'init'])),
  ])
  for (const [i, who] of [...STEWARDS, ...PEOPLE].entries()) dids[who] = ok<{ did: string }>(inits[i]!).did
  expect(inits[STEWARDS.length + PEOPLE.indexOf('bob')]!.json().encrypted).toBe(true)

  // The first steward founds the federation; the other founding stewards co-sign.
  const created = ok<{ federation: string; missing: string[]; complete: boolean }>(
    await run('steward-1', [
      '--json',
      'federation',
      'create',
      '--name',
      'Story federation',
      '--key',
      'steward-1/steward.key',
      ...STEWARDS.flatMap((s) => ['--member', `${dids[s]}:steward`]),
      '--member',
      `${dids.alice}:voter:2`,
      '--member',
      `${dids.bob}:voter`,
      '--member',
      `${dids.publisher}:publisher`,
      '--member',
      `${dids.reviewer}:auditor`,
      '--member',
      `${dids.evaluator}:auditor`,
      '--seal-threshold',
      '2',
      '--rule',
      'ratify-model:quorum=1/2,threshold=2/3',
      '--require',
      'ratify-model:license-review=1',
      '--require',
      'ratify-model:eval=1',
      '--voting-period',
      '8s',
      '--seal-grace',
      '2s',
      '--weights-deadline',
      '8s',
      '--seal-deadline',
      '10s',
      '--checkpoint-interval',
      '2s',
      '--out',
      'genesis.car',
    ]),
  )
  federation = created.federation
  expect(created).toMatchObject({ complete: false })
  expect([...created.missing].sort()).toEqual([dids['steward-2'], dids['steward-3']].sort())
  for (const s of ['steward-2', 'steward-3'] as const) {
    ok(await run(s, ['--json', 'federation', 'cosign', 'genesis.car', '--key', `${s}/steward.key`]))
  }
  const shown = ok(await run('deployer', ['--json', 'federation', 'show', 'genesis.car']))
  expect(shown).toMatchObject({ federation, complete: true, missing: [] })

  // Each steward runs a node with its steward key; the second and third join the first by
  // bootstrap, the third by the federation id alone (its genesis comes from the first node).
  const nodeInit = (s: Who, from: string, bootstrap: string[]) =>
    run(s, [
      '--json',
      ...nodeInitArgs(from, `${s}/node`),
      '--steward-key',
      `${s}/steward.key`,
      ...(bootstrap.length > 0 ? ['--bootstrap', ...bootstrap] : []),
    ])
  expect(ok(await nodeInit('steward-1', 'genesis.car', []))).toMatchObject({ federation })
  nodes.push(await startDaemon(join(dir, 'steward-1/node')))
  const bootstrap = [nodes[0]!.addresses[0]!]
  const inited = await Promise.all([
    nodeInit('steward-2', 'genesis.car', bootstrap),
    nodeInit('steward-3', federation, bootstrap),
  ])
  for (const r of inited) expect(ok(r)).toMatchObject({ federation })
  nodes.push(
    ...(await Promise.all([
      startDaemon(join(dir, 'steward-2/node')),
      startDaemon(join(dir, 'steward-3/node')),
    ])),
  )
  for (const [i, node] of nodes.entries()) {
    const status = ok(await run('deployer', ['--json', 'node', 'status'], { node }))
    expect(status).toMatchObject({ federation, steward: dids[STEWARDS[i]!], head: federation })
  }
  await until(
    async () => {
      const peers = await Promise.all(
        nodes.map(async (node) =>
          ok<{ peers: unknown[] }>(await run('deployer', ['--json', 'node', 'peers'], { node })),
        ),
      )
      return peers[0]!.peers.length >= 2 && peers.every((p) => p.peers.length >= 1)
    },
    'the nodes to connect',
    30_000,
    250,
  )
}, 120_000)

beforeEach(({ onTestFailed }) => {
  // What the nodes said, when a step fails.
  onTestFailed(() => {
    for (const [i, n] of nodes.entries())
      console.error(`--- ${STEWARDS[i]}'s node (last lines)\n${n.stderr().split('\n').slice(-30).join('\n')}`)
  })
})

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.kill()))
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('the story: found, publish, attest, ratify, deploy, tamper, revoke', () => {
  it('a model published to one node is attested, proposed, voted on, sealed by the stewards and ratified on every node', async () => {
    // Small shards, so the model has several weight files.
    model = await generateModel(join(dir, 'model'), {
      seed: 8,
      layers: 2,
      hidden: 64,
      vocab: 256,
      maxShardBytes: 64 * 1024,
    })
    expect(model.files.filter((f) => f.endsWith('.safetensors')).length).toBeGreaterThan(1)
    const published = ok<{ manifest: string; files: number; size: number }>(
      await run(
        'publisher',
        [
          '--json',
          ...publishArgs('model', {
            name: NAME,
            version: '1.0.0',
            license: 'Apache-2.0',
            languages: 'de,en',
          }),
        ],
        { node: nodes[0] },
      ),
    )
    expect(published).toMatchObject({ files: model.files.length, size: model.bytes })
    manifest = published.manifest
    // The manifest reaches every node by gossip.
    for (const e of await everyNodeShows('proposed'))
      expect(e).toMatchObject({ manifest: null, manifests: [manifest] })

    const [review, evaluation] = await Promise.all([
      run('reviewer', ['--json', 'attest', MODEL, '--kind', 'license-review', '--result', 'pass'], {
        node: nodes[0],
      }),
      run(
        'evaluator',
        [
          '--json',
          'attest',
          MODEL,
          '--kind',
          'eval',
          '--result',
          'pass',
          '--metric',
          'accuracy_permille=873',
        ],
        { node: nodes[1] },
      ),
    ])
    expect(ok(review)).toMatchObject({ subject: manifest, kind: 'license-review', status: 'applied' })
    expect(ok(evaluation)).toMatchObject({ subject: manifest, kind: 'eval', status: 'applied' })

    const proposed = ok<{ proposal: string; status: string }>(
      await run('alice', ['--json', 'propose', 'ratify', MODEL], { node: nodes[1] }),
    )
    expect(proposed.status).toBe('applied')
    ratification = proposed.proposal
    const votes = await Promise.all([
      run('alice', ['--json', 'vote', ratification, 'yes'], { node: nodes[1] }),
      run('bob', ['--json', 'vote', ratification, 'yes', '--reason', 'the evals look fine'], {
        node: nodes[2],
      }),
    ])
    for (const v of votes)
      expect(ok(v)).toMatchObject({ proposal: ratification, choice: 'yes', status: 'applied' })
    const open = ok<{ proposals: { id: string }[] }>(
      await run('deployer', ['--json', 'proposals', '--open'], { node: nodes[0] }),
    )
    expect(open.proposals.map((p) => p.id)).toContain(ratification)

    // Nobody seals by hand: after the close the stewards check the weights (two of them fetch
    // them from the first node) and seal on their own.
    const decided = await eventually(async () => {
      const p = await proposalOn(nodes[0]!, ratification)
      return p.status === 'final-passed' ? p : undefined
    }, 'the stewards to seal the ratification')
    expect(decided).toMatchObject({ outcome: 'passed', weightsVerified: true, tally: { yes: 3, no: 0 } })
    for (const e of await everyNodeShows('ratified')) {
      expect(e).toMatchObject({ status: 'ratified', manifest, proposal: ratification })
    }
    const text = await run('deployer', ['model', 'list'], { node: nodes[2] })
    expect(text.stdout).toMatch(new RegExp(`^${MODEL.replace(/[./]/g, '\\$&')} +ratified +${manifest}$`, 'm'))
  }, 120_000)

  it('a deployer fetches it from another node, verifies it online and offline, and exec runs a command on it', async () => {
    // Published to the first node; fetched from the third, which got the weights by itself.
    const fetched = ok(
      await run('deployer', ['--json', 'fetch', MODEL, '--out', 'deployed'], { node: nodes[2] }),
    )
    expect(fetched).toMatchObject({ model: MODEL, files: model.files.length, bytes: model.bytes })
    expect((await readdir(join(dir, 'deployed'))).sort()).toEqual([...model.files].sort())
    for (const f of model.files) {
      expect(
        Buffer.compare(await readFile(join(dir, 'deployed', f)), await readFile(join(dir, 'model', f))),
        f,
      ).toBe(0)
    }

    // Online, the node's certificate proves the status: once a checkpoint covers the decision.
    await confirmed(DEPLOYER_NODE(), ratification)
    const first = await run('deployer', [...verifyArgs(MODEL, 'deployed'), '--cid'], {
      node: DEPLOYER_NODE(),
    })
    expect(ok<Verdict>(first)).toEqual({ ok: true, status: 'ratified', problems: [] })
    // The deployer's first online command: the federation is pinned, trust on first use, and said.
    expect(first.stderr).toMatch(
      new RegExp(
        `^\\{"notice":\\{"code":"federation-pinned","message":"trust on first use: pinned federation ${federation}`,
      ),
    )

    // Then offline, with no node at all.
    expect(await exportCertificate('ratified.car')).toMatchObject({
      model: MODEL,
      file: 'ratified.car',
      status: 'ratified',
    })
    const offline = ok<Verdict>(
      await run('deployer', [...verifyArgs(MODEL, 'deployed', 'ratified.car'), '--cid']),
    )
    expect(offline).toEqual({ ok: true, status: 'ratified', problems: [] })
    const text = await run('deployer', verifyArgs(MODEL, 'deployed', 'ratified.car').slice(1))
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(
      new RegExp(`^ok: ${MODEL.replace(/[./]/g, '\\$&')} is ratified and every file matches`),
    )

    // exec: the command runs on a snapshot (ALLMENDE_MODEL_DIR), and allmende exits with its code.
    // Offline first: an online check keeps the node's newer checkpoint as the trust mark, and an
    // older certificate file is a rollback from then on.
    const marker = join(dir, 'model-dir.txt')
    const offlineExec = await run(
      'deployer',
      execArgs('deployed', marker, { file: 'ratified.car', maxAge: '10m' }),
    )
    expect(offlineExec.code, offlineExec.stderr).toBe(7)
    expectRemovedSnapshot(await readFile(marker, 'utf8'), 'deployed')
    await rm(marker)
    const onlineExec = await run('deployer', execArgs('deployed', marker), { node: DEPLOYER_NODE() })
    expect(onlineExec.code, onlineExec.stderr).toBe(7)
    expectRemovedSnapshot(await readFile(marker, 'utf8'), 'deployed')
    await rm(marker)
  }, 120_000)

  it('one flipped byte in a weight file, and an extra file, make verify and exec exit 1 naming the file', async () => {
    const weight = model.files.filter((f) => f.endsWith('.safetensors'))[1]!
    await cp(join(dir, 'deployed'), join(dir, 'flipped'), { recursive: true })
    const bytes = await readFile(join(dir, 'flipped', weight))
    const at = Math.floor(bytes.length / 2)
    bytes[at] = bytes[at]! ^ 0x01
    await writeFile(join(dir, 'flipped', weight), bytes)
    await cp(join(dir, 'deployed'), join(dir, 'extra'), { recursive: true })
    await writeFile(join(dir, 'extra', 'notes.txt'), 'not in the manifest')
    const marker = join(dir, 'ran.txt')

    for (const [sub, code, path] of [
      ['flipped', 'sha256-mismatch', weight],
      ['extra', 'file-extra', 'notes.txt'],
    ] as const) {
      const online = await run('deployer', verifyArgs(MODEL, sub), { node: DEPLOYER_NODE() })
      const text = await run('deployer', verifyArgs(MODEL, sub).slice(1), { node: DEPLOYER_NODE() })
      const refused = await run('deployer', execArgs(sub, marker), { node: DEPLOYER_NODE() })
      // Offline with a certificate exported after those online checks (not older than the mark).
      await exportCertificate('fresh.car')
      const offline = await run('deployer', verifyArgs(MODEL, sub, 'fresh.car'))
      for (const r of [online, offline]) {
        expect(r.code, r.stdout).toBe(1)
        expect(r.json<Verdict>()).toEqual({
          ok: false,
          status: 'ratified',
          problems: [expect.objectContaining({ code, path, message: expect.stringContaining(path) })],
        })
      }
      expect(text.code).toBe(1)
      expect(text.stdout).toContain(`${code} ${path}: `)

      expect(refused.code).toBe(1)
      expect(errorLine(refused)).toMatch(
        new RegExp(`^allmende: refusing to run .*: ${code} ${path.replace('.', '\\.')}: `),
      )
      const offlineRefused = await run(
        'deployer',
        execArgs(sub, marker, { file: 'fresh.car', maxAge: '10m' }),
      )
      expect(offlineRefused.code).toBe(1)
      expect(errorLine(offlineRefused)).toContain(`${code} ${path}: `)
      expect(existsSync(marker)).toBe(false)
    }
  }, 60_000)

  it('a revocation passes; after a new checkpoint verify names it, online and offline with a fresh certificate', async () => {
    const proposed = ok<{ proposal: string }>(
      await run('alice', ['--json', 'propose', 'revoke', MODEL, '--reason', REASON], { node: nodes[0] }),
    )
    const revocation = proposed.proposal
    const votes = await Promise.all([
      run('alice', ['--json', 'vote', revocation, 'yes'], { node: nodes[0] }),
      run('bob', ['--json', 'vote', revocation, 'no', '--reason', 'a new licence is being negotiated'], {
        node: nodes[1],
      }),
    ])
    for (const v of votes) expect(ok(v)).toMatchObject({ proposal: revocation, status: 'applied' })
    const shown = ok(await run('deployer', ['--json', 'proposal', 'show', revocation], { node: nodes[2] }))
    expect(shown).toMatchObject({
      status: 'open',
      action: { type: 'revoke-model', manifest, reason: REASON },
    })

    const decided = await eventually(async () => {
      const p = await proposalOn(nodes[2]!, revocation)
      return p.status === 'final-passed' ? p : undefined
    }, 'the stewards to seal the revocation')
    expect(decided).toMatchObject({ outcome: 'passed', tally: { yes: 2, no: 1 } })
    for (const e of await everyNodeShows('revoked')) {
      expect(e).toMatchObject({ status: 'revoked', proposal: revocation, manifests: [manifest] })
    }

    // Online: every node knows at once. Until a checkpoint covers the revocation it is the node's
    // unconfirmed word, which may only make the verdict stricter; after, the certificate proves it.
    const online = await run('deployer', verifyArgs(MODEL, 'deployed'), { node: DEPLOYER_NODE() })
    expect(online.code).toBe(1)
    const verdict = online.json<Verdict>()
    expect(verdict).toMatchObject({ ok: false, status: 'revoked' })
    expect(verdict.problems).toHaveLength(1)
    const [problem] = verdict.problems
    if (problem!.code === 'revoked-unconfirmed')
      expect(problem!.message).toContain(
        `says ${MODEL} is revoked by ${revocation}, final but not yet covered by a counted checkpoint: the node's unconfirmed word`,
      )
    else
      expect(problem).toEqual({ code: 'cert-revoked', message: `${MODEL} is revoked under the checkpoint` })
    const refused = await run('deployer', execArgs('deployed', join(dir, 'x')), { node: DEPLOYER_NODE() })
    expect(refused.code).toBe(1)
    expect(errorLine(refused)).toMatch(
      /refusing to run .*: (revoked-unconfirmed|cert-revoked): .* is revoked/,
    )

    // Offline: once a new checkpoint covers the revocation, a freshly exported certificate proves it.
    await confirmed(DEPLOYER_NODE(), revocation)
    await exportCertificate('revoked.car')
    const offline = await run('deployer', verifyArgs(MODEL, 'deployed', 'revoked.car'))
    expect(offline.code, offline.stdout).toBe(1)
    expect(offline.json<Verdict>()).toMatchObject({
      ok: false,
      status: 'revoked',
      problems: [{ code: 'cert-revoked', message: `${MODEL} is revoked under the checkpoint` }],
    })
    const offlineExec = await run(
      'deployer',
      execArgs('deployed', join(dir, 'x'), { file: 'revoked.car', maxAge: '10m' }),
    )
    expect(offlineExec.code).toBe(1)
    expect(errorLine(offlineExec)).toMatch(/cert-revoked: .* is revoked under the checkpoint$/)
  }, 120_000)

  // protocol/SPEC.md §12.3: the highest checkpoint seen is kept, so after the certificate proving the
  // revocation, an older one still saying "ratified" is refused (no mix-and-match).
  it('once the revocation was seen offline, the older certificate saying ratified is refused', async () => {
    const old = await run('deployer', verifyArgs(MODEL, 'deployed', 'ratified.car'))
    expect(old.code, old.stdout).toBe(1)
    expect(old.json<Verdict>().problems).toContainEqual(expect.objectContaining({ code: 'cert-rollback' }))
  })
})

describe('bad input through the CLI: one line naming the mistake, and the exit code', () => {
  it('an unknown model: exit 1', async () => {
    const r = await run('deployer', ['model', 'show', 'nope@1.0.0'], { node: nodes[0] })
    expect(r.code).toBe(1)
    expect(errorLine(r)).toBe('allmende: no manifest of nope@1.0.0 is known to this node')
    const j = await run('deployer', ['--json', 'verify', 'deployed', '--model', 'nope@1.0.0'], {
      node: nodes[0],
    })
    expect(j.code).toBe(1)
    expect(jsonError(j)).toEqual({
      code: 'unknown-model',
      message: 'no manifest of nope@1.0.0 is known to this node',
    })
  })

  it('a malformed DID: exit 2', async () => {
    const r = await run('alice', ['propose', 'admit', 'did:key:z6MkNotAKey', '--roles', 'voter'], {
      node: nodes[0],
    })
    expect(r.code).toBe(2)
    expect(errorLine(r)).toBe(
      'allmende: admit: did:key:z6MkNotAKey is not a member key: the did:key is not an Ed25519 key (multicodec 0xed01)',
    )
    const m = await run('alice', [
      'federation',
      'create',
      '--name',
      'x',
      '--out',
      'x.car',
      '--member',
      `${dids.alice}:voter`,
      '--member',
      'did:web:example.org:steward',
    ])
    expect(m.code).toBe(2)
    expect(errorLine(m)).toBe(
      'allmende: --member did:web:example.org:steward: did:web:example.org is not a member key: a member id must start with "did:key:"',
    )
    expect(existsSync(join(dir, 'x.car'))).toBe(false)
  })

  it('a node that is down: exit 3, naming the URL', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`
    const r = await run('deployer', ['verify', 'deployed', '--model', MODEL, '--node', url])
    expect(r.code).toBe(3)
    expect(errorLine(r)).toBe(
      `allmende: cannot reach the node at ${url} (ECONNREFUSED); is it running? (set --node or $ALLMENDE_NODE)`,
    )
  })

  it('a wrong passphrase: exit 1', async () => {
    const r = await run('bob', ['vote', ratification, 'no'], {
      node: nodes[0],
      env: { ALLMENDE_PASSPHRASE: 'correct horse battery stable' },
    })
    expect(r.code).toBe(1)
    expect(errorLine(r)).toBe(
      `allmende: cannot unlock ${join(dir, 'bob', 'identity.json')}: the passphrase is wrong, or the file was altered`,
    )
  })

  it('a vote on a closed proposal: exit 1, the node says it has no effect', async () => {
    const r = await run('alice', ['vote', ratification, 'no'], { node: nodes[0] })
    expect(r.code).toBe(1)
    expect(errorLine(r)).toMatch(
      /^allmende: the node holds bafy\w+ but it has no effect: the vote is signed outside \[proposal at, closesAt\] \(vote-window\)$/,
    )
    const shown = await proposalOn(nodes[0]!, ratification)
    expect(shown).toMatchObject({ status: 'final-passed', tally: { yes: 3, no: 0 } })
  })

  it('a publish by a non-publisher: exit 1, refused by the node', async () => {
    const r = await run(
      'alice',
      [
        '--json',
        ...publishArgs('model', { name: 'alice/model', version: '1.0.0', license: 'MIT', languages: 'en' }),
      ],
      { node: nodes[0] },
    )
    expect(r.code).toBe(1)
    expect(jsonError(r)).toEqual({
      code: 'not-a-publisher',
      message: `${dids.alice} is not a publisher in any governance state of this federation`,
    })
    const listed = ok<{ models: ModelEntry[] }>(
      await run('deployer', ['--json', 'model', 'list'], { node: nodes[0] }),
    )
    expect(listed.models.map((m) => m.name)).not.toContain('alice/model')
  })

  it('a missing directory: exit 1 for publish, verify and exec', async () => {
    const marker = join(dir, 'never.txt')
    const runs = await Promise.all([
      run(
        'publisher',
        [
          'model',
          'publish',
          'nowhere',
          '--name',
          NAME,
          '--version',
          '2.0.0',
          '--license',
          'MIT',
          '--language',
          'en',
        ],
        { node: nodes[0] },
      ),
      run('deployer', ['verify', 'nowhere', '--model', MODEL], { node: nodes[0] }),
      run('deployer', execArgs('nowhere', marker), {
        node: nodes[0],
      }),
    ])
    for (const r of runs) {
      expect(r.code).toBe(1)
      expect(errorLine(r)).toBe('allmende: nowhere is not a readable directory')
    }
    expect(existsSync(marker)).toBe(false)
  })

  it('a certificate for another federation: exit 1, cert-header (its header names another federation)', async () => {
    const other = ok<{ federation: string }>(
      await run('deployer', [
        '--json',
        'federation',
        'create',
        '--name',
        'Another federation',
        '--member',
        `${dids.deployer}:steward,voter`,
        '--out',
        'other.car',
      ]),
    )
    const message = `the header names another federation than ${other.federation}`
    const r = await run('deployer', verifyArgs(MODEL, 'deployed', 'ratified.car', other.federation))
    expect(r.code).toBe(1)
    expect(r.json<Verdict>()).toEqual({
      ok: false,
      status: 'unknown',
      problems: [{ code: 'cert-header', message }],
    })
    const marker = join(dir, 'never.txt')
    const e = await run(
      'deployer',
      execArgs('deployed', marker, { file: 'ratified.car', federation: other.federation }),
    )
    expect(e.code).toBe(1)
    expect(errorLine(e)).toBe(`allmende: refusing to run ${process.execPath}: cert-header: ${message}`)
    expect(existsSync(marker)).toBe(false)
  })

  it('a certificate older than the default --max-age (2 × the checkpoint interval): exit 1, cert-stale', async () => {
    // alice has never verified offline (no trust mark): only the age can refuse it. Exported
    // right after the ratification, it is long past 2 × 2 s by now.
    const args = [
      '--json',
      'verify',
      'deployed',
      '--model',
      MODEL,
      '--certificate',
      'ratified.car',
      '--federation',
      federation,
    ]
    const r = await run('alice', args)
    expect(r.code).toBe(1)
    const stale = r.json<Verdict>().problems.find((p) => p.code === 'cert-stale')
    expect(stale?.message).toMatch(/^the checkpoint is \d+ s old; at most 4 s are accepted$/)
    const marker = join(dir, 'never-stale.txt')
    const e = await run('alice', execArgs('deployed', marker, { file: 'ratified.car' }))
    expect(e.code).toBe(1)
    expect(errorLine(e)).toMatch(/cert-stale: the checkpoint is \d+ s old; at most 4 s are accepted/)
    expect(existsSync(marker)).toBe(false)
  })
})
