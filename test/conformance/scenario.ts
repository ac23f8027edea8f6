/**
 * Runs one conformance scenario (format: the conformance README): turns its
 * steps into real signed records with the project's own code, passes their
 * bytes through `decodeRecord` as a node would, folds them, checks every
 * expectation, then folds the same record set in shuffled orders and checks
 * that nothing changes.
 */
import type { CID } from 'multiformats/cid'
import {
  type Action,
  type AnyVerified,
  canonicalState,
  cidKey,
  createFold,
  decodeRecord,
  equalBytes,
  type FederationState,
  type Fold,
  fold,
  proposalStatus,
  type Role,
  type Rules,
  type Verified,
} from '../../protocol/index.js'
import { prng, shuffled } from '../support/prng.js'
import { type SimMember, Simulator } from '../support/simulator.js'

type Json = Record<string, unknown>

const RULE_DEFAULTS = {
  weightsDeadlineMs: 3000,
  checkpointIntervalMs: 3_600_000,
  maxModelBytes: 2 ** 40,
  maxOpenProposalsPerAuthor: 100,
}

export interface ScenarioResult {
  readonly name: string
  readonly file: string
  readonly failures: string[]
}

function rulesOf(r: Json): Rules {
  return { ...RULE_DEFAULTS, ...r } as unknown as Rules
}

function hashName(s: string): number {
  let h = 2166136261
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619)
  return h >>> 0
}

export function runScenario(scenario: Json, file: string, shuffles = 5): ScenarioResult {
  const name = String(scenario.name ?? file)
  const failures: string[] = []
  const sim = new Simulator({
    members: scenario.members as SimMember[],
    rules: rulesOf(scenario.rules as Json),
    name,
  })
  const ids = new Map<string, CID>() // scenario ids → CIDs
  const stepRecords: { step: Json; cid?: CID; invalid?: string }[] = []
  const accepted: AnyVerified[] = []
  const live: Fold = createFold(sim.genesis)

  const ref = (id: unknown, what: string): CID => {
    const c = ids.get(String(id))
    if (!c) throw new Error(`${what} "${String(id)}" is not defined by an earlier step`)
    return c
  }
  const memberOf = (m: Json) => ({
    id: sim.did(String(m.name)),
    roles: [...(m.roles as Role[])].sort(),
    weight: m.weight as number,
  })
  const actionOf = (a: Json): Action => {
    switch (a.type) {
      case 'ratify-model':
        return { type: 'ratify-model', manifest: ref(a.manifest, 'manifest') }
      case 'revoke-model':
        return { type: 'revoke-model', manifest: ref(a.manifest, 'manifest'), reason: String(a.reason) }
      case 'admit-member':
        return { type: 'admit-member', member: memberOf(a.member as Json) }
      case 'remove-member':
        return { type: 'remove-member', id: sim.did(String(a.member)) }
      case 'replace-key':
        return { type: 'replace-key', id: sim.did(String(a.member)), newId: sim.did(String(a.newKey)) }
      case 'change-rules':
        return { type: 'change-rules', rules: rulesOf(a.rules as Json) }
      default:
        throw new Error(`unknown action type ${String(a.type)}`)
    }
  }

  try {
    for (const step of scenario.steps as Json[]) {
      const by = String(step.by)
      const at = step.at as number
      let made: AnyVerified
      let id: string | undefined
      // The simulator reads "counted" and the head from its fold: keep it equal to the records made so far.
      if (step.manifest) {
        const m = step.manifest as Json
        id = String(m.id)
        made = sim.manifest(by, at, {
          id,
          name: String(m.name),
          version: String(m.version),
          ...(m.base ? { base: ref(m.base, 'manifest') } : {}),
          ...(m.description ? { description: String(m.description) } : {}),
        })
      } else if (step.attest) {
        const a = step.attest as Json
        id = String(a.id)
        made = sim.attestation(by, at, {
          subject: ref(a.subject, 'manifest'),
          kind: String(a.kind),
          result: a.result as 'pass' | 'fail',
        })
      } else if (step.propose) {
        const p = step.propose as Json
        id = String(p.id)
        const basis =
          p.basis === undefined ? undefined : p.basis === 'genesis' ? sim.federation : ref(p.basis, 'basis')
        made = sim.proposal(by, at, {
          closesAt: p.closesAt as number,
          action: actionOf(p.action as Json),
          ...(basis ? { basis } : {}),
          title: id,
        })
      } else if (step.vote) {
        const v = step.vote as Json
        id = v.id === undefined ? undefined : String(v.id)
        made = sim.vote(by, at, {
          proposal: ref(v.proposal, 'proposal'),
          choice: v.choice as 'yes' | 'no' | 'abstain',
        })
      } else if (step.seal) {
        const s = step.seal as Json
        const proposal = ref(s.proposal, 'proposal')
        made = sim.seal(by, at, {
          proposal,
          ...(s.votes === 'counted' ? {} : { votes: (s.votes as unknown[]).map((x) => ref(x, 'vote')) }),
          ...(s.attestations === 'counted'
            ? {}
            : { attestations: (s.attestations as unknown[]).map((x) => ref(x, 'attestation')) }),
          ...(s.weightsVerified === undefined ? {} : { weightsVerified: s.weightsVerified as boolean }),
          ...(s.forgeTally
            ? { forgeTally: s.forgeTally as { yes: number; no: number; abstain: number } }
            : {}),
        })
      } else {
        throw new Error(`step without a known kind: ${JSON.stringify(step).slice(0, 80)}`)
      }
      let bytes = made.bytes
      if (step.tamper === 'signature') bytes = flipSignatureBit(made)
      // Through the front door, as a node receives it.
      const decoded = decodeRecord(bytes, { federation: sim.federation, blocks: sim.getBlock })
      if (id !== undefined) ids.set(id, made.cid)
      if (!decoded.ok) {
        stepRecords.push({ step, invalid: decoded.code })
        continue
      }
      stepRecords.push({ step, cid: decoded.value.cid })
      accepted.push(decoded.value)
      sim.add(decoded.value)
      live.add(decoded.value)
    }
  } catch (e) {
    return { name, file, failures: [`could not build the records: ${(e as Error).message}`] }
  }

  const expect = (scenario.expect ?? {}) as Json
  const now = sim.base + ((expect.now as number) ?? 0)

  const check = (state: FederationState, f: Fold, label: string): void => {
    const fail = (msg: string) => failures.push(`${label}: ${msg}`)
    for (const [pid, want] of Object.entries((expect.proposals ?? {}) as Record<string, string>)) {
      const cid = ids.get(pid)
      const view = cid && state.proposals.get(cidKey(cid))
      const got = view ? proposalStatus(view, now) : 'absent'
      if (got !== want)
        fail(`proposal ${pid} is ${got}${view?.reason ? ` (${view.reason.code})` : ''}, expected ${want}`)
    }
    for (const [key, want] of Object.entries((expect.models ?? {}) as Record<string, string>)) {
      const m = state.models.get(key)
      let got = 'unknown'
      if (m) {
        got = m.status
        if (m.status === 'ratified') {
          const mid = [...ids].find(([, c]) => c.equals(m.manifest))?.[0]
          got = `ratified:${mid ?? m.manifest!.toString()}`
        }
      }
      if (got !== want) fail(`model ${key} is ${got}, expected ${want}`)
    }
    for (const [who, want] of Object.entries((expect.members ?? {}) as Record<string, unknown>)) {
      const m = state.members.find((x) => x.id === sim.did(who))
      if (want === 'absent') {
        if (m) fail(`member ${who} is present, expected absent`)
        continue
      }
      const w = want as { roles: string[]; weight: number }
      if (!m) {
        fail(`member ${who} is absent`)
        continue
      }
      const roles = [...w.roles].sort().join(',')
      if (m.roles.join(',') !== roles || m.weight !== w.weight) {
        fail(
          `member ${who} has roles ${m.roles.join(',')} weight ${m.weight}, expected ${roles} weight ${w.weight}`,
        )
      }
    }
    for (const [pid, want] of Object.entries(
      (expect.tally ?? {}) as Record<string, { yes: number; no: number; abstain: number }>,
    )) {
      const cid = ids.get(pid)
      const t = cid && state.proposals.get(cidKey(cid))?.tally
      if (!t || t.yes !== want.yes || t.no !== want.no || t.abstain !== want.abstain) {
        fail(
          `tally of ${pid} is ${t ? `${t.yes}/${t.no}/${t.abstain}` : 'absent'}, expected ${want.yes}/${want.no}/${want.abstain}`,
        )
      }
    }
    for (const [pid, want] of Object.entries((expect.equivocators ?? {}) as Record<string, string[]>)) {
      const cid = ids.get(pid)
      const got = (cid && state.proposals.get(cidKey(cid))?.equivocators) || []
      const names = got.map((d) => sim.nameOf(d) ?? d).sort()
      if (names.join(',') !== [...want].sort().join(','))
        fail(`equivocators of ${pid} are [${names}], expected [${want}]`)
    }
    for (const [i, s] of stepRecords.entries()) {
      const rejectedWanted = s.step.expectRejected === true
      let rejected: boolean
      let how: string
      if (s.invalid) {
        rejected = true
        how = `invalid (${s.invalid})`
      } else {
        const r = f.report(s.cid!)
        rejected = r?.status === 'inapplicable' || r?.status === 'invalid'
        how = r ? (r.status === 'applied' ? 'applied' : `${r.status} (${r.code})`) : 'unreported'
      }
      if (rejected !== rejectedWanted)
        fail(
          `step ${i + 1} (${Object.keys(s.step).find((k) => !['at', 'by', 'expectRejected', 'tamper'].includes(k))} by ${s.step.by} at ${s.step.at}) is ${how}, expected ${rejectedWanted ? 'rejected' : 'not rejected'}`,
        )
    }
  }

  const state = live.state()
  check(state, live, 'in arrival order')
  const reference = canonicalState(state)
  const rand = prng(hashName(name))
  for (let k = 1; k <= shuffles; k++) {
    const order = shuffled(accepted, rand)
    // Duplicates too: a record seen twice must change nothing.
    if (k % 2 === 0 && order.length > 0) order.push(order[0]!)
    const f = createFold(sim.genesis)
    for (const r of order) f.add(r)
    const s = f.state()
    check(s, f, `shuffle ${k}`)
    if (!equalBytes(canonicalState(s), reference))
      failures.push(`shuffle ${k}: the state differs from the arrival-order state`)
  }
  // The batch entry point agrees as well.
  if (!equalBytes(canonicalState(fold(sim.genesis, accepted)), reference))
    failures.push('fold() differs from the accumulator')
  return { name, file, failures: [...new Set(failures)] }
}

function flipSignatureBit(v: AnyVerified): Uint8Array {
  // The signature is the last 64 bytes of every non-genesis record (key "sig" sorts last among our keys).
  const bytes = Uint8Array.from(v.bytes)
  const sig = (v as Verified).record.sig
  for (let i = bytes.length - 64; i >= 0; i--) {
    if (equalBytes(bytes.subarray(i, i + 64), sig)) {
      bytes[i + 10]! ^= 0x01
      return bytes
    }
  }
  throw new Error('signature bytes not found')
}
