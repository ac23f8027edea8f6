/**
 * Benchmark: the fold at scale (issue: governance fold).
 *
 *   npx tsx bench/fold.ts [proposals=1000] [votesPerProposal=100]
 *
 * Builds a federation with 1,000 ratify proposals and 100,000 votes (100
 * voters each voting on every proposal, some changing their vote) plus 3
 * steward seals per proposal, then reports:
 *   - decode + verify of every record, per Ed25519 backend (noble is timed on
 *     a sample and extrapolated, since 100k noble verifies take ~100 s);
 *   - the fold itself (signatures already checked), against a reference
 *     measured in the same run: decoding the same bytes with @ipld/dag-cbor;
 *   - `apply` of one vote (and of one seal) on a state of that size, against
 *     re-folding everything;
 *   - `apply` of one checkpoint that cannot count (a member's copy of the
 *     counted one, or one steward's alone for a later epoch) and of one
 *     member's seal on that state, after a counted checkpoint, against one
 *     attestation in the same run.
 */
import '../node/polyfill.js'
import * as dagCbor from '@ipld/dag-cbor'
import { fastEd25519, nativeSigner } from '../node/ed25519-native.js'
import {
  type AnyVerified,
  apply,
  type CheckpointBody,
  type CID,
  canonicalState,
  checkpointFor,
  createFold,
  decodeRecord,
  derivationsOf,
  type FinalizedEntry,
  fold,
  signRecord,
  type Verified,
  zip215,
} from '../protocol/index.js'
import { type SimMember, Simulator } from '../test/support/simulator.js'

const PROPOSALS = Number(process.argv[2] ?? 1000)
const VOTES_PER = Number(process.argv[3] ?? 100)

function ms(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6
}
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

const stewards = ['s1', 's2', 's3', 's4']
const voters = Array.from({ length: VOTES_PER }, (_, i) => `v${i}`)
const members: SimMember[] = [
  ...stewards.map(
    (name, i) =>
      ({
        name,
        roles:
          i === 0
            ? ['publisher', 'steward', 'voter']
            : i === 1
              ? ['auditor', 'steward', 'voter']
              : ['steward', 'voter'],
        weight: 1,
      }) as SimMember,
  ),
  ...voters
    .slice(stewards.length)
    .map((name) => ({ name, roles: ['voter'], weight: 1 + (name.length % 3) }) as SimMember),
]
const sim = new Simulator({
  members,
  rules: {
    votingPeriodMs: 1000,
    sealThreshold: 3,
    sealGraceMs: 100,
    weightsDeadlineMs: 3000,
    sealDeadlineMs: 5000,
    checkpointIntervalMs: 3_600_000,
    maxModelBytes: 2 ** 40,
    maxOpenProposalsPerAuthor: 100_000,
    actions: { '*': { quorum: [1, 2], threshold: [1, 2], requiredAttestations: [] } },
  },
  signer: nativeSigner,
  name: 'bench',
})
const allVoters = [...stewards, ...voters.slice(stewards.length)]

let t0 = process.hrtime.bigint()
const records: AnyVerified[] = []
const proposals: Verified<'proposal'>[] = []
for (let i = 0; i < PROPOSALS; i++) {
  const m = sim.manifest('s1', i, { id: `m${i}`, name: `model-${i}`, version: '1.0.0' })
  const p = sim.proposal('s1', 10 + i, {
    closesAt: 2000 + i,
    action: { type: 'ratify-model', manifest: m.cid },
    basis: sim.federation,
  })
  sim.add(m, p)
  records.push(m, p)
  proposals.push(p)
}
let voteCount = 0
for (const [i, p] of proposals.entries()) {
  for (const [j, voter] of allVoters.entries()) {
    // One in ten voters first votes no, then changes to yes.
    if ((i + j) % 10 === 0) {
      const first = sim.vote(voter, 20 + i, { proposal: p.cid, choice: 'no' })
      records.push(first)
      sim.add(first)
      voteCount++
      continue
    }
    const v = sim.vote(voter, 30 + i, { proposal: p.cid, choice: j % 4 === 0 ? 'no' : 'yes' })
    records.push(v)
    sim.add(v)
    voteCount++
  }
}
// Seals: counted votes are computed once per proposal, before any seal is added.
const counted = new Map<string, CID[]>(proposals.map((p) => [p.cid.toString(), sim.fold.countedVotes(p.cid)]))
const seals: AnyVerified[] = []
for (const [i, p] of proposals.entries()) {
  for (const s of stewards.slice(0, 3)) {
    seals.push(
      sim.seal(s, 2200 + i, { proposal: p.cid, votes: counted.get(p.cid.toString())!, attestations: [] }),
    )
  }
}
records.push(...seals)
const buildMs = ms(t0)
console.log(
  `built ${records.length} records (${PROPOSALS} proposals, ${voteCount} votes, ${seals.length} seals) in ${buildMs.toFixed(0)} ms`,
)

// 1. Decode + verify, per backend.
const bytes = records.map((r) => r.bytes)
const opts = { federation: sim.federation, blocks: sim.getBlock }
t0 = process.hrtime.bigint()
let verified: AnyVerified[] = []
for (const b of bytes) {
  const r = decodeRecord(b, { ...opts, ed25519: fastEd25519 })
  if (!r.ok) throw new Error(`unexpected rejection: ${r.code}`)
  verified.push(r.value)
}
const nativeMs = ms(t0)
const sample = Math.min(5000, bytes.length)
t0 = process.hrtime.bigint()
for (let i = 0; i < sample; i++) {
  const r = decodeRecord(bytes[Math.floor((i * bytes.length) / sample)]!, { ...opts, ed25519: zip215 })
  if (!r.ok) throw new Error(`unexpected rejection: ${r.code}`)
}
const nobleMs = (ms(t0) / sample) * bytes.length

// Reference: just decoding the same bytes.
t0 = process.hrtime.bigint()
for (const b of bytes) dagCbor.decode(b)
const decodeMs = ms(t0)

// 2. The fold itself (best of 3).
const foldRuns: number[] = []
let state = fold(sim.genesis, verified)
for (let k = 0; k < 3; k++) {
  t0 = process.hrtime.bigint()
  state = fold(sim.genesis, verified)
  foldRuns.push(ms(t0))
}
const foldMs = Math.min(...foldRuns)
const foldedRecords = verified.length
const finals = [...state.proposals.values()].filter((p) => p.phase === 'final-passed').length

// 3. apply of one vote / one seal on a state of that size.
const acc = createFold(sim.genesis)
for (const r of verified) acc.add(r)
acc.state()
const open = sim.proposal('s1', 5000, {
  closesAt: 900_000,
  action: { type: 'ratify-model', manifest: (records[0] as Verified<'manifest'>).cid },
  basis: sim.federation,
})
apply(acc, open)
const extraVotes = allVoters.map((v, j) => sim.vote(v, 6000 + j, { proposal: open.cid, choice: 'yes' }))
const voteTimes: number[] = []
for (const v of extraVotes) {
  t0 = process.hrtime.bigint()
  apply(acc, v)
  voteTimes.push(ms(t0))
}
const lateSeal = sim.seal('s4', 2200, {
  proposal: proposals[0]!.cid,
  votes: counted.get(proposals[0]!.cid.toString())!,
  attestations: [],
})
t0 = process.hrtime.bigint()
apply(acc, lateSeal)
const sealMs = ms(t0)

// 4. Checkpoints that cannot count, against attestations, after a counted checkpoint.
const EPOCH = 3_600_000
const content = checkpointFor(acc.state(), sim.base + EPOCH)
const signCheckpoint = (by: string, at: number, body: CheckpointBody, finalized: readonly FinalizedEntry[]) =>
  signRecord({ kind: 'checkpoint', federation: sim.federation, at: sim.base + at, body }, sim.signer(by), {
    finalized,
  })
const countedCheckpoints = stewards
  .slice(0, 3)
  .map((s, k) => signCheckpoint(s, EPOCH + 10_000 + k, content.body, content.finalized))
for (const c of countedCheckpoints) apply(acc, c)
if (!acc.state().checkpoint) throw new Error('the checkpoint signed by three stewards does not count')
const STREAM = 50
const later = (k: number): CheckpointBody => ({ ...content.body, epoch: sim.base + EPOCH * (k + 2) })
const memberCopies = Array.from({ length: STREAM }, (_, k) =>
  signCheckpoint(voters[10 + k]!, EPOCH + 20_000 + k, later(k), content.finalized),
)
const loneSteward = Array.from({ length: STREAM }, (_, k) =>
  signCheckpoint('s4', EPOCH + 30_000 + k, later(STREAM + k), content.finalized),
)
const memberSeals = Array.from({ length: STREAM }, (_, k) =>
  sim.seal(voters[10 + k]!, 2200 + k, {
    proposal: proposals[k]!.cid,
    votes: counted.get(proposals[k]!.cid.toString())!,
    attestations: [],
  }),
)
const attestations = Array.from({ length: STREAM }, (_, k) =>
  sim.attestation('s2', 40_000 + k, {
    subject: (records[2 * k] as Verified<'manifest'>).cid,
    kind: 'eval',
    result: 'pass',
  }),
)
const timed = (rs: readonly AnyVerified[]): number[] =>
  rs.map((r) => {
    const t = process.hrtime.bigint()
    apply(acc, r)
    return ms(t)
  })
const attestationMs = median(timed(attestations))
const derivedBefore = derivationsOf(acc)
const memberCopyMs = median(timed(memberCopies))
const loneStewardMs = median(timed(loneSteward))
const memberSealMs = median(timed(memberSeals))
const derivedByStream = derivationsOf(acc) - derivedBefore
verified = [
  ...verified,
  open,
  ...extraVotes,
  lateSeal,
  ...countedCheckpoints,
  ...attestations,
  ...memberCopies,
  ...loneSteward,
  ...memberSeals,
]
const same =
  Buffer.compare(
    Buffer.from(canonicalState(acc.state())),
    Buffer.from(canonicalState(fold(sim.genesis, verified))),
  ) === 0

const rate = (n: number, msv: number) => `${Math.round((n / msv) * 1000).toLocaleString('en')}/s`
console.log('')
console.log('| measure | figure | reference (same run) | ratio |')
console.log('| --- | --- | --- | --- |')
console.log(
  `| decode + verify, node:crypto (ZIP-215 fallback) | ${nativeMs.toFixed(0)} ms (${rate(bytes.length, nativeMs)}) | dag-cbor decode only ${decodeMs.toFixed(0)} ms | ${(nativeMs / decodeMs).toFixed(1)}× |`,
)
console.log(
  `| decode + verify, noble (sampled ${sample}) | ~${nobleMs.toFixed(0)} ms (${rate(bytes.length, nobleMs)}) | node:crypto ${nativeMs.toFixed(0)} ms | ${(nobleMs / nativeMs).toFixed(1)}× |`,
)
console.log(
  `| fold, signatures checked (${foldedRecords} records) | ${foldMs.toFixed(0)} ms | dag-cbor decode only ${decodeMs.toFixed(0)} ms | ${(foldMs / decodeMs).toFixed(2)}× |`,
)
console.log(`| fold + verify, node:crypto | ${(foldMs + nativeMs).toFixed(0)} ms | | |`)
console.log(`| fold + verify, noble | ~${(foldMs + nobleMs).toFixed(0)} ms | | |`)
console.log(
  `| apply one vote (median of ${voteTimes.length}) | ${median(voteTimes).toFixed(3)} ms (max ${Math.max(...voteTimes).toFixed(3)}) | re-fold ${foldMs.toFixed(0)} ms | 1/${Math.round(foldMs / median(voteTimes)).toLocaleString('en')} |`,
)
console.log(
  `| apply one seal (re-derives) | ${sealMs.toFixed(1)} ms | re-fold ${foldMs.toFixed(0)} ms | ${(sealMs / foldMs).toFixed(2)}× |`,
)
console.log(`| apply one attestation (median of ${STREAM}) | ${attestationMs.toFixed(3)} ms | | |`)
console.log(
  `| apply one checkpoint by a non-steward (median of ${STREAM}) | ${memberCopyMs.toFixed(3)} ms | attestation ${attestationMs.toFixed(3)} ms | ${(memberCopyMs / attestationMs).toFixed(1)}× |`,
)
console.log(
  `| apply one checkpoint by one steward, below the threshold (median of ${STREAM}) | ${loneStewardMs.toFixed(3)} ms | attestation ${attestationMs.toFixed(3)} ms | ${(loneStewardMs / attestationMs).toFixed(1)}× |`,
)
console.log(
  `| apply one seal by a non-steward (median of ${STREAM}) | ${memberSealMs.toFixed(3)} ms | attestation ${attestationMs.toFixed(3)} ms | ${(memberSealMs / attestationMs).toFixed(1)}× |`,
)
console.log('')
console.log(`final-passed proposals: ${finals}/${PROPOSALS}; incremental state equals batch fold: ${same}`)
console.log(
  `checkpoints and seals that cannot count: ${3 * STREAM} applied, ${derivedByStream} re-derivations`,
)
if (!same || finals !== PROPOSALS || derivedByStream !== 0) process.exit(1)
