/**
 * Properties of the fold (SPEC.md §8): the state is a function of the
 * record *set* — order, duplicates, splitting and merging, and the
 * incremental path (`apply`) change nothing — and later seals never
 * un-finalize a decision.
 *
 * Federations and record programs are random: fast-check generates a small
 * tagged program (rounds of checkpoints, manifests, attestations, proposals,
 * votes and seals with jittered times), and `build` interprets it
 * deterministically with the Simulator, so every record is really signed.
 * Programs hold 30–120 records. Signing uses node:crypto (`nativeSigner`,
 * signatures identical to noble's) and keys are derived once per name, so a
 * run stays cheap; the whole file takes about half a minute.
 *
 * Each property runs RUNS (200) times; a failure prints fast-check's seed
 * and the shrunk program, which `build` turns back into the same records.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { nativeSigner } from '../../../../node/ed25519-native.js'
import {
  type Action,
  type AnyVerified,
  apply,
  buildList,
  type CheckpointBody,
  type Choice,
  type CID,
  canonicalState,
  checkpointFor,
  cidKey,
  cidOfBlock,
  compareCids,
  createFold,
  createSigner,
  derivationsOf,
  encode,
  equalBytes,
  type FederationState,
  fold,
  type GovState,
  type Phase,
  type Role,
  type Rules,
  type Signer,
  signRecord,
  stewardsOf,
  utf8,
  type Verified,
} from '../../../../protocol/index.js'
import { prng } from '../../../support/prng.js'
import { DEFAULT_RULES, type SimMember, Simulator } from '../../../support/simulator.js'

const RUNS = 200
/**
 * The limits bound the *shrinking* of a failure (every shrink step signs a
 * program again): after four minutes fast-check reports the smallest
 * counterexample found so far. A run interrupted before RUNS runs fails
 * rather than passing with fewer runs, so the bound sits well above the
 * slowest property's time on a loaded 2-core machine (incremental equals
 * batch folds every prefix again: about 60 s there), below the test timeout.
 */
const PARAMS = { numRuns: RUNS, interruptAfterTimeLimit: 240_000, markInterruptAsFailure: true }
const TIMEOUT = 300_000

// ---------------------------------------------------------------- names and rules

/**
 * A short checkpoint interval: checkpoints are for epochs that are multiples of it (SPEC.md
 * §11.2, `checkpoint-epoch`), and programs span a few seconds, so many epochs fall inside one.
 */
const CHECKPOINT_INTERVAL = 100

/** The epoch boundary at or before `ms`. */
function boundaryAtOrBefore(ms: number): number {
  return Math.floor(ms / CHECKPOINT_INTERVAL) * CHECKPOINT_INTERVAL
}

const STEWARDS = ['a', 'b', 'c', 's4', 's5'] as const
const VOTERS = ['d', 'e', 'f', 'g'] as const
const OUTSIDERS = ['x', 'y', 'z', 'w'] as const
const ALL: readonly string[] = [...STEWARDS, ...VOTERS, ...OUTSIDERS]

const STEWARD_ROLES: Record<string, Role[]> = {
  a: ['publisher', 'steward', 'voter'],
  b: ['auditor', 'steward', 'voter'],
  c: ['steward', 'voter'],
  s4: ['steward', 'voter'],
  s5: ['steward'],
}
const VOTER_ROLES: Record<string, Role[]> = {
  d: ['voter'],
  e: ['auditor', 'voter'],
  f: ['voter'],
  g: ['publisher', 'voter'],
}

const FRACTIONS: readonly (readonly [number, number])[] = [
  [1, 2],
  [1, 3],
  [2, 3],
]

const ADMIT_ROLES: readonly Role[][] = [
  ['voter'],
  ['auditor', 'voter'],
  ['publisher', 'voter'],
  ['steward', 'voter'],
  ['auditor'],
]

function ruleVariants(base: Rules): Rules[] {
  const star = base.actions['*']!
  return [
    { ...base, actions: { ...base.actions, '*': { ...star, threshold: [2, 3] } } },
    { ...base, votingPeriodMs: 1500 },
    { ...base, sealThreshold: 3 },
    // Ill-formed: the voting period must exceed twice the grace.
    { ...base, votingPeriodMs: 200 },
    // Ill-formed with two or more stewards: 2t ≤ stewards.
    { ...base, sealThreshold: 1 },
    { ...base, sealGraceMs: 200, weightsDeadlineMs: 2000, sealDeadlineMs: 4000 },
    { ...base, actions: { ...base.actions, '*': { ...star, quorum: [0, 1], threshold: [0, 1] } } },
  ]
}

// ---------------------------------------------------------------- the program

/** Who signs: a member of the relevant electorate (by index), or anyone at all. */
interface Who {
  readonly any: boolean
  readonly i: number
}

interface FedSpec {
  readonly stewards: 3 | 4 | 5
  readonly extraVoters: number
  readonly weights: readonly number[]
  readonly quorum: number
  readonly threshold: number
  readonly requireEval: boolean
}

type ActSpec =
  | { readonly t: 'admit'; readonly who: number; readonly roles: number; readonly weight: number }
  | { readonly t: 'remove'; readonly who: Who }
  | { readonly t: 'replace'; readonly who: Who; readonly to: number }
  | { readonly t: 'rules'; readonly variant: number }
  | { readonly t: 'ratify'; readonly m: number }
  | { readonly t: 'revoke'; readonly m: number }

type BasisSpec =
  | { readonly t: 'head' }
  | { readonly t: 'genesis' }
  | { readonly t: 'earlier'; readonly i: number }
  | { readonly t: 'odd'; readonly i: number }

interface PropSpec {
  readonly by: Who
  readonly act: ActSpec
  readonly basis: BasisSpec
  readonly len: number
  readonly jitter: number
}

interface VoteSpec {
  readonly by: Who
  readonly p: number
  readonly old: boolean
  readonly choice: Choice
  readonly when: 'in' | 'before' | 'after'
  readonly frac: number
}

interface SealSpec {
  readonly by: Who
  readonly p: number
  readonly old: boolean
  /** `counted` (what the fold counts now) or a bit mask over the votes on the proposal. */
  readonly votes: 'counted' | number
  readonly foreign: boolean
  readonly when: 'in' | 'early' | 'late' | 'edge'
  readonly delay: number
  readonly wv: boolean
  readonly forge: boolean
  /** Also sign a second, different seal (an equivocation). */
  readonly twice: boolean
}

type ExtraSpec =
  | { readonly t: 'manifest'; readonly by: number; readonly name: number; readonly version: number }
  | {
      readonly t: 'attest'
      readonly by: number
      readonly m: number
      readonly kind: number
      readonly pass: boolean
      readonly late: boolean
    }

interface RoundSpec {
  readonly gap: number
  /** How many stewards of each proposal's electorate seal honestly (what the fold counts), and when. */
  readonly sealers: number
  readonly sealOffset: number
  readonly sealDelays: readonly number[]
  /** How many voters of each proposal's electorate vote in the window first, and how. */
  readonly turnout: number
  readonly ballots: readonly { readonly choice: Choice; readonly frac: number }[]
  /** Stewards of the head who sign a checkpoint at the start of the round (0: none), and for which epoch. */
  readonly checkpointers: number
  readonly epochBack: number
  readonly extras: readonly ExtraSpec[]
  readonly proposals: readonly PropSpec[]
  readonly votes: readonly VoteSpec[]
  readonly seals: readonly SealSpec[]
}

interface Program {
  readonly fed: FedSpec
  readonly rounds: readonly RoundSpec[]
}

const whoArb: fc.Arbitrary<Who> = fc.record({
  any: fc.oneof({ weight: 7, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  i: fc.nat(30),
})

const fedArb: fc.Arbitrary<FedSpec> = fc.record({
  stewards: fc.constantFrom(3 as const, 4 as const, 5 as const),
  extraVoters: fc.nat(2),
  weights: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 9, maxLength: 9 }),
  quorum: fc.nat(FRACTIONS.length - 1),
  threshold: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(2) }),
  requireEval: fc.boolean(),
})

const actArb: fc.Arbitrary<ActSpec> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('admit' as const),
      who: fc.nat(30),
      roles: fc.nat(ADMIT_ROLES.length - 1),
      weight: fc.integer({ min: 1, max: 5 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('remove' as const), who: whoArb }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('replace' as const), who: whoArb, to: fc.nat(30) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('rules' as const), variant: fc.nat(20) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('ratify' as const), m: fc.nat(10) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('revoke' as const), m: fc.nat(10) }) },
)

const basisArb: fc.Arbitrary<BasisSpec> = fc.oneof(
  { weight: 8, arbitrary: fc.constant({ t: 'head' as const }) },
  { weight: 2, arbitrary: fc.constant({ t: 'genesis' as const }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('earlier' as const), i: fc.nat(10) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('odd' as const), i: fc.nat(50) }) },
)

const propArb: fc.Arbitrary<PropSpec> = fc.record({
  by: whoArb,
  act: actArb,
  basis: basisArb,
  len: fc.oneof(
    { weight: 8, arbitrary: fc.integer({ min: 1000, max: 1800 }) },
    { weight: 1, arbitrary: fc.integer({ min: 400, max: 999 }) },
  ),
  jitter: fc.nat(60),
})

const voteArb: fc.Arbitrary<VoteSpec> = fc.record({
  by: whoArb,
  p: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(3) }),
  old: fc.oneof({ weight: 8, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  choice: fc.constantFrom<Choice>('yes', 'yes', 'yes', 'no', 'abstain'),
  when: fc.oneof(
    { weight: 8, arbitrary: fc.constant('in' as const) },
    { weight: 1, arbitrary: fc.constant('before' as const) },
    { weight: 1, arbitrary: fc.constant('after' as const) },
  ),
  frac: fc.nat(1000),
})

const sealArb: fc.Arbitrary<SealSpec> = fc.record({
  by: whoArb,
  p: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(3) }),
  old: fc.oneof({ weight: 8, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  votes: fc.oneof(
    { weight: 4, arbitrary: fc.constant('counted' as const) },
    { weight: 1, arbitrary: fc.nat(1023) },
  ),
  foreign: fc.oneof(
    { weight: 12, arbitrary: fc.constant(false) },
    { weight: 1, arbitrary: fc.constant(true) },
  ),
  when: fc.oneof(
    { weight: 10, arbitrary: fc.constant('in' as const) },
    { weight: 1, arbitrary: fc.constant('early' as const) },
    { weight: 1, arbitrary: fc.constant('late' as const) },
    { weight: 1, arbitrary: fc.constant('edge' as const) },
  ),
  delay: fc.nat(700),
  wv: fc.oneof({ weight: 5, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  forge: fc.oneof({ weight: 15, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  twice: fc.oneof({ weight: 8, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
})

const extraArb: fc.Arbitrary<ExtraSpec> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('manifest' as const),
      by: fc.nat(12),
      name: fc.nat(1),
      version: fc.nat(1),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('attest' as const),
      by: fc.nat(12),
      m: fc.nat(10),
      kind: fc.nat(2),
      pass: fc.oneof(
        { weight: 3, arbitrary: fc.constant(true) },
        { weight: 1, arbitrary: fc.constant(false) },
      ),
      late: fc.oneof(
        { weight: 5, arbitrary: fc.constant(false) },
        { weight: 1, arbitrary: fc.constant(true) },
      ),
    }),
  },
)

const roundArb: fc.Arbitrary<RoundSpec> = fc.record({
  gap: fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 1, max: 400 }) },
    { weight: 1, arbitrary: fc.integer({ min: 4500, max: 7000 }) },
  ),
  sealers: fc.oneof({ weight: 4, arbitrary: fc.constant(5) }, { weight: 2, arbitrary: fc.nat(4) }),
  sealOffset: fc.nat(4),
  sealDelays: fc.array(fc.nat(600), { minLength: 5, maxLength: 5 }),
  turnout: fc.oneof({ weight: 3, arbitrary: fc.constant(9) }, { weight: 2, arbitrary: fc.nat(5) }),
  ballots: fc.array(
    fc.record({ choice: fc.constantFrom<Choice>('yes', 'yes', 'yes', 'no', 'abstain'), frac: fc.nat(1000) }),
    { minLength: 9, maxLength: 9 },
  ),
  checkpointers: fc.oneof(
    { weight: 4, arbitrary: fc.constant(0) },
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 3 }) },
  ),
  epochBack: fc.nat(3000),
  extras: fc.array(extraArb, { maxLength: 2 }),
  proposals: fc.array(propArb, { minLength: 1, maxLength: 2 }),
  votes: fc.array(voteArb, { minLength: 2, maxLength: 9 }),
  seals: fc.array(sealArb, { minLength: 1, maxLength: 5 }),
})

const programArb: fc.Arbitrary<Program> = fc.record({
  fed: fedArb,
  rounds: fc.array(roundArb, { minLength: 3, maxLength: 5 }),
})

/** More records than any program makes: 5 rounds × (3 + 2 + 2 + 2·9 + 9 + 2·5 + 2·5) = 270. */
const MAX_RECORDS = 320

// ---------------------------------------------------------------- the interpreter

/** Keys are derived once per name for the whole file (deriving a public key costs more than signing). */
const SIGNERS = new Map<string, Signer>()
const NAMES = new Map<string, string>()

class PropertySimulator extends Simulator {
  override signer(name: string): Signer {
    let s = SIGNERS.get(name)
    if (!s) {
      s = createSigner(sha256(utf8.encode(`allmende-conformance:${name}`)), nativeSigner)
      SIGNERS.set(name, s)
      NAMES.set(s.did, name)
    }
    return s
  }

  override nameOf(did: string): string | undefined {
    return NAMES.get(did)
  }
}

interface Built {
  readonly sim: Simulator
  readonly genesis: Verified<'genesis'>
  /** Every record made, in the order made. */
  readonly records: readonly AnyVerified[]
}

function pick<T>(xs: readonly T[], i: number): T | undefined {
  return xs.length === 0 ? undefined : xs[i % xs.length]
}

function namesWith(sim: Simulator, state: GovState | undefined, role: Role): string[] {
  if (!state) return []
  return [...state.members.values()]
    .filter((m) => m.roles.includes(role))
    .map((m) => sim.nameOf(m.id) ?? '')
    .filter((n) => n !== '')
    .sort()
}

function memberNames(sim: Simulator, state: GovState): string[] {
  return [...state.members.values()]
    .map((m) => sim.nameOf(m.id) ?? '')
    .filter((n) => n !== '')
    .sort()
}

function federationOf(fed: FedSpec): { members: SimMember[]; rules: Rules } {
  const members: SimMember[] = []
  let w = 0
  for (const name of STEWARDS.slice(0, fed.stewards))
    members.push({ name, roles: STEWARD_ROLES[name]!, weight: fed.weights[w++]! })
  for (const name of VOTERS.slice(0, 2 + fed.extraVoters))
    members.push({ name, roles: VOTER_ROLES[name]!, weight: fed.weights[w++]! })
  const star = {
    quorum: FRACTIONS[fed.quorum]!,
    threshold: FRACTIONS[fed.threshold]!,
    requiredAttestations: [],
  }
  const rules: Rules = {
    ...DEFAULT_RULES,
    checkpointIntervalMs: CHECKPOINT_INTERVAL,
    sealThreshold: fed.stewards === 3 ? 2 : 3,
    actions: {
      'ratify-model': {
        ...star,
        requiredAttestations: fed.requireEval ? [{ kind: 'eval', min: 1 }] : [],
      },
      '*': star,
    },
  }
  return { members, rules }
}

const builtCache = new WeakMap<Program, Built>()

/** Interprets a program: every record is signed by the Simulator and added to its fold as made. */
function build(program: Program): Built {
  const hit = builtCache.get(program)
  if (hit) return hit
  const { members, rules } = federationOf(program.fed)
  const sim = new PropertySimulator({ members, rules, name: 'property federation', signer: nativeSigner })
  const variants = ruleVariants(rules)
  const records: AnyVerified[] = []
  const manifests: Verified<'manifest'>[] = []
  const proposals: Verified<'proposal'>[] = []
  const governance: Verified<'proposal'>[] = []
  const votesOn = new Map<string, Verified<'vote'>[]>()
  const seen = new Set<string>()
  // The same fields signed twice make the same record: keep each CID once.
  const add = <R extends AnyVerified>(r: R): R => {
    if (seen.has(r.cid.toString())) return r
    seen.add(r.cid.toString())
    records.push(r)
    sim.add(r)
    const kind = r.record.kind
    if (kind === 'vote') {
      const key = (r as Verified<'vote'>).record.body.proposal.toString()
      votesOn.set(key, [...(votesOn.get(key) ?? []), r as Verified<'vote'>])
    }
    return r
  }
  const who = (w: Who, candidates: readonly string[]): string =>
    w.any || candidates.length === 0 ? ALL[w.i % ALL.length]! : candidates[w.i % candidates.length]!
  let clock = 0
  let manifestId = 0
  for (const round of program.rounds) {
    const start = clock + round.gap
    const head = sim.fold.headState()
    // Checkpoints: some stewards of the head sign what the fold says now about an epoch in the past.
    if (round.checkpointers > 0) {
      const stewards = namesWith(sim, head, 'steward')
      const epoch = boundaryAtOrBefore(Math.max(0, clock - round.epochBack))
      for (let k = 0; k < Math.min(round.checkpointers, stewards.length); k++)
        add(sim.checkpoint(stewards[(k + round.epochBack) % stewards.length]!, start - 60 + k, epoch))
    }
    // Manifests and attestations first, so proposals of this round can name them.
    const late: ExtraSpec[] = []
    for (const x of round.extras) {
      if (x.t === 'attest' && x.late) {
        late.push(x)
        continue
      }
      if (x.t === 'manifest') {
        const publishers = namesWith(sim, head, 'publisher')
        const by = x.by < 10 ? (pick(publishers, x.by) ?? 'a') : ALL[x.by % ALL.length]!
        manifests.push(
          add(
            sim.manifest(by, start - 40, {
              id: `m${manifestId++}`,
              name: `model-${x.name}`,
              version: `1.${x.version}.0`,
            }),
          ),
        )
      } else {
        const subject = pick(manifests, x.m)
        if (!subject) continue
        const auditors = namesWith(sim, head, 'auditor')
        const by = x.by < 10 ? (pick(auditors, x.by) ?? 'b') : ALL[x.by % ALL.length]!
        add(
          sim.attestation(by, start - 20, {
            subject: subject.cid,
            kind: ['eval', 'bias-audit', 'eval'][x.kind]!,
            result: x.pass ? 'pass' : 'fail',
          }),
        )
      }
    }
    // Proposals.
    const made: Verified<'proposal'>[] = []
    let end = start
    for (const ps of round.proposals) {
      const at = start + ps.jitter
      const closesAt = at + ps.len
      const now = sim.fold.headState()
      const names = memberNames(sim, now)
      let action: Action
      const a = ps.act
      const fallback = (): Action => ({ type: 'change-rules', rules: variants[0]! })
      switch (a.t) {
        case 'admit': {
          const name = [...OUTSIDERS, ...OUTSIDERS, ...ALL][a.who % (2 * OUTSIDERS.length + ALL.length)]!
          action = {
            type: 'admit-member',
            member: { id: sim.did(name), roles: [...ADMIT_ROLES[a.roles]!].sort(), weight: a.weight },
          }
          break
        }
        case 'remove':
          action = { type: 'remove-member', id: sim.did(who(a.who, names)) }
          break
        case 'replace': {
          const from = who(a.who, names)
          const targets = [...OUTSIDERS, ...ALL].filter((n) => n !== from)
          const to = targets[a.to % targets.length]!
          action = { type: 'replace-key', id: sim.did(from), newId: sim.did(to) }
          break
        }
        case 'rules':
          action = { type: 'change-rules', rules: variants[a.variant % variants.length]! }
          break
        case 'ratify': {
          const m = pick(manifests, a.m)
          action = m ? { type: 'ratify-model', manifest: m.cid } : fallback()
          break
        }
        case 'revoke': {
          const m = pick(manifests, a.m)
          action = m ? { type: 'revoke-model', manifest: m.cid, reason: 'property test' } : fallback()
          break
        }
      }
      let basis: CID | undefined
      const b = ps.basis
      if (b.t === 'genesis') basis = sim.federation
      else if (b.t === 'earlier') basis = pick(governance, b.i)?.cid ?? sim.federation
      else if (b.t === 'odd') {
        const odd = records.filter(
          (r) => r.record.kind !== 'proposal' || !governance.includes(r as Verified<'proposal'>),
        )
        basis = pick(odd, b.i)?.cid
      }
      const p = add(
        sim.proposal(who(ps.by, namesWith(sim, now, 'voter')), at, {
          closesAt,
          action,
          ...(basis ? { basis } : {}),
        }),
      )
      made.push(p)
      proposals.push(p)
      if (action.type !== 'ratify-model' && action.type !== 'revoke-model') governance.push(p)
      end = Math.max(end, closesAt)
    }
    const target = (p: number, old: boolean) => (old ? pick(proposals, p) : pick(made, p))!
    // Turnout: the first `turnout` voters of each proposal's electorate vote in the window.
    for (const [j, p] of made.entries()) {
      const electorate = sim.fold.electorate(p.cid)
      if (!electorate) continue
      const pAt = p.record.at - sim.base
      const span = p.record.body.closesAt - p.record.at
      const voters = namesWith(sim, electorate, 'voter')
      for (let k = 0; k < Math.min(round.turnout, voters.length); k++) {
        const ballot = round.ballots[(k + j) % round.ballots.length]!
        add(
          sim.vote(voters[(k + j) % voters.length]!, pAt + Math.floor((ballot.frac * span) / 1000), {
            proposal: p.cid,
            choice: ballot.choice,
          }),
        )
      }
    }
    // Votes (some outside their window, some changing an earlier vote of the same voter).
    for (const vs of round.votes) {
      const p = target(vs.p, vs.old)
      const at = p.record.at
      const closesAt = p.record.body.closesAt - sim.base
      const pAt = at - sim.base
      const t =
        vs.when === 'in'
          ? pAt + Math.floor((vs.frac * (closesAt - pAt)) / 1000)
          : vs.when === 'before'
            ? pAt - 1 - (vs.frac % 30)
            : closesAt + 1 + (vs.frac % 300)
      const electorate = sim.fold.electorate(p.cid) ?? sim.fold.headState()
      add(
        sim.vote(who(vs.by, namesWith(sim, electorate, 'voter')), t, { proposal: p.cid, choice: vs.choice }),
      )
    }
    // Honest seals: the first `sealers` stewards (rotated) seal what the fold counts now.
    for (const p of made) {
      const electorate = sim.fold.electorate(p.cid)
      if (!electorate) continue
      const stewards = namesWith(sim, electorate, 'steward')
      const closesAt = p.record.body.closesAt - sim.base
      for (let k = 0; k < Math.min(round.sealers, stewards.length); k++) {
        const by = stewards[(k + round.sealOffset) % stewards.length]!
        add(sim.seal(by, closesAt + electorate.rules.sealGraceMs + round.sealDelays[k]!, { proposal: p.cid }))
      }
    }
    // Other seals: some in the window, early, late, on the edge, with other vote sets, forged, or twice.
    for (const ss of round.seals) {
      const p = target(ss.p, ss.old)
      const electorate = sim.fold.electorate(p.cid)
      const r = electorate?.rules ?? rules
      const closesAt = p.record.body.closesAt - sim.base
      const t =
        ss.when === 'in'
          ? closesAt + r.sealGraceMs + ss.delay
          : ss.when === 'early'
            ? closesAt + r.sealGraceMs - 1 - (ss.delay % r.sealGraceMs)
            : ss.when === 'late'
              ? closesAt + r.sealDeadlineMs + 1 + ss.delay
              : closesAt + r.sealDeadlineMs + (ss.delay % 2)
      const by = who(ss.by, namesWith(sim, electorate ?? sim.fold.headState(), 'steward'))
      const known = votesOn.get(p.cid.toString()) ?? []
      const subset = (mask: number): CID[] => {
        const out = known.filter((_, i) => (mask >> i) & 1).map((v) => v.cid)
        if (ss.foreign) {
          const other = [...votesOn.entries()].find(([k]) => k !== p.cid.toString())?.[1][0]
          if (other) out.push(other.cid)
        }
        return out.sort(compareCids)
      }
      const votes = ss.votes === 'counted' ? (ss.foreign ? subset(-1) : undefined) : subset(ss.votes)
      const forgeTally = ss.forge ? { yes: 1 + (ss.delay % 7), no: 0, abstain: 0 } : undefined
      add(
        sim.seal(by, t, {
          proposal: p.cid,
          ...(votes ? { votes } : {}),
          weightsVerified: ss.wv,
          ...(forgeTally ? { forgeTally } : {}),
        }),
      )
      if (ss.twice) {
        const mask = ss.votes === 'counted' ? 0 : ~ss.votes
        add(sim.seal(by, t + 1, { proposal: p.cid, votes: subset(mask), weightsVerified: !ss.wv }))
      }
    }
    clock = end + 800
    for (const x of late) {
      if (x.t !== 'attest') continue
      const subject = pick(manifests, x.m)
      if (!subject) continue
      const auditors = namesWith(sim, head, 'auditor')
      add(
        sim.attestation(pick(auditors, x.by) ?? 'b', clock, {
          subject: subject.cid,
          kind: 'eval',
          result: x.pass ? 'pass' : 'fail',
        }),
      )
    }
  }
  const built = { sim, genesis: sim.genesis, records }
  builtCache.set(program, built)
  return built
}

// ---------------------------------------------------------------- helpers

function sameState(a: Uint8Array, b: Uint8Array): boolean {
  return equalBytes(a, b)
}

/**
 * A permutation of `xs` drawn from `seed` (Fisher–Yates). One integer instead
 * of a key per record keeps shrinking cheap: fast-check shrinks the program.
 */
function permute<T>(xs: readonly T[], seed: number): T[] {
  const out = [...xs]
  const rand = prng(seed)
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

const seedArb = fc.integer({ min: 0, max: 0x7fffffff })

/** A readable description of a state difference, for failure messages. */
function diff(a: FederationState, b: FederationState): string {
  const out: string[] = []
  if (!a.head.equals(b.head)) out.push(`head ${a.head} vs ${b.head}`)
  if (a.height !== b.height) out.push(`height ${a.height} vs ${b.height}`)
  for (const [k, p] of a.proposals) {
    const q = b.proposals.get(k)
    const id = `${p.cid} (${p.action.type})`
    if (!q) out.push(`proposal ${id} missing`)
    else if (p.phase !== q.phase || p.reason?.code !== q.reason?.code)
      out.push(`proposal ${id}: ${p.phase}/${p.reason?.code} vs ${q.phase}/${q.reason?.code}`)
    else if (JSON.stringify(p.tally) !== JSON.stringify(q.tally))
      out.push(`proposal ${id}: tally ${JSON.stringify(p.tally)} vs ${JSON.stringify(q.tally)}`)
  }
  for (const [k, m] of a.models) {
    const n = b.models.get(k)
    if (m.status !== n?.status) out.push(`model ${k}: ${m.status} vs ${n?.status}`)
  }
  return out.join('; ') || 'canonical bytes differ'
}

function expectSame(got: FederationState, want: FederationState, label: string): void {
  if (!sameState(canonicalState(got), canonicalState(want))) expect.fail(`${label}: ${diff(got, want)}`)
}

const FINAL: ReadonlySet<Phase> = new Set(['final-passed', 'final-rejected', 'final-no-quorum', 'superseded'])

// ---------------------------------------------------------------- the properties

describe('fold properties over random federations', { timeout: TIMEOUT }, () => {
  it('the generator reaches final decisions, chain changes and the interesting rejections', () => {
    const programs = fc.sample(programArb, { numRuns: 60, seed: 20260101 })
    let withHeight = 0
    let anchored = 0
    let confirmed = 0
    let finalPassed = 0
    let superseded = 0
    let governancePassed = 0
    let ratified = 0
    let equivocators = 0
    let conflictedOrMulti = 0
    const codes = new Map<string, number>()
    let records = 0
    let fewest = Number.POSITIVE_INFINITY
    let most = 0
    for (const program of programs) {
      const { sim, records: rs } = build(program)
      records += rs.length
      fewest = Math.min(fewest, rs.length)
      most = Math.max(most, rs.length)
      const state = sim.fold.state()
      if (state.height >= 1) withHeight++
      if (state.checkpoint) anchored++
      for (const p of state.proposals.values()) {
        if (p.phase === 'final-passed') {
          finalPassed++
          if (p.governance) governancePassed++
        }
        if (p.phase === 'superseded') superseded++
        if (p.equivocators.length > 0) equivocators++
        if (p.phase === 'conflicted') conflictedOrMulti++
        if (p.confirmed) confirmed++
      }
      for (const m of state.models.values()) if (m.status === 'ratified') ratified++
      for (const r of rs) {
        const rep = sim.fold.report(r.cid)
        if (rep && rep.status !== 'applied') codes.set(rep.code, (codes.get(rep.code) ?? 0) + 1)
      }
    }
    // What the corpus holds, for whoever tunes the generator.
    console.info(
      `${programs.length} programs, ${records} records (${fewest}–${most} per program); height ≥ 1 in ${withHeight}; ` +
        `final-passed ${finalPassed} (governance ${governancePassed}), superseded ${superseded}, ` +
        `conflicted ${conflictedOrMulti}, with equivocators ${equivocators}, ratified models ${ratified}, ` +
        `counted checkpoints ${anchored}, confirmed proposals ${confirmed}; ` +
        `codes ${JSON.stringify(Object.fromEntries([...codes].sort()))}`,
    )
    expect(records / programs.length).toBeGreaterThanOrEqual(20)
    expect(withHeight).toBeGreaterThanOrEqual(1)
    expect(finalPassed).toBeGreaterThan(0)
    expect(governancePassed).toBeGreaterThan(0)
    expect(ratified).toBeGreaterThan(0)
    expect(equivocators).toBeGreaterThan(0)
    expect(anchored).toBeGreaterThan(0)
    expect(confirmed).toBeGreaterThan(0)
    for (const code of [
      'vote-window',
      'seal-window',
      'seal-vote-invalid',
      'seal-not-steward',
      'basis-pending',
    ])
      expect(codes.get(code) ?? 0, code).toBeGreaterThan(0)
  })

  it('permutation: the state depends only on the record set, not on the order', () => {
    fc.assert(
      fc.property(programArb, seedArb, (program, seed) => {
        const { genesis, records } = build(program)
        const want = fold(genesis, records)
        const got = fold(genesis, permute(records, seed))
        expectSame(got, want, 'permuted')
      }),
      PARAMS,
    )
  })

  it('duplication: adding records again changes nothing', () => {
    fc.assert(
      fc.property(
        programArb,
        seedArb,
        fc.array(fc.tuple(fc.nat(MAX_RECORDS), fc.nat(2 * MAX_RECORDS)), { minLength: 1, maxLength: 30 }),
        (program, seed, dups) => {
          const { genesis, records } = build(program)
          const want = fold(genesis, records)
          const order: AnyVerified[] = permute(records, seed)
          for (const [i, at] of dups) {
            // Index `records.length` stands for the genesis itself.
            const r = i % (records.length + 1) === records.length ? genesis : records[i % records.length]!
            order.splice(at % (order.length + 1), 0, r)
          }
          const f = createFold(genesis)
          for (const r of order) expect(f.add(r)).toBe(true)
          expectSame(f.state(), want, 'with duplicates')
          expect(f.state().recordCount).toBe(records.length + 1)
        },
      ),
      PARAMS,
    )
  })

  it('split then merge: two accumulators joined equal one fold, state and reports alike', () => {
    fc.assert(
      fc.property(programArb, seedArb, seedArb, (program, seed, split) => {
        const { genesis, records } = build(program)
        const all = createFold(genesis)
        for (const r of records) all.add(r)
        const order = permute(records, seed)
        const side = prng(split)
        const sides = order.map(() => side() < 0.5)
        const a = order.filter((_, i) => sides[i])
        const b = order.filter((_, i) => !sides[i])
        const fa = createFold(genesis)
        const fb = createFold(genesis)
        for (const r of a) fa.add(r)
        for (const r of b) fb.add(r)
        // Each side on its own is a fold of its subset.
        expectSame(fa.state(), fold(genesis, a), 'side A')
        expectSame(fb.state(), fold(genesis, b), 'side B')
        // Merge: everything B holds into A.
        for (const r of fb.records()) fa.add(r)
        expectSame(fa.state(), all.state(), 'merged')
        for (const r of records)
          expect(fa.report(r.cid), `report of ${r.record.kind} ${r.cid}`).toEqual(all.report(r.cid))
        for (const p of all.state().proposals.values()) {
          expect(fa.countedVotes(p.cid)).toEqual(all.countedVotes(p.cid))
          expect(fa.countedAttestations(p.cid)).toEqual(all.countedAttestations(p.cid))
        }
      }),
      PARAMS,
    )
  })

  it('incremental equals batch: apply after every record agrees with fold of that prefix', () => {
    fc.assert(
      fc.property(programArb, seedArb, (program, seed) => {
        const { genesis, records } = build(program)
        const order = permute(records, seed)
        const acc = createFold(genesis)
        let state = acc.state()
        for (const [i, r] of order.entries()) {
          state = apply(acc, r)
          // Every prefix: the incremental path may only ever show what a batch fold of the same records shows.
          const prefix = order.slice(0, i + 1)
          const batch = createFold(genesis)
          for (const x of prefix) batch.add(x)
          const label = `after ${i + 1} of ${order.length} records (last a ${r.record.kind})`
          expectSame(state, batch.state(), label)
          expect(state.recordCount, label).toBe(batch.state().recordCount)
          // Reports too: the incremental paths set them without re-deriving.
          for (const x of prefix)
            expect(acc.report(x.cid), `${label}: ${x.record.kind}`).toEqual(batch.report(x.cid))
        }
        expectSame(state, fold(genesis, records), 'after every record')
        expectSame(acc.state(), state, 'state() after the last apply')
        const batch = createFold(genesis)
        for (const r of records) batch.add(r)
        for (const r of records) expect(acc.report(r.cid)).toEqual(batch.report(r.cid))
        for (const p of state.proposals.values())
          expect(acc.countedVotes(p.cid)).toEqual(batch.countedVotes(p.cid))
      }),
      PARAMS,
    )
  })

  it('checkpoints: adding one re-derives only when the newest counted checkpoint changes', () => {
    // Checkpoints by anyone (stewards, voters, strangers) for epochs across the program and past
    // its end: honest, honest and signed by every steward of the head at once, or with a wrong
    // height, a bad label, an unknown head, an epoch off the interval or a list naming a proposal
    // that closes after the epoch.
    const checkpointArb = fc.record({
      by: whoArb,
      epoch: fc.nat(5),
      at: fc.nat(1000),
      kind: fc.constantFrom('honest', 'honest', 'all stewards', 'height', 'label', 'head', 'epoch', 'early'),
    })
    let quiet = 0
    let moved = 0
    fc.assert(
      fc.property(programArb, fc.array(checkpointArb, { minLength: 1, maxLength: 12 }), (program, stream) => {
        const { sim, genesis, records } = build(program)
        const end = Math.max(...records.map((r) => r.record.at)) - sim.base
        const acc = createFold(genesis)
        for (const r of records) acc.add(r)
        let before = acc.state()
        const added: AnyVerified[] = []
        for (const x of stream) {
          const epoch = sim.base + boundaryAtOrBefore(Math.floor((end * x.epoch) / 4))
          const honest = checkpointFor(before, epoch)
          let body: CheckpointBody = honest.body
          let finalized = honest.finalized
          if (x.kind === 'height') body = { ...body, height: body.height + 1 }
          if (x.kind === 'head') body = { ...body, head: cidOfBlock(encode({ head: x.at })) }
          if (x.kind === 'epoch') body = { ...body, epoch: epoch + 1 + (x.at % (CHECKPOINT_INTERVAL - 1)) }
          if (x.kind === 'label' && finalized.length > 0)
            finalized = finalized.map(([c]) => [c, 'open'] as const)
          const open = records.find((r) => r.record.kind === 'proposal' && r.record.body.closesAt > epoch)
          if (x.kind === 'early' && open && !finalized.some(([c]) => c.equals(open.cid)))
            finalized = [...finalized, [open.cid, 'final-rejected'] as const].sort(([a], [b]) =>
              compareCids(a, b),
            )
          if (finalized !== honest.finalized) {
            const list = buildList(finalized)
            body = { ...body, finalized: { root: list.root, count: list.count } }
          }
          const stewards = namesWith(sim, acc.headState(), 'steward')
          const signers =
            x.kind === 'all stewards'
              ? stewards
              : [x.by.any ? ALL[x.by.i % ALL.length]! : (pick(stewards, x.by.i) ?? 'a')]
          for (const by of signers) {
            const c = signRecord(
              { kind: 'checkpoint', federation: sim.federation, at: epoch + x.at, body },
              sim.signer(by),
              { finalized },
            )
            added.push(c)
            const derived = derivationsOf(acc)
            const after = apply(acc, c)
            const was = before.checkpoint
            if (derivationsOf(acc) !== derived) {
              moved++
              // Derived again: a new newest counted checkpoint, with another content.
              const now = after.checkpoint && acc.get(after.checkpoint.cid)!.record.body
              expect(now, 'a counted checkpoint after deriving').toBeDefined()
              if (was) expect(equalBytes(encode(now!), encode(acc.get(was.cid)!.record.body))).toBe(false)
            } else {
              quiet++
              // Nothing else moved: at most the newest counted checkpoint gained a signer, or its author equivocated.
              if (was)
                expect(after.checkpoint && acc.get(after.checkpoint.cid)!.record.body).toEqual(
                  acc.get(was.cid)!.record.body,
                )
              else expect(after.checkpoint).toBeUndefined()
              expectSame(
                {
                  ...after,
                  checkpointEquivocators: before.checkpointEquivocators,
                  ...(was ? { checkpoint: was } : {}),
                },
                before,
                'after a checkpoint that derived nothing',
              )
            }
            before = after
          }
        }
        const all = [...records, ...added]
        const batch = createFold(genesis)
        for (const r of all) batch.add(r)
        expectSame(acc.state(), batch.state(), 'after the checkpoints')
        for (const r of added) expect(acc.report(r.cid)).toEqual(batch.report(r.cid))
      }),
      PARAMS,
    )
    console.info(`checkpoints: ${quiet} derived nothing, ${moved} made a new newest counted one`)
    // Both paths ran: most checkpoints derive nothing, and some make a new newest one.
    expect(quiet).toBeGreaterThan(moved)
    expect(moved).toBeGreaterThan(0)
  })

  it('no un-finalizing: later seals for a final proposal keep it final (or make it conflicted)', () => {
    const extraSeal = fc.record({
      by: fc.nat(20),
      mask: fc.oneof(fc.constant(-1), fc.constant(0), fc.nat(1023)),
      delay: fc.nat(5000),
      wv: fc.boolean(),
      forge: fc.oneof(
        { weight: 6, arbitrary: fc.constant(false) },
        { weight: 1, arbitrary: fc.constant(true) },
      ),
    })
    let conflicted = 0
    fc.assert(
      fc.property(
        programArb,
        fc.nat(20),
        fc.array(extraSeal, { minLength: 1, maxLength: 8 }),
        (program, target, extras) => {
          const { sim, genesis, records } = build(program)
          const before = fold(genesis, records)
          const finals = [...before.proposals.values()].filter((p) => FINAL.has(p.phase))
          fc.pre(finals.length > 0)
          const p = finals[target % finals.length]!
          const electorate = sim.fold.electorate(p.cid)!
          const stewards = namesWith(sim, electorate, 'steward')
          const { sealGraceMs, sealDeadlineMs } = electorate.rules
          const votesOnP = records.filter(
            (r): r is Verified<'vote'> => r.record.kind === 'vote' && r.record.body.proposal.equals(p.cid),
          )
          const seals = extras.map((x) =>
            sim.seal(
              stewards[x.by % stewards.length]!,
              p.closesAt - sim.base + sealGraceMs + (x.delay % (sealDeadlineMs - sealGraceMs + 1)),
              {
                proposal: p.cid,
                votes: votesOnP
                  .filter((_, i) => (x.mask >> i) & 1)
                  .map((v) => v.cid)
                  .sort(compareCids),
                weightsVerified: x.wv,
                ...(x.forge ? { forgeTally: { yes: 0, no: 0, abstain: 0 } } : {}),
              },
            ),
          )
          const after = fold(genesis, [...records, ...seals])
          const q = after.proposals.get(cidKey(p.cid))!
          if (q.phase !== p.phase)
            expect(q.phase, `${p.action.type} proposal was ${p.phase}`).toBe('conflicted')
          if (q.phase === 'conflicted') {
            conflicted++
            // Two outcomes reaching t need at least 2t − n stewards who sealed both.
            const t = electorate.rules.sealThreshold
            const n = stewardsOf(electorate).length
            expect(q.equivocators.length).toBeGreaterThanOrEqual(2 * t - n)
          } else {
            // Still final with the same phase: then nothing else may change either.
            for (const [key, b] of before.proposals) {
              const a = after.proposals.get(key)!
              expect(a.phase, `${b.action.type} proposal ${b.cid}`).toBe(b.phase)
            }
            expect(after.head.equals(before.head)).toBe(true)
          }
        },
      ),
      PARAMS,
    )
    // Some runs really reach a conflict (two outcomes at the threshold).
    expect(conflicted).toBeGreaterThan(0)
  })
})
