/**
 * Steward federations on 127.0.0.1 for integration tests (protocol/SPEC.md §10, steward duties):
 * a Simulator whose stewards are real nodes, each with its steward key file, in a star around the
 * first; every node's log lines kept and parsed; a node can be stopped and started again on the
 * same home.
 *
 * With a `FakeClock` (`startOnFakeClock`), the protocol's time (record `at`, witness times, the
 * steward duty, the retention of revoked weights) moves only when the test moves it, while the
 * network, the steward's and the retention's timers run in real time. Sealing then happens at
 * exactly the simulated moment the test chose, however slow the machine is. `startOnRealClock`
 * is for the tests that let the wall clock run the federation.
 */
import { createHash } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FsBlockstore } from 'blockstore-fs'
import { adminToken, initHome, type NodeConfig } from '../../node/config.js'
import { type AllmendeNode, type NodeOptions, startNode } from '../../node/index.js'
import { createLogger } from '../../node/log.js'
import { type DirectoryImport, importDirectory } from '../../node/weights/directory.js'
import {
  type AnyVerified,
  type Choice,
  type CID,
  cidKey,
  type ProposalView,
  type Role,
  type Rules,
  type Verified,
} from '../../protocol/index.js'
import { submit } from './cluster.js'
import { rulesWith, Simulator } from './simulator.js'
import { until } from './until.js'

/** A clock the test sets; `fn` is what the nodes are given. */
export interface FakeClock {
  readonly fn: () => number
  now(): number
  set(t: number): void
}

export function fakeClock(start: number): FakeClock {
  let now = start
  return {
    fn: () => now,
    now: () => now,
    set(t) {
      if (t < now) throw new Error(`the fake clock does not go back (${t} < ${now})`)
      now = t
    },
  }
}

/**
 * A time 1 s after a full hour (and in the past): a simulation starting there never crosses a
 * checkpoint epoch boundary of the default hourly interval in the few simulated seconds it runs,
 * so no steward signs a checkpoint in the middle of a test.
 */
export function hourAligned(): number {
  const hour = 3_600_000
  return Math.floor(Date.now() / hour) * hour - hour + 1_000
}

/** Rules with short steward timing: votingPeriodMs > 2 × sealGraceMs, grace < weights < seal deadline. */
export const SHORT_RULES = {
  sealThreshold: 3,
  votingPeriodMs: 2_500,
  sealGraceMs: 1_000,
  weightsDeadlineMs: 1_500,
  sealDeadlineMs: 5_000,
} as const satisfies Partial<Rules>

/** A federation of stewards (each also publisher and voter) and one plain voter `v1`. */
export function stewardFederation(options: {
  name: string
  keyPrefix: string
  base: number
  stewards?: readonly string[]
  rules?: Partial<Rules>
}): Simulator {
  const stewards = options.stewards ?? ['s1', 's2', 's3', 's4']
  const roles: Role[] = ['publisher', 'steward', 'voter']
  return new Simulator({
    members: [
      ...stewards.map((name) => ({ name, roles, weight: 1 })),
      { name: 'v1', roles: ['voter'] as Role[], weight: 1 },
    ],
    rules: rulesWith({ ...SHORT_RULES, ...options.rules }),
    keyPrefix: options.keyPrefix,
    base: options.base,
    name: options.name,
  })
}

/** One vote of `choice` on `proposal` by each of `voters`, all made at `at` ms after the genesis. */
export function votesBy(
  sim: Simulator,
  voters: readonly string[],
  at: number,
  proposal: CID,
  choice: Choice,
): Verified<'vote'>[] {
  return voters.map((v) => sim.vote(v, at, { proposal, choice }))
}

/** A proposal by `by`, made at `at`, to ratify `manifest`, closing at `closesAt`, on the genesis basis. */
export function ratification(
  sim: Simulator,
  by: string,
  at: number,
  manifest: CID,
  closesAt: number,
): Verified<'proposal'> {
  return sim.proposal(by, at, { closesAt, action: { type: 'ratify-model', manifest }, basis: sim.federation })
}

/** A proposal by `by`, made at `at`, to admit `who` as a voter of weight 1, closing at `closesAt`, on the genesis basis. */
export function admission(
  sim: Simulator,
  by: string,
  at: number,
  who: string,
  closesAt: number,
): Verified<'proposal'> {
  return sim.proposal(by, at, {
    closesAt,
    action: { type: 'admit-member', member: { id: sim.did(who), roles: ['voter'], weight: 1 } },
    basis: sim.federation,
  })
}

/**
 * For federations on the wall clock: s1's manifest `id` of tiny@1.0.0 with `weights`, made now (a
 * record signed at the genesis would be backdated, as setting up takes a while), its ratification
 * closing 100 ms past the shortest voting period of the federation's rules (2.6 s under
 * SHORT_RULES), and yes votes by s1, s2 and s3, each submitted through `node`, which must answer
 * 201. A test that must count its votes on a loaded machine gives a longer voting period.
 */
export async function submitRatificationNow(
  sim: Simulator,
  node: AllmendeNode,
  id: string,
  weights: DirectoryImport,
): Promise<{ manifest: Verified<'manifest'>; proposal: Verified<'proposal'> }> {
  const t = Date.now() - sim.base
  const manifest = sim.manifest('s1', t, { id, name: 'tiny', version: '1.0.0', weights })
  const proposal = ratification(
    sim,
    's1',
    t + 1,
    manifest.cid,
    t + sim.genesis.record.body.rules.votingPeriodMs + 100,
  )
  for (const r of [manifest, proposal, ...votesBy(sim, ['s1', 's2', 's3'], t + 10, proposal.cid, 'yes')]) {
    const res = await submit(node, r)
    if (res.status !== 201)
      throw new Error(`${r.record.kind} ${r.cid} answered ${res.status}: ${JSON.stringify(res.body)}`)
  }
  return { manifest, proposal }
}

/** One parsed JSON log line; `node` names the node that wrote it. */
export interface LogLine {
  readonly node: string
  readonly event: string
  readonly [field: string]: unknown
}

export interface StewardNodesOptions {
  /** A directory the homes and key files go in (the caller removes it). */
  readonly root: string
  /** Distinguishes this federation's homes from others' under the same root. */
  readonly tag: string
  /** The Simulator's key prefix: the steward key files hold the same keys. */
  readonly keyPrefix: string
  /** Steward names, one node each; default s1…s4. */
  readonly names?: readonly string[]
  readonly helia?: boolean
  readonly clock?: FakeClock
  /** Other stewards fetch from the first one's trustless gateway. */
  readonly gateways?: boolean
  readonly unpinRevokedAfterMs?: number
  readonly stewardTickMs?: number
  readonly retentionTickMs?: number
  readonly cleanupTickMs?: number
}

export interface StewardNodes {
  /** The running nodes, by steward index (a restarted node replaces its entry). */
  readonly nodes: AllmendeNode[]
  readonly names: readonly string[]
  /** Every node's log lines (level info and above), in the order written. */
  readonly lines: LogLine[]
  /** Log lines of one event, optionally of one node and with some fields equal to the given ones. */
  events(event: string, where?: { node?: string; [field: string]: unknown }): LogLine[]
  /**
   * Stops node `i` (if running) and starts it again on the same home. `isolated`: without
   * bootstrap peers, so whatever it holds right after the start came from its own disk.
   */
  restart(i: number, options?: { isolated?: boolean }): Promise<AllmendeNode>
  /** Submits records through node `via`'s HTTP API and waits until every running node holds them. */
  submitAll(records: readonly AnyVerified[], via?: number): Promise<void>
  stop(): Promise<void>
}

/** Starts one node per steward name, the first one bare, the others bootstrapping to it. */
export async function startStewards(sim: Simulator, options: StewardNodesOptions): Promise<StewardNodes> {
  const names = options.names ?? ['s1', 's2', 's3', 's4']
  const nodes: AllmendeNode[] = []
  const configs: NodeConfig[] = []
  const lines: LogLine[] = []

  const start = async (i: number, config: NodeConfig): Promise<AllmendeNode> => {
    const name = names[i]!
    const node = await startNode({
      home: join(options.root, `${options.tag}-${name}`),
      config,
      genesis: sim.genesis,
      log: createLogger({
        level: 'info',
        name,
        write: (line) => {
          lines.push(JSON.parse(line) as LogLine)
          if (process.env.STEWARD_LOG) process.stderr.write(line)
        },
      }),
      helia: options.helia ?? false,
      stewardTickMs: options.stewardTickMs ?? 100,
      sync: { intervalMs: 1_000 },
      ...(options.clock ? { clock: options.clock.fn } : {}),
      ...(options.retentionTickMs !== undefined ? { retentionTickMs: options.retentionTickMs } : {}),
      ...(options.cleanupTickMs !== undefined ? { cleanupTickMs: options.cleanupTickMs } : {}),
    } satisfies NodeOptions)
    nodes[i] = node
    return node
  }

  const stopped = new Set<number>()
  const group: StewardNodes = {
    nodes,
    names,
    lines,
    events(event, where = {}) {
      return lines.filter((l) => l.event === event && Object.entries(where).every(([k, v]) => l[k] === v))
    },
    async restart(i, restartOptions = {}) {
      if (!stopped.has(i)) {
        stopped.add(i)
        await nodes[i]!.stop()
      }
      const config = restartOptions.isolated ? { ...configs[i]!, bootstrap: [] } : configs[i]!
      const node = await start(i, config)
      stopped.delete(i)
      return node
    },
    async submitAll(records, via = 0) {
      for (const r of records) {
        const res = await submit(nodes[via]!, r)
        if (res.status !== 201 && res.status !== 200)
          throw new Error(`${r.record.kind} ${r.cid} refused: ${res.status} ${JSON.stringify(res.body)}`)
      }
      const running = nodes.filter((_, i) => !stopped.has(i))
      await until(
        () => running.every((n) => records.every((r) => n.store.fold.has(r.cid))),
        `${records.length} records on every node`,
        15_000,
      )
    },
    async stop() {
      await Promise.allSettled(nodes.map((n, i) => (stopped.has(i) ? undefined : n.stop())))
    },
  }

  try {
    for (const [i, name] of names.entries()) {
      const keyFile = join(options.root, `${options.tag}-${name}.key`)
      const secretKey = createHash('sha256')
        .update(options.keyPrefix + name)
        .digest()
      await writeFile(
        keyFile,
        JSON.stringify({ version: 1, did: sim.did(name), secretKey: secretKey.toString('base64') }),
        { mode: 0o600 },
      )
      const config = await initHome(join(options.root, `${options.tag}-${name}`), {
        genesis: sim.genesis,
        listen: ['/ip4/127.0.0.1/tcp/0'],
        bootstrap: i === 0 ? [] : [nodes[0]!.p2p.addresses()[0]!],
        api: '127.0.0.1:0',
        stewardKeyFile: keyFile,
        logLevel: 'info',
        // Tests import models from their own temporary directories.
        importRoots: [tmpdir()],
        ...(options.gateways && i > 0 ? { gateways: [nodes[0]!.apiUrl] } : {}),
        ...(options.unpinRevokedAfterMs !== undefined
          ? { unpinRevokedAfterMs: options.unpinRevokedAfterMs }
          : {}),
      })
      configs[i] = config
      await start(i, config)
    }
    if (nodes.length > 1)
      await until(() => nodes.every((n) => n.p2p.subscribers().length >= 1), 'subscriptions')
  } catch (e) {
    await group.stop()
    throw e
  }
  return group
}

export interface FakeClockStewards {
  readonly sim: Simulator
  readonly clock: FakeClock
  readonly net: StewardNodes
  /** Moves the clock to `t` ms after the genesis. */
  at(t: number): void
}

/**
 * A fresh federation (`stewardFederation`) whose genesis is `hourAligned()`, and its steward
 * nodes (`startStewards`) on a fake clock starting at the genesis.
 */
export async function startOnFakeClock(
  federation: { name: string; keyPrefix: string; stewards?: readonly string[]; rules?: Partial<Rules> },
  nodes: Omit<StewardNodesOptions, 'keyPrefix' | 'clock'>,
): Promise<FakeClockStewards> {
  const base = hourAligned()
  const sim = stewardFederation({ ...federation, base })
  const clock = fakeClock(base)
  const net = await startStewards(sim, { ...nodes, keyPrefix: federation.keyPrefix, clock })
  return { sim, clock, net, at: (t) => clock.set(sim.base + t) }
}

export interface RealClockStewards {
  readonly sim: Simulator
  readonly net: StewardNodes
}

/**
 * A fresh federation (`stewardFederation`) whose genesis is now, so its proposals are open while
 * the test runs, and its steward nodes (`startStewards`) on the real clock.
 */
export async function startOnRealClock(
  federation: { name: string; keyPrefix: string; stewards?: readonly string[]; rules?: Partial<Rules> },
  nodes: Omit<StewardNodesOptions, 'keyPrefix' | 'clock'>,
): Promise<RealClockStewards> {
  const sim = stewardFederation({ ...federation, base: Date.now() })
  const net = await startStewards(sim, { ...nodes, keyPrefix: federation.keyPrefix })
  return { sim, net }
}

/**
 * Imports a model directory straight into each node's blockstore, unpinned, without the node's
 * API (as if it had arrived by an upload or a fetch). Returns the import (the same for each node).
 */
export async function holdWeights(nodes: readonly AllmendeNode[], dir: string): Promise<DirectoryImport> {
  let weights: DirectoryImport | undefined
  for (const n of nodes) {
    const blockstore = new FsBlockstore(join(n.home, 'blocks'))
    await blockstore.open()
    try {
      weights = await importDirectory(dir, { blockstore })
    } finally {
      await blockstore.close()
    }
  }
  if (weights === undefined) throw new Error('holdWeights: no nodes')
  return weights
}

/** A proposal as node `n` sees it. */
export function viewOf(n: AllmendeNode, p: CID): ProposalView | undefined {
  return n.store.fold.state().proposals.get(cidKey(p))
}

/** Waits until every one of `nodes` sees proposal `p` final-passed. */
export async function untilFinalPassed(
  nodes: readonly AllmendeNode[],
  p: CID,
  timeout = 30_000,
): Promise<void> {
  await until(
    () => nodes.every((n) => viewOf(n, p)?.phase === 'final-passed'),
    `${p} final-passed on every node`,
    timeout,
  )
}

/** The seals node `n` holds for proposal `p`, by `author` when given, in the order it took them. */
export function sealsOf(n: AllmendeNode, p: CID, author?: string): Verified<'seal'>[] {
  const out: Verified<'seal'>[] = []
  for (const r of n.store.fold.records())
    if (
      r.record.kind === 'seal' &&
      r.record.body.proposal.equals(p) &&
      (author === undefined || r.record.author === author)
    )
      out.push(r as Verified<'seal'>)
  return out
}

/**
 * Imports a model directory on the node's own machine through its HTTP API (`POST
 * /weights/import` with the admin token): the blocks go into its blockstore and the root is
 * pinned. Throws unless the node answers 201.
 */
export async function importWeights(
  n: AllmendeNode,
  dir: string,
): Promise<{ root: string; files: number; size: number; pinned: boolean }> {
  const res = await fetch(`${n.apiUrl}/weights/import`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${(await adminToken(n.home)).trim()}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ path: dir }),
  })
  const body = (await res.json()) as { root: string; files: number; size: number; pinned: boolean }
  if (res.status !== 201) throw new Error(`import of ${dir} refused: ${res.status} ${JSON.stringify(body)}`)
  return body
}
