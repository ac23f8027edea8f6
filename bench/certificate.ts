/**
 * Benchmark: certificate size and offline verification time, compact and full (SPEC.md §12;
 * docs/adr/0020 holds the figures).
 *
 *   npx tsx bench/certificate.ts [decisions=100] [votes=10000] [governanceVoters=3] [modes=compact,full]
 *
 * A federation of 3 stewards and 1,000 voters makes `decisions` governance decisions (admissions,
 * key replacements, rule changes), each voted by `governanceVoters` members (the 3 stewards
 * first, then voters), then ratifies a model with `votes` votes (every voter votes, most change
 * their vote several times; a seal names each voter's latest vote only), and 2 of 3 stewards sign
 * a checkpoint. For each mode it reports the certificate's size, the export time and
 * `verifyCertificate` time per Ed25519 backend, against a reference measured in the same run:
 * bare node:crypto verification of the signatures that certificate carries.
 */
import '../node/polyfill.js'
import { createPublicKey, verify as nodeVerify } from 'node:crypto'
import { CarBufferReader } from '@ipld/car/buffer-reader'
import { fastEd25519, nativeSigner, spkiDer } from '../node/ed25519-native.js'
import {
  type Action,
  type AnyVerified,
  buildList,
  type CertificateMode,
  type CID,
  compareCids,
  decodeRecord,
  exportCertificate,
  parseDid,
  type Role,
  type SignedRecord,
  signingBytes,
  signRecord,
  type Verified,
  verifyCertificate,
  zip215,
} from '../protocol/index.js'
import { rulesWith, type SimMember, Simulator } from '../test/support/simulator.js'

const DECISIONS = Number(process.argv[2] ?? 100)
const VOTES = Number(process.argv[3] ?? 10_000)
const GOVERNANCE_VOTERS = Number(process.argv[4] ?? 3)
const MODES = (process.argv[5] ?? 'compact,full').split(',') as CertificateMode[]
const VOTERS = 1000

const stewards = ['s1', 's2', 's3']
const members: SimMember[] = [
  { name: 's1', roles: ['publisher', 'steward', 'voter'] as Role[], weight: 150 },
  { name: 's2', roles: ['auditor', 'steward', 'voter'] as Role[], weight: 150 },
  { name: 's3', roles: ['steward', 'voter'] as Role[], weight: 150 },
  ...Array.from({ length: VOTERS }, (_, i) => ({ name: `v${i}`, roles: ['voter'] as Role[], weight: 1 })),
]
const rules = (period: number) =>
  rulesWith({
    votingPeriodMs: period,
    actions: {
      'ratify-model': {
        quorum: [1, 2],
        threshold: [1, 2],
        requiredAttestations: [{ kind: 'license-review', min: 1 }],
      },
      '*': { quorum: [1, 4], threshold: [1, 2], requiredAttestations: [] },
    },
  })
const sim = new Simulator({ members, rules: rules(1000), signer: nativeSigner, name: 'certificate bench' })

/** Admissions, a voter's key replaced every 20 decisions, and the rules changed every 20. */
function governanceAction(i: number): Action {
  if (i % 20 === 10) {
    // Replace a voter's key: the member keeps its place under a new name's key.
    const old = voters[i]!
    const next = `${old}-k${i}`
    voters[i] = next
    return { type: 'replace-key', id: sim.did(old), newId: sim.did(next) }
  }
  // A new voting period each time, always within the 1,200 ms every proposal here runs for.
  if (i % 20 === 19) return { type: 'change-rules', rules: rules(1000 + (i % 200)) }
  const name = `n${i}`
  voters.push(name)
  return { type: 'admit-member', member: { id: sim.did(name), roles: ['voter'], weight: 1 } }
}

/** A steward's seal naming `ballots`, all yes, with their tally: what an honest steward signs. */
function passedSeal(
  by: string,
  at: number,
  proposal: CID,
  ballots: readonly Verified<'vote'>[],
  yes: number,
) {
  const votes = buildList(ballots.map((b) => b.cid))
  const none = buildList([])
  const body = {
    proposal,
    votes: { root: votes.root, count: votes.count },
    attestations: { root: none.root, count: 0 },
    tally: { yes, no: 0, abstain: 0 },
    outcome: 'passed' as const,
  }
  const lists = { votes: ballots.map((b) => b.cid).sort(compareCids), attestations: [] }
  return signRecord({ kind: 'seal', federation: sim.federation, at: sim.base + at, body }, sim.signer(by), {
    lists,
  })
}

const started = performance.now()
let t = 100
const voters = Array.from({ length: VOTERS }, (_, i) => `v${i}`)
const weightOf = (name: string) => (stewards.includes(name) ? 150 : 1)
// The chain is signed first and folded in one go: folding as it grows re-derives the state after
// every decision, which takes minutes once each decision has hundreds of votes.
const chain: AnyVerified[] = []
let basis = sim.federation
for (let i = 0; i < DECISIONS; i++) {
  // The stewards first, then voters, as members of the state the decision is made in.
  const governanceVoters = [...stewards, ...voters].slice(0, GOVERNANCE_VOTERS)
  const p = sim.proposal('s1', t, { closesAt: t + 1200, basis, action: governanceAction(i) })
  const ballots = governanceVoters.map((v) => sim.vote(v, t + 10, { proposal: p.cid, choice: 'yes' }))
  const yes = governanceVoters.reduce((sum, v) => sum + weightOf(v), 0)
  const seals = ['s1', 's2'].map((s) => passedSeal(s, t + 1400, p.cid, ballots, yes))
  chain.push(p, ...ballots, ...seals)
  basis = p.cid
  t += 1500
}
for (const record of chain) sim.add(record)
const height = sim.fold.state().height
if (height !== DECISIONS) throw new Error(`the chain reached height ${height}, not ${DECISIONS}`)
const m = sim.manifest('s1', t, { id: 'big-model', name: 'big-model', version: '1.0.0' })
sim.add(m)
sim.add(sim.attestation('s2', t + 1, { subject: m.cid, kind: 'license-review', result: 'pass' }))
const ratify = sim.proposal('s1', t + 2, {
  closesAt: t + 100_000,
  action: { type: 'ratify-model', manifest: m.cid },
})
sim.add(ratify)
let votes = 0
for (let round = 0; votes < VOTES; round++) {
  for (const [k, v] of [...stewards, ...voters].entries()) {
    if (votes >= VOTES) break
    sim.add(
      sim.vote(v, t + 10 + round, { proposal: ratify.cid, choice: (round + k) % 4 === 0 ? 'no' : 'yes' }),
    )
    votes++
  }
}
sim.add(
  sim.seal('s1', t + 100_200, { proposal: ratify.cid }),
  sim.seal('s3', t + 100_200, { proposal: ratify.cid }),
)
// The first checkpoint boundary after the ratification closed.
const interval = rules(1000).checkpointIntervalMs
const epoch = Math.ceil((t + 100_000) / interval) * interval
sim.add(sim.checkpoint('s1', epoch + 6000, epoch), sim.checkpoint('s2', epoch + 6000, epoch))
const state = sim.fold.state()
const counted = sim.fold.countedVotes(ratify.cid).length
console.log(
  `built: ${DECISIONS} governance decisions (height ${height}) voted by ${GOVERNANCE_VOTERS} members each, ` +
    `${votes} votes on the ratification (${counted} counted), ${state.recordCount} records, ` +
    `in ${((performance.now() - started) / 1000).toFixed(1)} s`,
)

const now = sim.base + epoch + 6000
const verifyTimes = (car: Uint8Array, backend: typeof zip215, n: number) => {
  const times: number[] = []
  let ok = true
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    const v = verifyCertificate(sim.federation, car, { now, ed25519: backend })
    times.push(performance.now() - t0)
    if (!v.ok) console.log(v.problems.slice(0, 5))
    ok &&= v.ok
  }
  times.sort((a, b) => a - b)
  return { median: times[Math.floor(times.length / 2)]!, ok }
}

/** Reference: node:crypto verification of every signature in the certificate, nothing else. */
function bareVerification(car: Uint8Array): { signatures: number; blocks: number; ms: number } {
  const sigs: { msg: Uint8Array; sig: Uint8Array; key: ReturnType<typeof createPublicKey> }[] = []
  let blocks = 0
  const keyOf = (did: string) => {
    const pub = parseDid(did)
    return pub.ok ? createPublicKey({ key: spkiDer(pub.value), format: 'der', type: 'spki' }) : undefined
  }
  for (const b of CarBufferReader.fromBytes(car).blocks()) {
    blocks++
    const d = decodeRecord(b.bytes)
    if (!d.ok) continue
    const r = d.value.record as SignedRecord
    const msg = signingBytes(r)
    for (const [id, sig] of [
      [r.author, r.sig] as const,
      ...(r.cosigs ?? []).map((c) => [c.id, c.sig] as const),
    ]) {
      const key = keyOf(id)
      if (key) sigs.push({ msg, sig, key })
    }
  }
  const t0 = performance.now()
  for (const s of sigs) if (!nodeVerify(null, s.msg, s.key, s.sig)) throw new Error('reference verify failed')
  return { signatures: sigs.length, blocks, ms: performance.now() - t0 }
}

let allOk = true
console.log('')
console.log('| mode | measure | figure | reference (same run) | ratio |')
console.log('| --- | --- | --- | --- | --- |')
for (const mode of MODES) {
  const e0 = performance.now()
  let car: Uint8Array
  try {
    car = exportCertificate(sim.fold, 'big-model@1.0.0', { mode }).bytes
  } catch (e) {
    console.log(`| ${mode} | export | refused: ${(e as Error).message} | | |`)
    continue
  }
  const exportMs = performance.now() - e0
  // The first verification in a process also checks every genesis key's order (~1.5 ms per key, remembered after).
  const first = verifyTimes(car, fastEd25519, 1)
  const bare = bareVerification(car)
  const fast = verifyTimes(car, fastEd25519, 5)
  const noble = verifyTimes(car, zip215, 1)
  allOk &&= first.ok && fast.ok && noble.ok
  const kib = (car.length / 1024).toFixed(0)
  console.log(`| ${mode} | size | ${kib} KiB, ${bare.blocks} blocks, ${bare.signatures} signatures | | |`)
  console.log(`| ${mode} | export | ${exportMs.toFixed(0)} ms | | |`)
  console.log(`| ${mode} | verify, node:crypto, first in the process | ${first.median.toFixed(0)} ms | | |`)
  console.log(
    `| ${mode} | verify, node:crypto (median of 5 more) | ${fast.median.toFixed(0)} ms | bare node:crypto verify of its ${bare.signatures} signatures: ${bare.ms.toFixed(0)} ms | ${(fast.median / bare.ms).toFixed(2)}× |`,
  )
  console.log(
    `| ${mode} | verify, noble | ${noble.median.toFixed(0)} ms | node:crypto ${fast.median.toFixed(0)} ms | ${(noble.median / fast.median).toFixed(1)}× |`,
  )
}
console.log('')
console.log(`verified: ${allOk}`)
if (!allOk) process.exit(1)
