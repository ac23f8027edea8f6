/**
 * `allmende demo`: the whole story in one process on loopback. Four steward nodes at seal
 * threshold 3 (one dishonest steward is tolerated; the federation is cli/demo-federation.ts), a
 * generated safetensors model published by a publisher, an auditor's eval, a ratify proposal,
 * votes, seals the stewards make on their own, a counted checkpoint, a certificate verified
 * offline with only the federation id, and one flipped byte that verification names. Every step
 * is narrated (one JSON object a step with --json); the temporary directory is removed at the
 * end, on errors and on Ctrl-C.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Command } from 'commander'
import type { CID } from 'multiformats/cid'
import { type AllmendeNode, verifyModel } from '../../node/index.js'
import { CID_PROFILE, describeModel, importDirectory } from '../../node/weights/index.js'
import { signRecord } from '../../protocol/index.js'
import { action, type Ctx, examples } from '../context.js'
import {
  DemoFailure,
  type DemoRun,
  demoRun,
  type Federation,
  foundFederation,
  post,
  RULES,
  STEWARDS,
  startStewardNodes,
  until,
} from '../demo-federation.js'
import { generateModel } from '../demo-model.js'
import { uploadHeaders, writeCar } from './publish.js'

const MODEL = { name: 'demo/tiny-llama', version: '1.0.0' }
const KEY = `${MODEL.name}@${MODEL.version}`

class MapBlockstore {
  readonly blocks = new Map<string, { cid: CID; bytes: Uint8Array }>()
  async put(cid: CID, bytes: Uint8Array): Promise<CID> {
    this.blocks.set(cid.toString(), { cid, bytes })
    return cid
  }
}

/** What every step of a run shares: the narration, the temporary directory and the nodes. */
async function publishModel(run: DemoRun, fed: Federation) {
  const modelDir = join(run.root, 'model')
  const generated = await generateModel(modelDir, { seed: 7, layers: 2, hidden: 64, vocab: 256 })
  run.step(
    'model',
    [
      `Generated a small safetensors model: ${generated.files.length} files, ${generated.bytes} bytes, ${generated.parameters} parameters.`,
    ],
    { files: generated.files, bytes: generated.bytes },
  )
  const publisher = fed.signers.get('publisher')!
  const store = new MapBlockstore()
  const imported = await importDirectory(modelDir, { blockstore: store })
  const described = await describeModel(modelDir, imported.files)
  const car = await writeCar(imported.root, store.blocks.values())
  for (const node of run.nodes) {
    const res = await fetch(`${node.apiUrl}/weights`, {
      method: 'POST',
      // Each node gets its own statement: one signed for another node, or used twice, is refused.
      headers: uploadHeaders(
        publisher,
        { federation: fed.federation, peerId: node.p2p.peerId },
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
      federation: fed.federation,
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
    publisher,
  )
  await post(run.nodes[0]!, manifest)
  run.step(
    'publish',
    [
      `The publisher uploaded the weights (UnixFS root ${imported.root}) to the stewards and signed a manifest`,
      `listing every file's sha256: ${KEY} is now known, but not yet trusted.`,
    ],
    { manifest: manifest.cid.toString(), weights: imported.root.toString() },
  )
  return { modelDir, generated, manifest }
}

/** 5 to 7. The auditor's eval, a steward's ratify proposal, and yes votes sent to different nodes. */
async function attestProposeVote(run: DemoRun, fed: Federation, manifest: CID) {
  const s = (who: string) => fed.signers.get(who)!
  const { federation, nodes } = { federation: fed.federation, nodes: run.nodes }
  const attestation = signRecord(
    {
      kind: 'attestation',
      federation,
      at: Date.now(),
      body: { subject: manifest, kind: 'eval', result: 'pass' },
    },
    s('auditor'),
  )
  await post(nodes[0]!, attestation)
  run.step(
    'attest',
    ['The auditor signed a passing eval attestation: the rules require one before ratification.'],
    { attestation: attestation.cid.toString() },
  )
  const pAt = Date.now()
  const closesAt = pAt + RULES.votingPeriodMs + 500
  const proposal = signRecord(
    {
      kind: 'proposal',
      federation,
      at: pAt,
      body: {
        action: { type: 'ratify-model', manifest },
        basis: federation,
        closesAt,
        title: `ratify ${KEY}`,
      },
    },
    s(STEWARDS[0]),
  )
  await post(nodes[0]!, proposal)
  run.step(
    'propose',
    [`A steward proposed to ratify ${KEY}; voting closes in ${Math.round((closesAt - pAt) / 1000)} s.`],
    { proposal: proposal.cid.toString(), closesAt },
  )
  const voters = [STEWARDS[0], STEWARDS[1], STEWARDS[2], 'voter']
  for (const [i, w] of voters.entries()) {
    const v = signRecord(
      { kind: 'vote', federation, at: Date.now(), body: { proposal: proposal.cid, choice: 'yes' } },
      s(w),
    )
    await post(nodes[i % nodes.length]!, v)
  }
  run.step(
    'vote',
    [
      `${voters.length} of 5 voters voted yes, each signing its own vote and sending it to a different node.`,
      'Quorum is half the voting weight, the threshold two thirds of the votes cast.',
    ],
    { votes: voters.length, choice: 'yes' },
  )
  return { proposal: proposal.cid.toString(), closesAt }
}

/** 8. The stewards seal on their own after the close; waits until the proposal passed everywhere. */
async function awaitSeals(run: DemoRun, pid: string, closesAt: number): Promise<void> {
  const { nodes } = run
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
    run,
    () => nodes.every((x) => phase(x) === 'final-passed'),
    'the stewards to seal the proposal',
    30_000,
    () => {
      const left = closesAt - Date.now()
      run.progress(
        'seal',
        left > 0
          ? `voting open, closes in ${Math.ceil(left / 1000)} s`
          : `voting closed; seals so far: ${seals()} of ${RULES.sealThreshold} needed (${phase(nodes[0]!)}${reason(nodes[0]!)})`,
        { seals: seals(), closesInMs: Math.max(0, left) },
      )
    },
  )
  run.step(
    'seal',
    [
      `After the close (and a short grace period) the stewards each checked the weights and sealed the tally: ${seals()} seals.`,
      `With ${RULES.sealThreshold} agreeing seals the proposal passed on every node: nobody had to press a button.`,
    ],
    { seals: seals(), phase: 'final-passed', weightsVerified: view(nodes[0]!)?.weightsVerified },
  )
}

/** 9 and 10. A counted checkpoint after the close, then the certificate from another steward. */
async function checkpointAndCertificate(run: DemoRun, closesAt: number): Promise<string> {
  const { nodes } = run
  await until(
    run,
    () => nodes.every((x) => (x.store.fold.state().checkpoint?.epoch ?? 0) >= closesAt),
    'a checkpoint after the close',
    30_000,
    () => run.progress('checkpoint', 'waiting for the stewards to sign a checkpoint', {}),
  )
  const cp0 = nodes[0]!.store.fold.state().checkpoint!
  run.step(
    'checkpoint',
    [
      `The stewards signed checkpoint #${cp0.height} (${cp0.signers.length} signers): a dated snapshot of the state.`,
      'It lets an offline deployer tell a fresh answer from a stale or rolled-back one.',
    ],
    { height: cp0.height, signers: cp0.signers.length },
  )
  const res = await fetch(`${nodes[2]!.apiUrl}/certificates/${encodeURIComponent(KEY)}`)
  if (res.status !== 200)
    throw new DemoFailure(`certificate export failed: ${res.status} ${await res.text()}`)
  const certificate = new Uint8Array(await res.arrayBuffer())
  const certFile = join(run.root, 'certificate.car')
  await writeFile(certFile, certificate)
  run.step(
    'certificate',
    [
      `Exported the certificate of ${KEY} from another steward: ${certificate.length} bytes (a CAR file).`,
      'It holds the genesis, the manifest, the proposal, the seals and the checkpoint: the proof, self-contained.',
    ],
    { bytes: certificate.length },
  )
  return certFile
}

/** 11 and 12. A deployer's copy verified offline, then one flipped bit that verification names. */
async function verifyAndTamper(
  run: DemoRun,
  fed: Federation,
  model: { dir: string; files: readonly string[] },
  certFile: string,
): Promise<boolean> {
  const copy = join(run.root, 'deployer')
  await cp(model.dir, copy, { recursive: true })
  const good = await verifyModel(copy, {
    model: KEY,
    certificate: await readFile(certFile),
    federation: fed.federation.toString(),
    maxAgeMs: 60_000,
    cid: true,
  })
  run.step(
    'verify',
    good.ok
      ? [
          `A deployer with only the federation id verified its copy offline: ${good.status}, every file's sha256 and the root match.`,
        ]
      : [`Offline verification FAILED unexpectedly: ${good.problems.map((p) => p.message).join('; ')}`],
    { ok: good.ok, status: good.status, problems: good.problems },
  )
  if (!good.ok) return false
  const weightFile = model.files.find((f) => f.endsWith('.safetensors'))!
  const bytes = await readFile(join(copy, weightFile))
  const last = bytes.length - 1
  bytes[last] = bytes[last]! ^ 0x01
  await writeFile(join(copy, weightFile), bytes)
  const bad = await verifyModel(copy, {
    model: KEY,
    certificate: await readFile(certFile),
    federation: fed.federation.toString(),
    maxAgeMs: 60_000,
  })
  const named = bad.problems.find((p) => p.path === weightFile)
  const caught = !bad.ok && named !== undefined
  run.step(
    'tamper',
    caught
      ? [
          `Flipped one bit in ${weightFile}: verification fails and names the file (${named.code}).`,
          'An inference server that verifies first would refuse to load it.',
        ]
      : ['Changed one byte of a weight file, but verification did NOT catch it.'],
    { ok: bad.ok, file: weightFile, problems: bad.problems },
  )
  return caught
}

/** The steps in order; false when a check did not behave as the story says. */
async function story(run: DemoRun): Promise<boolean> {
  const fed = await foundFederation(run)
  await startStewardNodes(run, fed)
  const published = await publishModel(run, fed)
  const { proposal, closesAt } = await attestProposeVote(run, fed, published.manifest.cid)
  await awaitSeals(run, proposal, closesAt)
  const certFile = await checkpointAndCertificate(run, closesAt)
  return verifyAndTamper(run, fed, { dir: published.modelDir, files: published.generated.files }, certFile)
}

async function demo(ctx: Ctx): Promise<'ok' | 'failed' | 'interrupted'> {
  const root = await mkdtemp(join(tmpdir(), 'allmende-demo-'))
  const run = demoRun(ctx, root)
  let cleaned = false
  const cleanup = async () => {
    if (cleaned) return
    cleaned = true
    await Promise.allSettled(run.nodes.map((x) => x.stop()))
    await rm(root, { recursive: true, force: true })
  }
  const onSignal = () => {
    run.interrupted = true
    ctx.note('interrupted: stopping the nodes and removing the temporary directory')
    void cleanup()
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    if (!(await story(run))) return 'failed'
    await cleanup()
    run.step('cleanup', ['Stopped the four nodes and removed the temporary directory.'], { removed: root })
    const seconds = run.seconds()
    ctx.out({ done: true, ok: true, seconds }, `Done in ${seconds} s: every step behaved as expected.`)
    return 'ok'
  } catch (e) {
    const message = (e as Error)?.message ?? String(e)
    if (run.interrupted) return 'interrupted'
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
