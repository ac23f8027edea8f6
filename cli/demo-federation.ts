/**
 * The demo's federation (`allmende demo`, cli/commands/demo.ts): seven identities, a genesis the
 * four founding stewards co-sign, four steward nodes on loopback at seal threshold 3, and what
 * every step of the story shares (the narration, waiting, posting records).
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import {
  type AllmendeNode,
  createKeyFile,
  initHome,
  loadSigner,
  type Signer,
  silentLogger,
  startNode,
} from '../node/index.js'
import {
  type AnyVerified,
  cosignGenesis,
  federationIdOf,
  type Member,
  type Rules,
  signRecord,
  wellFormedProblem,
} from '../protocol/index.js'
import type { Ctx } from './context.js'
import { identityPath } from './homes.js'

export const STEWARDS = ['steward-1', 'steward-2', 'steward-3', 'steward-4'] as const

export const RULES: Rules = {
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

export class DemoFailure extends Error {}

/** Polls `check` until it holds; gives up after `timeoutMs`, or at once on Ctrl-C. */
export async function until(
  run: DemoRun,
  check: () => boolean,
  what: string,
  timeoutMs: number,
  onTick?: () => void,
) {
  const deadline = Date.now() + timeoutMs
  let last = 0
  while (!check()) {
    if (run.interrupted) throw new DemoFailure('interrupted')
    if (Date.now() > deadline)
      throw new DemoFailure(`timed out after ${timeoutMs / 1000} s waiting for ${what}`)
    if (onTick && Date.now() - last >= 1_000) {
      last = Date.now()
      onTick()
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}

export async function post(node: AllmendeNode, record: AnyVerified): Promise<void> {
  const res = await fetch(`${node.apiUrl}/records`, {
    method: 'POST',
    headers: { 'content-type': 'application/cbor' },
    body: Buffer.from(record.bytes),
  })
  if (res.status !== 201 && res.status !== 200)
    throw new DemoFailure(`the node refused a ${record.record.kind}: ${res.status} ${await res.text()}`)
}

export interface DemoRun {
  readonly root: string
  readonly nodes: AllmendeNode[]
  /** Set on Ctrl-C: every wait gives up at once. */
  interrupted: boolean
  /** Narrates a finished step: its first line numbered, the others indented (one JSON object with --json). */
  step(name: string, lines: readonly string[], data?: Record<string, unknown>): void
  /** Narrates a wait under way. */
  progress(name: string, text: string, data: Record<string, unknown>): void
  /** Seconds since the start, to a tenth. */
  seconds(): number
}

export function demoRun(ctx: Ctx, root: string): DemoRun {
  const started = Date.now()
  const seconds = () => Math.round((Date.now() - started) / 100) / 10
  let n = 0
  return {
    root,
    nodes: [],
    interrupted: false,
    seconds,
    step(name, lines, data = {}) {
      n += 1
      ctx.out({ step: n, name, seconds: seconds(), ...data }, [
        `[${n}] ${lines[0]}`,
        ...lines.slice(1).map((l) => `    ${l}`),
      ])
    },
    progress(name, text, data) {
      ctx.out({ progress: name, seconds: seconds(), ...data }, `    … ${text}`)
    },
  }
}

export interface Federation {
  readonly signers: ReadonlyMap<string, Signer>
  readonly keyFiles: ReadonlyMap<string, string>
  readonly genesis: ReturnType<typeof signRecord<'genesis'>>
  readonly federation: CID
}

/** 1. Identities and the genesis, co-signed by the four founding stewards. */
export async function foundFederation(run: DemoRun): Promise<Federation> {
  const signers = new Map<string, Signer>()
  const keyFiles = new Map<string, string>()
  for (const who of [...STEWARDS, 'publisher', 'auditor', 'voter']) {
    const file = join(run.root, 'keys', `${who}.key`)
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
  run.step(
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
      dir: run.root,
    },
  )
  return { signers, keyFiles, genesis, federation }
}

/** 2. Four steward nodes in a star around the first. */
export async function startStewardNodes(run: DemoRun, fed: Federation): Promise<void> {
  const { nodes } = run
  for (const [i, w] of STEWARDS.entries()) {
    const home = join(run.root, w)
    const config = await initHome(home, {
      genesis: fed.genesis,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: i === 0 ? [] : [nodes[0]!.p2p.addresses()[0]!],
      api: '127.0.0.1:0',
      stewardKeyFile: fed.keyFiles.get(w)!,
      logLevel: 'warn',
    })
    nodes.push(
      await startNode({
        home,
        config,
        genesis: fed.genesis,
        log: silentLogger,
        helia: true,
        stewardTickMs: 100,
        sync: { intervalMs: 1_000 },
        privateFiles: [identityPath()],
      }),
    )
  }
  await until(run, () => nodes.every((x) => x.p2p.subscribers().length >= 1), 'the nodes to connect', 20_000)
  run.step(
    'nodes',
    [
      'Started four steward nodes on 127.0.0.1, gossiping records peer to peer.',
      'A decision needs the seals of 3 of them, so one dishonest or offline steward cannot decide alone or block.',
    ],
    { nodes: nodes.map((x) => x.apiUrl) },
  )
}

/** 3 and 4. A generated model; its weights uploaded to every steward, then its signed manifest. */
