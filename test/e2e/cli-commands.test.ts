/**
 * The contributor and institution commands through the real binary (`npm run build` first):
 * three people found a federation, a node runs it, and they propose, vote, attest and look.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sha256 } from '@noble/hashes/sha2.js'
import { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadSigner } from '../../node/identity.js'
import { cidOfBlock, rawCidOfDigest, signRecord } from '../../protocol/index.js'
import { closedPort, nodeInitArgs, type Run, runCli } from '../support/cli.js'
import { type Daemon, postRecord, startDaemon } from '../support/daemon.js'
import { until } from '../support/until.js'

let dir: string
let daemon: Daemon | undefined
const home = (who: string) => join(dir, who)

function run(who: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runCli(args, { cwd: dir, home: home(who), node: daemon?.api, env })
}

/** Exit code and a one-line error, the way a script sees it. */
function oneLine(r: Run): string {
  expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1)
  expect(r.stderr).not.toMatch(/\n\s+at /)
  return r.stderr.trim()
}

const dids: Record<string, string> = {}
const carolEnv = { ALLMENDE_PASSPHRASE: 'correct horse battery staple' }

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'allmende-cli-commands-'))
})
afterAll(async () => {
  await daemon?.kill()
  await rm(dir, { recursive: true, force: true })
})

describe('allmende contributor and institution commands', () => {
  it('init: one identity per person, encrypted when a passphrase is set; never replaced', async () => {
    const [a, b, c, d] = await Promise.all([
      run('alice', ['--json', 'init']),
      run('bob', ['--json', 'init']),
      run('carol', ['--json', 'init'], carolEnv),
      run('dave', ['init']),
    ])
    for (const r of [a, b, c]) expect(r.code, r.stderr).toBe(0)
    dids.alice = a.json().did as string
    dids.bob = b.json().did as string
    dids.carol = c.json().did as string
    expect(c.json().encrypted).toBe(true)
    expect(d.code).toBe(0)
    expect(d.stdout).toMatch(/^identity did:key:z6Mk/)
    dids.dave = d.stdout.split('\n')[0]!.split(' ')[1]!
    const file = JSON.parse(await readFile(join(home('carol'), 'identity.json'), 'utf8'))
    expect(file.ciphertext).toBeTypeOf('string')
    const again = await run('alice', ['--json', 'init'])
    expect(again.code).toBe(1)
    expect(JSON.parse(oneLine(again)).error.code).toBe('key-exists')
  })

  it('federation create: bad member specs and durations are usage errors (exit 2)', async () => {
    const base = ['federation', 'create', '--name', 'x', '--out', 'bad.car']
    const spec = await run('alice', [...base, '--member', `${dids.alice}:steward,admin`])
    expect(spec.code).toBe(2)
    expect(oneLine(spec)).toMatch(/unknown role "admin"/)
    const dur = await run('alice', [
      ...base,
      '--member',
      `${dids.alice}:steward,voter`,
      '--voting-period',
      '1.5h',
    ])
    expect(dur.code).toBe(2)
    expect(oneLine(dur)).toMatch(/--voting-period: not a duration/)
    const ill = await run('alice', [
      '--json',
      ...base,
      '--member',
      `${dids.alice}:steward,voter`,
      '--seal-grace',
      '1h',
      '--voting-period',
      '1h',
    ])
    expect(ill.code).toBe(2)
    expect(JSON.parse(oneLine(ill)).error.message).toMatch(
      /voting period must be longer than twice the seal grace/,
    )
    const stranger = await run('dave', [...base, '--member', `${dids.alice}:steward,voter`])
    expect(stranger.code).toBe(2)
    expect(oneLine(stranger)).toMatch(/not among the --member list/)
    const missing = await run('alice', ['federation', 'create', '--name', 'x'])
    expect(missing.code).toBe(2)
  })

  it('federation create → cosign → show; a node takes the genesis only once complete', async () => {
    const created = await run('alice', [
      '--json',
      'federation',
      'create',
      '--name',
      'CLI test federation',
      '--member',
      `${dids.alice}:steward,voter`,
      '--member',
      `${dids.bob}:steward,voter:2`,
      '--member',
      `${dids.carol}:auditor,publisher,voter`,
      '--rule',
      'ratify-model:quorum=1/2,threshold=2/3',
      '--require',
      'ratify-model:eval=1',
      // Long enough for the CLI runs below to finish before it closes, on a loaded machine too.
      '--voting-period',
      '15s',
      '--seal-grace',
      '1s',
      '--weights-deadline',
      '20s',
      '--seal-deadline',
      '30s',
      '--out',
      'genesis.car',
    ])
    expect(created.code, created.stderr).toBe(0)
    const fed = created.json()
    expect(fed).toMatchObject({ file: join(dir, 'genesis.car'), missing: [dids.bob], complete: false })
    const federation = fed.federation as string
    expect(CID.parse(federation).toString()).toBe(federation)

    const early = await run('alice', [
      'node',
      'init',
      '--federation',
      'genesis.car',
      '--home',
      join(dir, 'early'),
    ])
    expect(early.code).toBe(1)
    expect(oneLine(early)).toMatch(/has not co-signed/)

    const notSteward = await run('carol', ['--json', 'federation', 'cosign', 'genesis.car'], carolEnv)
    expect(notSteward.code).toBe(1)
    expect(JSON.parse(oneLine(notSteward)).error.code).toBe('cosign-not-steward')
    const cosigned = await run('bob', ['--json', 'federation', 'cosign', 'genesis.car'])
    expect(cosigned.code, cosigned.stderr).toBe(0)
    expect(cosigned.json()).toMatchObject({ federation, cosigners: [dids.bob], missing: [], complete: true })

    const show = await run('dave', ['--json', 'federation', 'show', 'genesis.car'])
    expect(show.code).toBe(0)
    const shown = show.json() as { members: { id: string; weight: number }[]; rules: Record<string, unknown> }
    expect(shown).toMatchObject({ federation, name: 'CLI test federation', complete: true, missing: [] })
    expect(shown.members.find((m) => m.id === dids.bob)?.weight).toBe(2)
    expect(shown.rules).toMatchObject({
      votingPeriodMs: 15_000,
      sealThreshold: 2,
      actions: {
        'ratify-model': {
          quorum: [1, 2],
          threshold: [2, 3],
          requiredAttestations: [{ kind: 'eval', min: 1 }],
        },
      },
    })
    const text = await run('dave', ['federation', 'show', 'genesis.car'])
    expect(text.stdout).toMatch(/\(co-signed\)/)

    const init = await run('alice', [
      '--json',
      ...nodeInitArgs('genesis.car', join(dir, 'node')),
      '--steward-key',
      join(home('alice'), 'identity.json'),
      '--import-root',
      join(dir, 'models'),
    ])
    expect(init.code, init.stderr).toBe(0)
    expect(init.json().federation).toBe(federation)
    const config = JSON.parse(await readFile(join(dir, 'node', 'config.json'), 'utf8'))
    expect(config.importRoots).toEqual([join(dir, 'models')])
    daemon = await startDaemon(join(dir, 'node'))

    const status = await run('dave', ['--json', 'node', 'status'])
    expect(status.code, status.stderr).toBe(0)
    expect(status.json()).toMatchObject({
      peerId: daemon.peerId,
      federation,
      steward: dids.alice,
      head: federation,
    })
    expect(status.json().records).toBeGreaterThanOrEqual(1)
    const peers = await run('dave', ['--json', 'node', 'peers'])
    expect(peers.json()).toEqual({ peers: [] })
  }, 60_000)

  it('propose admit, vote, proposals, proposal show', async () => {
    const short = await run(
      'carol',
      ['propose', 'admit', dids.dave!, '--roles', 'voter', '--closes', '1s'],
      carolEnv,
    )
    expect(short.code).toBe(2)
    expect(oneLine(short)).toMatch(/shorter than the federation's voting period \(15s\)/)

    const proposed = await run(
      'carol',
      ['--json', 'propose', 'admit', dids.dave!, '--roles', 'voter'],
      carolEnv,
    )
    expect(proposed.code, proposed.stderr).toBe(0)
    const id = proposed.json().proposal as string
    expect(proposed.json()).toMatchObject({ status: 'applied', basis: (await status()).federation })

    const votes = await Promise.all([
      run('alice', ['--json', 'vote', id, 'yes']),
      run('bob', ['--json', 'vote', id, 'no', '--reason', 'not yet']),
    ])
    for (const v of votes) expect(v.code, v.stderr).toBe(0)
    expect(votes[1]!.json()).toMatchObject({ proposal: id, choice: 'no', status: 'applied' })
    // Bob changes his mind: his latest vote counts.
    expect((await run('bob', ['vote', id, 'yes'])).code).toBe(0)

    // Dave is no member: the node does not take his vote, and says why.
    const outsider = await run('dave', ['--json', 'vote', id, 'yes'])
    expect(outsider.code).toBe(1)
    expect(JSON.parse(oneLine(outsider)).error.code).toBe('unknown-author')
    const badChoice = await run('alice', ['vote', id, 'maybe'])
    expect(badChoice.code).toBe(2)

    const shown = await run('dave', ['--json', 'proposal', 'show', id])
    expect(shown.code, shown.stderr).toBe(0)
    expect(shown.json()).toMatchObject({
      id,
      status: 'open',
      action: { type: 'admit-member', member: { id: dids.dave, roles: ['voter'], weight: 1 } },
      tally: { yes: 3, no: 0, abstain: 0 },
      eligible: 4,
      quorumNeeded: 2,
      quorumMet: true,
    })
    const text = await run('dave', ['proposal', 'show', id])
    expect(text.stdout).toMatch(/tally +yes 3, no 0, abstain 0 \(3 of 4 eligible weight\)/)
    expect(text.stdout).toMatch(/quorum +2 needed, met/)
    expect(text.stdout).toMatch(/closes .* \(in \d+s\)/)

    const open = await run('dave', ['--json', 'proposals', '--open'])
    expect((open.json().proposals as { id: string }[]).map((p) => p.id)).toEqual([id])
    const table = await run('dave', ['proposals'])
    expect(table.stdout.split('\n')[0]).toMatch(/^ID +STATUS +ACTION/)
    expect(table.stdout).toContain(id)

    // After closing, with one steward node of the two a decision needs, it awaits seals. The close
    // is a moment on the wall clock: wait for it to pass, then for the node to see it closed.
    const closesAt = proposed.json().closesAt as number
    await until(() => Date.now() > closesAt, 'the close of the voting period', 30_000, 100)
    await until(
      async () => (await run('dave', ['--json', 'proposal', 'show', id])).json().status !== 'open',
      'the node to see the proposal closed',
      30_000,
      250,
    )
    const closed = await run('dave', ['proposal', 'show', id])
    expect(closed.stdout).toMatch(/status +closed-awaiting-seals/)
    expect(closed.stdout).toMatch(/seals +awaited from the stewards until/)
    expect((await run('dave', ['--json', 'proposals', '--open'])).json()).toEqual({ proposals: [] })
  }, 60_000)

  it('a vote on a proposal the node does not know is taken as pending', async () => {
    const unknown = cidOfBlock(new Uint8Array(randomBytes(8))).toString()
    const r = await run('alice', ['--json', 'vote', unknown, 'abstain'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json()).toMatchObject({ proposal: unknown, status: 'pending' })
    const shown = await run('alice', ['--json', 'proposal', 'show', unknown])
    expect(shown.code).toBe(1)
    expect(JSON.parse(oneLine(shown)).error.code).toBe('unknown-proposal')
  })

  it('model show, attest and propose ratify on a manifest the node holds', async () => {
    const none = await run('dave', ['--json', 'model', 'show', 'tiny-de@1.0.0'])
    expect(none.code).toBe(1)
    expect(JSON.parse(oneLine(none)).error.code).toBe('unknown-model')
    expect((await run('dave', ['model', 'show', 'no-version'])).code).toBe(2)

    // `model publish` is another command's job: a manifest signed here stands in for it.
    const carol = await loadSigner(join(home('carol'), 'identity.json'), {
      passphrase: carolEnv.ALLMENDE_PASSPHRASE,
    })
    const { federation } = await status()
    const digest = sha256(new TextEncoder().encode('tiny weights'))
    const manifest = signRecord(
      {
        kind: 'manifest',
        federation: CID.parse(federation),
        at: Date.now(),
        body: {
          name: 'tiny-de',
          version: '1.0.0',
          weights: rawCidOfDigest(digest),
          cidProfile: 'unixfs-v1-2025',
          files: [{ path: 'model.safetensors', size: 12, sha256: digest }],
          size: 12,
          format: 'safetensors',
          license: 'Apache-2.0',
          languages: ['de'],
        },
      },
      carol,
    )
    expect(await postRecord(daemon!.api, manifest.bytes)).toBe(201)

    const show = await run('dave', ['--json', 'model', 'show', 'tiny-de@1.0.0'])
    expect(show.code, show.stderr).toBe(0)
    expect(show.json()).toMatchObject({
      name: 'tiny-de',
      version: '1.0.0',
      status: 'proposed',
      manifest: null,
      proposal: null,
    })
    const strict = await run('dave', ['model', 'show', 'tiny-de@1.0.0', '--ratified'])
    expect(strict.code).toBe(1)
    expect(strict.stderr).toMatch(/is proposed, not ratified/)
    const list = await run('dave', ['--json', 'model', 'list'])
    expect(list.json()).toMatchObject({ models: [{ name: 'tiny-de', version: '1.0.0', status: 'proposed' }] })

    // The attestation of a passing eval of tiny-de@1.0.0.
    const passingEval = ['attest', 'tiny-de@1.0.0', '--kind', 'eval', '--result', 'pass']
    const badMetric = await run('carol', [...passingEval, '--metric', 'acc=0.9'], carolEnv)
    expect(badMetric.code).toBe(2)
    // Carol's key is encrypted: without a passphrase it stays locked; a passphrase file opens it.
    const locked = await run('carol', ['--json', ...passingEval])
    expect(locked.code).toBe(1)
    expect(JSON.parse(oneLine(locked)).error.code).toBe('key-passphrase-required')
    await writeFile(join(dir, 'carol.pass'), `${carolEnv.ALLMENDE_PASSPHRASE}\n`, { mode: 0o600 })
    const attested = await run('carol', [
      '--json',
      ...passingEval,
      '--metric',
      'accuracy_permille=873',
      '--passphrase-file',
      join(dir, 'carol.pass'),
    ])
    expect(attested.code, attested.stderr).toBe(0)
    expect(attested.json()).toMatchObject({
      subject: manifest.cid.toString(),
      kind: 'eval',
      status: 'applied',
    })
    // Bob is no auditor: the node holds the record but it has no effect, and the CLI says so.
    const notAuditor = await run('bob', ['--json', ...passingEval])
    expect(notAuditor.code).toBe(1)
    expect(JSON.parse(oneLine(notAuditor)).error.message).toMatch(/no effect/)

    const ratify = await run('alice', ['--json', 'propose', 'ratify', 'tiny-de@1.0.0', '--closes', '1h'])
    expect(ratify.code, ratify.stderr).toBe(0)
    const p = await run('dave', ['--json', 'proposal', 'show', ratify.json().proposal as string])
    expect(p.json()).toMatchObject({
      status: 'open',
      title: 'ratify tiny-de@1.0.0',
      action: { type: 'ratify-model', manifest: manifest.cid.toString() },
    })
  }, 30_000)

  it('a node that cannot be reached is exit 3, one line naming the URL', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`
    const r = await run('dave', ['node', 'status', '--node', url])
    expect(r.code).toBe(3)
    expect(oneLine(r)).toMatch(new RegExp(`cannot reach the node at ${url}`))
    const j = await run('alice', ['--json', 'vote', (await status()).federation, 'yes'], {
      ALLMENDE_NODE: url,
    })
    expect(j.code).toBe(3)
    expect(JSON.parse(oneLine(j)).error.code).toBe('node-unreachable')

    // `node import` takes the node's address from its home, so the message says where it is set.
    const port = await closedPort()
    const down = join(dir, 'down')
    const init = await run('bob', nodeInitArgs('genesis.car', down, `127.0.0.1:${port}`))
    expect(init.code, init.stderr).toBe(0)
    const imp = await run('bob', ['node', 'import', dir, '--home', down])
    expect(imp.code).toBe(3)
    expect(oneLine(imp)).toBe(
      `allmende: cannot reach the node at http://127.0.0.1:${port} (ECONNREFUSED); is it running? (its address is "api" in ${join(down, 'config.json')})`,
    )
  })
})

async function status(): Promise<{ federation: string }> {
  return (await (await fetch(`${daemon!.api}/status`)).json()) as { federation: string }
}
