/**
 * A steward node's duty to seal (DESIGN.md §4): after `closesAt +
 * sealGraceMs` it syncs with the peers it is connected to (bounded), then
 * signs exactly one seal per proposal, persisted before it is published and
 * never a second, counting only the votes and attestations it received
 * before its clock passed `closesAt + sealGraceMs/2`. It never seals a
 * proposal it first saw after `at + sealGraceMs` (a backdated proposal),
 * seals proposals in `(closesAt, CID)` order (governance decisions on one
 * basis), and never seals a second ratification of a `name@version` that is
 * already ratified. A ratification whose tally passes is sealed
 * `weightsVerified: true` once the weights check passes, or `false` at
 * `closesAt + weightsDeadlineMs`; one whose tally fails is sealed `false`
 * without looking at the weights.
 *
 * "Never a second" holds across restarts: the node's own seals are records
 * in its log, so a restarted steward finds them and does not seal again.
 */

import type { CID } from 'multiformats/cid'
import {
  type AnyVerified,
  checkpointFor,
  cidKey,
  compareCids,
  hasRole,
  type ProposalView,
  type Signer,
  sealContent,
  signRecord,
  type Verified,
} from '../protocol/index.js'
import type { Logger } from './log.js'
import type { RecordStore } from './store.js'

export interface StewardOptions {
  readonly store: RecordStore
  readonly signer: Signer
  readonly clock: () => number
  readonly log: Logger
  /** Best-effort gossip of a seal already made durable. */
  readonly publish: (bytes: Uint8Array) => Promise<unknown>
  /** One bounded sync round with every connected peer, before sealing. */
  readonly syncPeers: () => Promise<unknown>
  /**
   * The weights check of a manifest: true when every file is held and verified, false when
   * they can never pass (wrong bytes), undefined when not (yet) available.
   */
  readonly checkWeights?: (
    manifest: Verified<'manifest'>,
    maxModelBytes: number,
  ) => Promise<boolean | undefined>
  /** How often the duty runs (default 500 ms). */
  readonly tickMs?: number
}

export interface Steward {
  readonly did: string
  /** Runs the duty once now (tests; the timer runs it too). */
  tick(): Promise<void>
  stop(): Promise<void>
}

/** Phases of a proposal that can be sealed: valid ones (final or not). */
const UNSEALABLE = new Set(['void', 'pending'])

export function createSteward(options: StewardOptions): Steward {
  const { store, signer, clock, log } = options
  const fold = store.fold
  /** The manifest a ratify-model proposal names, and its `name@version`. */
  const ratifies = (proposal: CID) => {
    const action = (fold.get(proposal) as Verified<'proposal'> | undefined)?.record.body.action
    if (action?.type !== 'ratify-model') return undefined
    const manifest = fold.get(action.manifest) as Verified<'manifest'> | undefined
    return { manifest, version: manifest && `${manifest.record.body.name}@${manifest.record.body.version}` }
  }
  // Proposals this steward has sealed, or has decided never to seal.
  const done = new Set<string>()
  // name@version → ratifications this steward sealed passed with its weights verified. Another
  // ratification of the version waits while one of them may still become final: two sealed in
  // one run (closing together) would otherwise both pass, and the version be conflicted.
  const pledged = new Map<string, CID[]>()
  const pledge = (proposal: CID) => {
    const version = ratifies(proposal)?.version
    if (version !== undefined) pledged.set(version, [...(pledged.get(version) ?? []), proposal])
  }
  const deferred = new Set<string>()
  // The newest epoch this steward signed a checkpoint for.
  let signedEpoch = -1
  // What this steward did before a restart: its own seals and checkpoints are in the log.
  for (const r of fold.records()) {
    if (r.record.author !== signer.did) continue
    if (r.record.kind === 'seal') {
      done.add(cidKey(r.record.body.proposal))
      if (r.record.body.outcome === 'passed' && r.record.body.weightsVerified === true)
        pledge(r.record.body.proposal)
    } else if (r.record.kind === 'checkpoint') signedEpoch = Math.max(signedEpoch, r.record.body.epoch)
  }

  /**
   * SPEC.md §11.2: for the newest epoch boundary E (a multiple of checkpointIntervalMs) with
   * E + sealDeadlineMs passed, sign checkpointFor(state, E) once. Only the newest: a steward
   * that was down does not sign the epochs it missed.
   */
  const checkpoint = async (now: number): Promise<void> => {
    const head = fold.headState()
    if (!hasRole(head, signer.did, 'steward')) return
    const { checkpointIntervalMs: interval, sealDeadlineMs } = head.rules
    const epoch = Math.floor((now - sealDeadlineMs) / interval) * interval
    // Nothing to vouch for before the federation existed.
    if (epoch < fold.state().genesis.record.at || epoch <= signedEpoch) return
    const content = checkpointFor(fold.state(), epoch)
    const record = signRecord(
      { kind: 'checkpoint', federation: fold.federation, at: now, body: content.body },
      signer,
      {
        finalized: content.finalized,
      },
    )
    const res = await store.ingest(
      record.bytes,
      content.blocks.map((b) => b.bytes),
    )
    if (res.verdict !== 'accept') {
      log.error('checkpoint-not-taken', { epoch, code: res.code, message: res.message })
      return
    }
    signedEpoch = epoch
    log.info('checkpoint-signed', {
      epoch,
      height: content.body.height,
      stateRoot: content.body.stateRoot.toString(),
      finalized: content.finalized.length,
    })
    await options.publish(record.bytes).catch(() => {})
  }

  const witnessedBy = (cutoff: number) => (r: AnyVerified) => (store.witnessedAt(r.key) ?? Infinity) <= cutoff

  const sealOne = async (p: ProposalView, now: number): Promise<void> => {
    const key = cidKey(p.cid)
    const rules = p.rules!
    const proposal = fold.get(p.cid) as Verified<'proposal'>
    const electorate = fold.electorate(p.cid)
    if (!electorate || !hasRole(electorate, signer.did, 'steward')) {
      done.add(key)
      return
    }
    const seen = store.witnessedAt(proposal.key)
    if (seen === undefined || seen > p.at + rules.sealGraceMs) {
      done.add(key)
      log.warn('seal-refused', {
        proposal: p.cid.toString(),
        reason: seen === undefined ? 'never witnessed here' : 'first seen after at + sealGraceMs (backdated)',
      })
      return
    }
    const cutoff = p.closesAt + Math.floor(rules.sealGraceMs / 2)
    const votes = fold.countedVotes(p.cid, witnessedBy(cutoff))
    const attestations = fold.countedAttestations(p.cid, witnessedBy(cutoff))
    let weightsVerified: boolean | undefined
    const action = proposal.record.body.action
    if (action.type === 'ratify-model') {
      const { manifest, version } = ratifies(p.cid)!
      const state = fold.state()
      const model = version ? state.models.get(version) : undefined
      // Already ratified (or conflicted: more than one manifest ratified) by another decision: no
      // further ratification is sealed. A steward still adds its seal to a decision that made it so.
      const decidedHere =
        manifest && state.manifests.get(cidKey(manifest.cid))?.ratifiedBy.some((c) => c.equals(p.cid))
      if ((model?.status === 'ratified' || model?.status === 'conflicted') && !decidedHere) {
        done.add(key)
        log.info('seal-refused', { proposal: p.cid.toString(), reason: `${version} is already ratified` })
        return
      }
      const passes = sealContent(fold, p.cid, { votes, attestations, weightsVerified: true })
      const rival = (version ? (pledged.get(version) ?? []) : []).find((c) => {
        const view = state.proposals.get(cidKey(c))
        return !c.equals(p.cid) && view?.phase === 'undecided' && now < view.closesAt + rules.sealDeadlineMs
      })
      if (passes?.body.outcome === 'passed' && rival) {
        if (!deferred.has(key)) {
          deferred.add(key)
          log.info('seal-deferred', {
            proposal: p.cid.toString(),
            reason: `this steward sealed another ratification of ${version} (${rival}), which may still pass`,
          })
        }
        return // until that one is decided (or can no longer be)
      }
      if (passes?.body.outcome !== 'passed') weightsVerified = false
      else if (manifest && (await options.checkWeights?.(manifest, rules.maxModelBytes)) === true)
        weightsVerified = true
      else if (now >= p.closesAt + rules.weightsDeadlineMs) weightsVerified = false
      else return // wait for the weights, until the deadline
    }
    const content = sealContent(fold, p.cid, {
      votes,
      attestations,
      ...(weightsVerified !== undefined ? { weightsVerified } : {}),
    })
    if (!content) return
    const seal = signRecord(
      { kind: 'seal', federation: fold.federation, at: now, body: content.body },
      signer,
      { lists: content.lists },
    )
    // Durable first: a seal is never published (nor signed again) unless it is in our log.
    const res = await store.ingest(
      seal.bytes,
      content.blocks.map((b) => b.bytes),
    )
    if (res.verdict !== 'accept') {
      log.error('seal-not-taken', { proposal: p.cid.toString(), code: res.code, message: res.message })
      return
    }
    done.add(key)
    if (content.body.outcome === 'passed' && weightsVerified === true) pledge(p.cid)
    log.info('sealed', {
      proposal: p.cid.toString(),
      outcome: content.body.outcome,
      votes: votes.length,
      ...(weightsVerified !== undefined ? { weightsVerified } : {}),
    })
    await options.publish(seal.bytes).catch(() => {})
  }

  let running: Promise<void> | undefined
  let stopped = false
  const tick = (): Promise<void> => {
    if (running) return running
    const work = (async () => {
      try {
        const now = clock()
        const due = [...fold.state().proposals.values()]
          .filter(
            (p) =>
              !done.has(cidKey(p.cid)) &&
              !UNSEALABLE.has(p.phase) &&
              p.rules !== undefined &&
              now >= p.closesAt + p.rules.sealGraceMs &&
              now <= p.closesAt + p.rules.sealDeadlineMs,
          )
          .sort((a, b) => a.closesAt - b.closesAt || compareCids(a.cid, b.cid))
        if (due.length > 0) {
          await options.syncPeers()
          for (const p of due) {
            if (stopped) return
            await sealOne(p, clock())
          }
        }
        if (!stopped) await checkpoint(clock())
      } catch (e) {
        log.error('steward-failed', { error: e as Error })
      }
    })()
    // Cleared only once the run is over (a run with nothing due finishes synchronously).
    running = work.finally(() => {
      running = undefined
    })
    return running
  }

  const timer = setInterval(() => void tick(), options.tickMs ?? 500)
  timer.unref()
  return {
    did: signer.did,
    tick,
    async stop() {
      stopped = true
      clearInterval(timer)
      await running
    },
  }
}
