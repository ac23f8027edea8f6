/**
 * The replication report (docs/adr/0029-holding-announcements.md): per ratified version, who holds
 * its weights (live announcements that are not withdrawn), where, when they last verified them,
 * and the member each node is bound to. A version is flagged below `minHolders` holders, counting
 * only affiliated ones once any member has bound a node: peer ids cost nothing, so a stranger's
 * announcements must not lift the flag. Read from the fold (what is ratified, which weights a manifest names) and the
 * holdings store; it decides nothing in the fold.
 */
import type { CID } from 'multiformats/cid'
import { cidKey, type Did, type FederationState, type Fold, type ModelView } from '../../protocol/index.js'
import type { HoldingsStore } from './store.js'

export interface Holder {
  readonly peer: string
  /** The member whose current binding names this peer; null when none or several do. */
  readonly member: Did | null
  /** The member's display name, once the federation records one (null until then). */
  readonly name: string | null
  readonly gateways: readonly string[]
  readonly verifiedAt: number
}

export interface ReplicationEntry {
  /** `name@version` */
  readonly model: string
  readonly manifest: string
  readonly weights: string
  readonly status: ModelView['status']
  readonly holders: readonly Holder[]
  /** Of the holders, those affiliated with a member (SPEC §15.3). */
  readonly affiliatedHolders: number
  readonly flagged: boolean
}

export interface ReplicationReport {
  readonly minHolders: number
  readonly versions: readonly ReplicationEntry[]
}

/** The weights root a held manifest names. */
export function weightsOf(fold: Pick<Fold, 'get'>, manifest: CID): CID | undefined {
  const r = fold.get(manifest)
  return r?.record.kind === 'manifest' ? r.record.body.weights : undefined
}

/**
 * Which weights roots the held manifests name, remembered until the fold holds more records
 * (manifests are only ever added).
 */
export function createWeightsIndex(fold: Pick<Fold, 'get' | 'state'>): (weights: CID) => boolean {
  let counted = -1
  let named = new Set<string>()
  return (weights) => {
    const state = fold.state()
    if (state.recordCount !== counted) {
      named = new Set<string>()
      for (const m of state.manifests.values()) {
        const w = weightsOf(fold, m.cid)
        if (w) named.add(cidKey(w))
      }
      counted = state.recordCount
    }
    return named.has(cidKey(weights))
  }
}

/** Each peer's member: the one current member whose latest binding names it (two claimants: none). */
export function membersOfPeers(store: HoldingsStore, state: FederationState): Map<string, Did | null> {
  const members = new Set(state.members.map((m) => m.id))
  const byPeer = new Map<string, Did | null>()
  for (const { value: binding } of store.bindings()) {
    if (!members.has(binding.member)) continue
    for (const peer of binding.peers)
      byPeer.set(peer, byPeer.has(peer) && byPeer.get(peer) !== binding.member ? null : binding.member)
  }
  return byPeer
}

/** The holders of `weights`, each with its member. */
export function holdersOf(
  store: HoldingsStore,
  weights: CID,
  affiliation: ReadonlyMap<string, Did | null>,
): Holder[] {
  return store.holdersOf(weights).map((a) => ({
    peer: a.peer,
    member: affiliation.get(a.peer) ?? null,
    name: null,
    gateways: [...a.gateways],
    verifiedAt: a.verifiedAt,
  }))
}

/** The manifest a report speaks of for a version: the ratified one, or the only one. */
export function manifestOfVersion(model: ModelView): CID | undefined {
  return model.manifest ?? (model.manifests.length === 1 ? model.manifests[0] : undefined)
}

/** One version's entry, or undefined when no single manifest (with held bytes) stands for it. */
export function entryOf(
  parts: { fold: Pick<Fold, 'get'>; store: HoldingsStore; minHolders: number },
  model: ModelView,
  affiliation: ReadonlyMap<string, Did | null>,
): ReplicationEntry | undefined {
  const manifest = manifestOfVersion(model)
  const weights = manifest && weightsOf(parts.fold, manifest)
  if (!manifest || !weights) return undefined
  const holders = holdersOf(parts.store, weights, affiliation)
  const affiliatedHolders = holders.filter((h) => h.member !== null).length
  // Without any binding no holder can be told from a stranger, so all of them count.
  const counted = affiliation.size > 0 ? affiliatedHolders : holders.length
  return {
    model: model.key,
    manifest: manifest.toString(),
    weights: weights.toString(),
    status: model.status,
    holders,
    affiliatedHolders,
    flagged: counted < parts.minHolders,
  }
}

/** Every ratified version, sorted by `name@version`. */
export function replicationReport(parts: {
  fold: Pick<Fold, 'get' | 'state'>
  store: HoldingsStore
  minHolders: number
}): ReplicationReport {
  const state = parts.fold.state()
  const affiliation = membersOfPeers(parts.store, state)
  const versions = [...state.models.values()]
    .filter((m) => m.status === 'ratified')
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .flatMap((m) => entryOf(parts, m, affiliation) ?? [])
  return { minHolders: parts.minHolders, versions }
}
