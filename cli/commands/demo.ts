/**
 * `allmende demo` (DESIGN.md §7): the whole story in one process on loopback. Four steward nodes
 * at seal threshold 3 (one dishonest steward is tolerated), a generated safetensors model published
 * by a publisher, an auditor's eval, a ratify proposal, votes, seals the stewards make on their
 * own, a counted checkpoint, a certificate verified offline with only the federation id, and one
 * flipped byte that verification names. Every step is narrated (one JSON object a step with
 * --json); the temporary directory is removed at the end, on errors and on Ctrl-C.
 */
import { randomBytes } from 'node:crypto'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Command } from 'commander'
import type { CID } from 'multiformats/cid'
import { initHome } from '../../node/config.js'
import { createKeyFile, loadSigner, type Signer } from '../../node/identity.js'
import { silentLogger } from '../../node/log.js'
import { type AllmendeNode, startNode } from '../../node/node.js'
import { verifyModel } from '../../node/verify-model.js'
import { CID_PROFILE, importDirectory } from '../../node/weights/directory.js'
import { describeModel } from '../../node/weights/headers.js'
import {
  type AnyVerified,
  cosignGenesis,
  federationIdOf,
  type Member,
  type Rules,
  signRecord,
  wellFormedProblem,
} from '../../protocol/index.js'
import { action, type Ctx, examples } from '../context.js'
import { identityPath } from '../homes.js'
import { generateModel } from '../demo-model.js'
import { uploadHeaders, writeCar } from './publish.js'

const STEWARDS = ['steward-1', 'steward-2', 'steward-3', 'steward-4'] as const
const MODEL = { name: 'demo/tiny-llama', version: '1.0.0' }
const KEY = `${MODEL.name}@${MODEL.version}`

const RULES: Rules = {
  votingPeriodMs: 4_000,
  sealThreshold: 3,
  sealGraceMs: 1_000,
  weightsDeadlineMs: 2_000,
  sealDeadlineMs: 6_000,
  checkpointIntervalMs: 2_000,
  maxModelBytes: 2 ** 30,
  maxOpenProposalsPerAuthor: 10,
  actions: {
    'ratify-model': { quorum: [1, 2], threshold: [2, 3], requiredAttestations: [{ kind: 'eval', min: 1 }] },
    '*': { quorum: [1, 2], threshold: [1, 2], requiredAttestations: [] },
  },
}

class DemoFailure extends Error {}

/** Set on Ctrl-C: every wait gives up at once. */
let interrupted = false

async function until(check: () => boolean, what: string, timeoutMs: number, onTick?: () => void) {
  const deadline = Date.now() + timeoutMs
  let last = 0
  while (!check()) {
    if (interrupted) throw new DemoFailure('interrupted')
    if (Date.now() > deadline)
      throw new DemoFailure(`timed out after ${timeoutMs / 1000} s waiting for ${what}`)
    if (onTick && Date.now() - last >= 1_000) {
      last = Date.now()
      onTick()
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}

async function post(node: AllmendeNode, record: AnyVerified): Promise<void> {
  const res = await fetch(`${node.apiUrl}/records`, {
    method: 'POST',
    headers: { 'content-type': 'application/cbor' },
    body: Buffer.from(record.bytes),
  })
  if (res.status !== 201 && res.status !== 200)
    throw new DemoFailure(`the node refused a ${record.record.kind}: ${res.status} ${await res.text()}`)
}

class MapBlockstore {
  readonly blocks = new Map<string, { cid: CID; bytes: Uint8Array }>()
  async put(cid: CID, bytes: Uint8Array): Promise<CID> {
    this.blocks.set(cid.toString(), { cid, bytes })
    return cid
  }
}

async function demo(ctx: Ctx): Promise<'ok' | 'failed' | 'interrupted'> {
  const started = Date.now()
  let n = 0
  const step = (name: string, lines: readonly string[], data: Record<string, unknown> = {}) => {
    n += 1
    const seconds = Math.round((Date.now() - started) / 100) / 10
    ctx.out({ step: n, name, seconds, ...data }, [
      `[${n}] ${lines[0]}`,
      ...lines.slice(1).map((l) => `    ${l}`),
    ])
  }
  const progress = (name: string, text: string, data: Record<string, unknown>) => {
    const seconds = Math.round((Date.now() - started) / 100) / 10
    ctx.out({ progress: name, seconds, ...data }, `    … ${text}`)
  }

  const root = await mkdtemp(join(tmpdir(), 'allmende-demo-'))
  const nodes: AllmendeNode[] = []
  let cleaned = false
  const cleanup = async () => {
    if (cleaned) return
    cleaned = true
    await Promise.allSettled(nodes.map((x) => x.stop()))
    await rm(root, { recursive: true, force: true })
  }
  const onSignal = () => {
    interrupted = true
    ctx.note('interrupted: stopping the nodes and removing the temporary directory')
    void cleanup()
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    // 1. Identities and the genesis.
    const signers = new Map<string, Signer>()
    const keyFiles = new Map<string, string>()
    for (const who of [...STEWARDS, 'publisher', 'auditor', 'voter']) {
      const file = join(root, 'keys', `${who}.key`)
      await createKeyFile(file)
      keyFiles.set(who, file)
      signers.set(who, await loadSigner(file))
    }
    const s = (who: string) => signers.get(who)!
    const members: Member[] = [
      ...STEWARDS.map((w) => ({ id: s(w).did, roles: ['steward', 'voter'] as Member['roles'], weight: 1 })),
      { id: s('publisher').did, roles: ['publisher'] as Member['roles'], weight: 1 },
      { id: s('auditor').did, roles: ['auditor'] as Member['roles'], weight: 1 },
      { id: s('voter').did, roles: ['voter'] as Member['roles'], weight: 1 },
    ].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    const problem = wellFormedProblem(members, RULES)
    if (problem) throw new DemoFailure(`the demo federation is not well-formed: ${problem}`)
    const body = { name: 'allmende demo', members, rules: RULES, nonce: new Uint8Array(randomBytes(16)) }
    const at = Date.now()
    const founder = s(STEWARDS[0])
    const unsigned = { v: 1 as const, kind: 'genesis' as const, author: founder.did, at, body }
    const cosigs = STEWARDS.slice(1)
      .map((w) => cosignGenesis(unsigned, s(w)))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    const genesis = signRecord({ kind: 'genesis', at, body }, founder, { cosigs })
    const federation = federationIdOf(genesis.record)
    step(
      'genesis',
      [
        'Created 7 Ed25519 identities (4 stewards, a publisher, an auditor, a voter) and the genesis.',
        `All four founding stewards co-signed it; its hash is the federation id ${federation}.`,
        'That id is all a deployer needs to trust later: everything else chains back to it.',
      ],
      {
        federation: federation.toString(),
        members: members.length,
        sealThreshold: RULES.sealThreshold,
        dir: root,
      },
    )

    // 2. Four steward nodes.
    for (const [i, w] of STEWARDS.entries()) {
      const home = join(root, w)
      const config = await initHome(home, {
        genesis,
        listen: ['/ip4/127.0.0.1/tcp/0'],
        bootstrap: i === 0 ? [] : [nodes[0]!.p2p.addresses()[0]!],
        api: '127.0.0.1:0',
        stewardKeyFile: keyFiles.get(w)!,
        logLevel: 'warn',
      })
      nodes.push(
        await startNode({
          home,
          config,
          genesis,
          log: silentLogger,
          helia: true,
          stewardTickMs: 100,
          sync: { intervalMs: 1_000 },
          privateFiles: [identityPath()],
        }),
      )
    }
    await until(() => nodes.every((x) => x.p2p.subscribers().length >= 1), 'the nodes to connect', 20_000)
    step(
      'nodes',
      [
        'Started four steward nodes on 127.0.0.1, gossiping records peer to peer.',
        'A decision needs the seals of 3 of them, so one dishonest or offline steward cannot decide alone or block.',
      ],
      { nodes: nodes.map((x) => x.apiUrl) },
    )

    // 3. A model.
    const modelDir = join(root, 'model')
    const generated = await generateModel(modelDir, { seed: 7, layers: 2, hidden: 64, vocab: 256 })
    step(
      'model',
      [
        `Generated a small safetensors model: ${generated.files.length} files, ${generated.bytes} bytes, ${generated.parameters} parameters.`,
      ],
      { files: generated.files, bytes: generated.bytes },
    )

    // 4. Publish: weights to every steward, then the signed manifest.
    const store = new MapBlockstore()
    const imported = await importDirectory(modelDir, { blockstore: store })
    const described = await describeModel(modelDir, imported.files)
    const car = await writeCar(imported.root, store.blocks.values())
    for (const node of nodes) {
      const res = await fetch(`${node.apiUrl}/weights`, {
        method: 'POST',
        // Each node gets its own statement: one signed for another node, or used twice, is refused.
        headers: uploadHeaders(
          s('publisher'),
          { federation, peerId: node.p2p.peerId },
          imported.root,
          imported.size,
        ),
        body: Buffer.from(car),
      })
      if (!res.ok) throw new DemoFailure(`weights upload refused: ${res.status} ${await res.text()}`)
    }
    const manifest = signRecord(
      {
        kind: 'manifest',
        federation,
        at: Date.now(),
        body: {
          name: MODEL.name,
          version: MODEL.version,
          weights: imported.root,
          cidProfile: CID_PROFILE,
          files: imported.files,
          size: imported.size,
          format: described.format,
          ...(described.parameters !== undefined ? { parameters: described.parameters } : {}),
          license: 'Apache-2.0',
          languages: ['de', 'en'],
        },
      },
      s('publisher'),
    )
    await post(nodes[0]!, manifest)
    step(
      'publish',
      [
        `The publisher uploaded the weights (UnixFS root ${imported.root}) to the stewards and signed a manifest`,
        `listing every file's sha256: ${KEY} is now known, but not yet trusted.`,
      ],
      { manifest: manifest.cid.toString(), weights: imported.root.toString() },
    )

    // 5. The auditor attests.
    const attestation = signRecord(
      {
        kind: 'attestation',
        federation,
        at: Date.now(),
        body: { subject: manifest.cid, kind: 'eval', result: 'pass' },
      },
      s('auditor'),
    )
    await post(nodes[0]!, attestation)
    step(
      'attest',
      ['The auditor signed a passing eval attestation: the rules require one before ratification.'],
      {
        attestation: attestation.cid.toString(),
      },
    )

    // 6. Propose ratify.
    const pAt = Date.now()
    const closesAt = pAt + RULES.votingPeriodMs + 500
    const proposal = signRecord(
      {
        kind: 'proposal',
        federation,
        at: pAt,
        body: {
          action: { type: 'ratify-model', manifest: manifest.cid },
          basis: federation,
          closesAt,
          title: `ratify ${KEY}`,
        },
      },
      s(STEWARDS[0]),
    )
    await post(nodes[0]!, proposal)
    step(
      'propose',
      [`A steward proposed to ratify ${KEY}; voting closes in ${Math.round((closesAt - pAt) / 1000)} s.`],
      { proposal: proposal.cid.toString(), closesAt },
    )

    // 7. Votes.
    const voters = [STEWARDS[0], STEWARDS[1], STEWARDS[2], 'voter']
    for (const [i, w] of voters.entries()) {
      const v = signRecord(
        { kind: 'vote', federation, at: Date.now(), body: { proposal: proposal.cid, choice: 'yes' } },
        s(w),
      )
      await post(nodes[i % nodes.length]!, v)
    }
    step(
      'vote',
      [
        `${voters.length} of 5 voters voted yes, each signing its own vote and sending it to a different node.`,
        'Quorum is half the voting weight, the threshold two thirds of the votes cast.',
      ],
      { votes: voters.length, choice: 'yes' },
    )

    // 8. Stewards seal on their own.
    const pid = proposal.cid.toString()
    const seals = () => {
      const by = new Set<string>()
      for (const r of nodes[0]!.store.fold.records())
        if (r.record.kind === 'seal' && r.record.body.proposal.toString() === pid) by.add(r.record.author)
      return by.size
    }
    const view = (x: AllmendeNode) =>
      [...x.store.fold.state().proposals.values()].find((v) => v.cid.toString() === pid)
    const phase = (x: AllmendeNode) => view(x)?.phase
    const reason = (x: AllmendeNode) => {
      const r = view(x)?.reason
      return r ? `: ${r.message}` : ''
    }
    await until(
      () => nodes.every((x) => phase(x) === 'final-passed'),
      'the stewards to seal the proposal',
      30_000,
      () => {
        const left = closesAt - Date.now()
        progress(
          'seal',
          left > 0
            ? `voting open, closes in ${Math.ceil(left / 1000)} s`
            : `voting closed; seals so far: ${seals()} of ${RULES.sealThreshold} needed (${phase(nodes[0]!)}${reason(nodes[0]!)})`,
          { seals: seals(), closesInMs: Math.max(0, left) },
        )
      },
    )
    step(
      'seal',
      [
        `After the close (and a short grace period) the stewards each checked the weights and sealed the tally: ${seals()} seals.`,
        `With ${RULES.sealThreshold} agreeing seals the proposal passed on every node: nobody had to press a button.`,
      ],
      { seals: seals(), phase: 'final-passed', weightsVerified: view(nodes[0]!)?.weightsVerified },
    )

    // 9. A counted checkpoint.
    await until(
      () => nodes.every((x) => (x.store.fold.state().checkpoint?.epoch ?? 0) >= closesAt),
      'a checkpoint after the close',
      30_000,
      () => progress('checkpoint', 'waiting for the stewards to sign a checkpoint', {}),
    )
    const cp0 = nodes[0]!.store.fold.state().checkpoint!
    step(
      'checkpoint',
      [
        `The stewards signed checkpoint #${cp0.height} (${cp0.signers.length} signers): a dated snapshot of the state.`,
        'It lets an offline deployer tell a fresh answer from a stale or rolled-back one.',
      ],
      { height: cp0.height, signers: cp0.signers.length },
    )

    // 10. Export the certificate.
    const res = await fetch(`${nodes[2]!.apiUrl}/certificates/${encodeURIComponent(KEY)}`)
    if (res.status !== 200)
      throw new DemoFailure(`certificate export failed: ${res.status} ${await res.text()}`)
    const certificate = new Uint8Array(await res.arrayBuffer())
    const certFile = join(root, 'certificate.car')
    await writeFile(certFile, certificate)
    step(
      'certificate',
      [
        `Exported the certificate of ${KEY} from another steward: ${certificate.length} bytes (a CAR file).`,
        'It holds the genesis, the manifest, the proposal, the seals and the checkpoint: the proof, self-contained.',
      ],
      { bytes: certificate.length },
    )

    // 11. Verify offline.
    const copy = join(root, 'deployer')
    await cp(modelDir, copy, { recursive: true })
    const good = await verifyModel(copy, {
      model: KEY,
      certificate: await readFile(certFile),
      federation: federation.toString(),
      maxAgeMs: 60_000,
      cid: true,
    })
    step(
      'verify',
      good.ok
        ? [
            `A deployer with only the federation id verified its copy offline: ${good.status}, every file's sha256 and the root match.`,
          ]
        : [`Offline verification FAILED unexpectedly: ${good.problems.map((p) => p.message).join('; ')}`],
      { ok: good.ok, status: good.status, problems: good.problems },
    )
    if (!good.ok) return 'failed'

    // 12. Tamper.
    const weightFile = generated.files.find((f) => f.endsWith('.safetensors'))!
    const bytes = await readFile(join(copy, weightFile))
    const at1 = bytes.length - 1
    bytes[at1] = bytes[at1]! ^ 0x01
    await writeFile(join(copy, weightFile), bytes)
    const bad = await verifyModel(copy, {
      model: KEY,
      certificate: await readFile(certFile),
      federation: federation.toString(),
      maxAgeMs: 60_000,
    })
    const named = bad.problems.find((p) => p.path === weightFile)
    const caught = !bad.ok && named !== undefined
    step(
      'tamper',
      caught
        ? [
            `Flipped one bit in ${weightFile}: verification fails and names the file (${named.code}).`,
            'An inference server that verifies first would refuse to load it.',
          ]
        : ['Changed one byte of a weight file, but verification did NOT catch it.'],
      { ok: bad.ok, file: weightFile, problems: bad.problems },
    )
    if (!caught) return 'failed'

    await cleanup()
    step('cleanup', ['Stopped the four nodes and removed the temporary directory.'], { removed: root })
    ctx.out(
      { done: true, ok: true, seconds: Math.round((Date.now() - started) / 100) / 10 },
      `Done in ${Math.round((Date.now() - started) / 100) / 10} s: every step behaved as expected.`,
    )
    return 'ok'
  } catch (e) {
    const message = (e as Error)?.message ?? String(e)
    if (interrupted) return 'interrupted'
    ctx.out({ error: message, ok: false }, `demo failed: ${message}`)
    return 'failed'
  } finally {
    await cleanup()
    // Again: work in flight when Ctrl-C came may have written into the directory since.
    await rm(root, { recursive: true, force: true })
    process.removeListener('SIGINT', onSignal)
    process.removeListener('SIGTERM', onSignal)
  }
}

export function registerDemo(cli: Command): Command {
  const cmd = cli
    .command('demo')
    .description('run a 4-steward federation on loopback and walk through the whole story (under a minute)')
  examples(cmd, ['allmende demo', 'allmende --json demo'])
  cmd.action(
    action<Record<string, never>>(async (ctx) => {
      const result = await demo(ctx)
      process.exit(result === 'ok' ? 0 : result === 'interrupted' ? 130 : 1)
    }),
  )
  return cmd
}
