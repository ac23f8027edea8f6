/**
 * State roots of a federation state and checkpoints (SPEC.md §11).
 *
 * `checkpointFor(state, epoch)` covers exactly the decisions final with
 * `closesAt ≤ epoch`: once `epoch + sealDeadlineMs` has passed no seal for
 * them can be signed in time, so honest stewards holding the same records
 * compute identical checkpoints. Its state root commits only to versions
 * with a decision at or before the epoch (ratified, conflicted or revoked);
 * versions merely proposed are not in it, because which manifests a node has
 * seen is not a decision.
 */
import type { CID } from 'multiformats/cid'
import { cidKey, compareCids } from './cid.js'
import { type Block, type BuiltList, buildList } from './cidlist.js'
import { DECIDED_PHASES, type FederationState, type ProposalView } from './fold/index.js'
import {
  type BuiltStateRoot,
  buildStateRoot,
  type ManifestEntry,
  type MapEntry,
  type MapValue,
  plainManifestEntry,
  proveKey,
} from './stateroot.js'
import type { CheckpointBody } from './types.js'

/**
 * The state root of a whole state: every known name@version with every applicable manifest of
 * it, and the head. Nodes compare it to see that they agree; only checkpoints' roots are signed.
 */
export function buildStateOf(state: FederationState): BuiltStateRoot {
  const entries: MapEntry[] = [...state.models.values()].map((m) => ({
    key: m.key,
    value: {
      status: m.status,
      decision: m.decision ?? null,
      manifests: m.manifests.map((c) => {
        const view = state.manifests.get(cidKey(c))!
        return plainManifestEntry(c, view.ratifiedBy.length > 0, view.revokedBy.length > 0)
      }),
    },
  }))
  return buildStateRoot({ head: state.head, height: state.height, entries })
}

export function stateRoot(state: FederationState): CID {
  return buildStateOf(state).root
}

/** The blocks proving `key` (name@version) under `stateRoot(state)`. */
export function prove(state: FederationState, key: string): Block[] {
  return proveKey(buildStateOf(state), key)
}

export interface CheckpointContent {
  readonly body: CheckpointBody
  /** The `(proposal, phase)` entries of `finalized`, sorted by CID. */
  readonly finalized: readonly (readonly [CID, string])[]
  readonly finalizedList: BuiltList
  readonly root: BuiltStateRoot
  /** Every block the checkpoint names: the finalized list and the state root. */
  readonly blocks: readonly Block[]
}

function earlier(a: ProposalView, b: ProposalView): boolean {
  return a.closesAt !== b.closesAt ? a.closesAt < b.closesAt : compareCids(a.cid, b.cid) < 0
}

/** The checkpoint an honest steward signs for `epoch`, given its state. */
export function checkpointFor(state: FederationState, epoch: number): CheckpointContent {
  const decided = [...state.proposals.values()].filter(
    (p) => p.closesAt <= epoch && DECIDED_PHASES.has(p.phase),
  )
  // The head these decisions imply: successors from the genesis.
  const successors = new Map<string, ProposalView>()
  for (const p of decided) {
    if (!p.governance || p.phase !== 'final-passed') continue
    const k = cidKey(p.basis)
    const cur = successors.get(k)
    if (!cur || earlier(p, cur)) successors.set(k, p)
  }
  let head: CID = state.federation
  let height = 0
  for (let next = successors.get(cidKey(head)); next; next = successors.get(cidKey(head))) {
    head = next.cid
    height++
  }
  // Versions with a decision at or before the epoch.
  const ratified = new Map<string, CID[]>()
  const revoked = new Map<string, CID[]>()
  for (const p of decided) {
    if (p.phase !== 'final-passed') continue
    if (p.action.type === 'ratify-model') push(ratified, cidKey(p.action.manifest), p.cid)
    if (p.action.type === 'revoke-model') push(revoked, cidKey(p.action.manifest), p.cid)
  }
  const byVersion = new Map<string, CID[]>()
  for (const key of new Set([...ratified.keys(), ...revoked.keys()])) {
    const m = state.manifests.get(key)
    if (m) push(byVersion, `${m.name}@${m.version}`, m.cid)
  }
  const entries: MapEntry[] = [...byVersion].map(([version, manifests]) => ({
    key: version,
    value: decidedValue(
      manifests.map((c) => plainManifestEntry(c, ratified.has(cidKey(c)), revoked.has(cidKey(c)))),
      ratified,
      revoked,
    ),
  }))
  const root = buildStateRoot({ head, height, entries })
  const finalized = decided.map((p) => [p.cid, p.phase] as const).sort((a, b) => compareCids(a[0], b[0]))
  const finalizedList = buildList(finalized)
  return {
    body: {
      head,
      height,
      epoch,
      stateRoot: root.root,
      finalized: { root: finalizedList.root, count: finalizedList.count },
    },
    finalized,
    finalizedList,
    root,
    blocks: [...finalizedList.blocks, ...root.blocks.values()],
  }
}

/**
 * A version's entry from its decided manifests: exactly one ratified and not revoked → ratified,
 * decided by its ratification with the smallest CID; more → conflicted; else revoked, decided
 * by the revocation with the smallest CID of the first revoked manifest.
 */
function decidedValue(
  manifests: ManifestEntry[],
  ratifiedBy: ReadonlyMap<string, CID[]>,
  revokedBy: ReadonlyMap<string, CID[]>,
): MapValue {
  manifests.sort((a, b) => compareCids(a.cid, b.cid))
  const live = manifests.filter((m) => m.ratified && !m.revoked)
  if (live.length === 1)
    return { status: 'ratified', decision: smallest(ratifiedBy.get(cidKey(live[0]!.cid))!), manifests }
  if (live.length > 1) return { status: 'conflicted', decision: null, manifests }
  // Every manifest here has a decision, so with none live at least one is revoked.
  const firstRevoked = manifests.find((m) => m.revoked)!
  return { status: 'revoked', decision: smallest(revokedBy.get(cidKey(firstRevoked.cid))!), manifests }
}

function smallest(cids: CID[]): CID {
  return [...cids].sort(compareCids)[0]!
}

function push<V>(map: Map<string, V[]>, key: string, value: V): void {
  const list = map.get(key)
  if (list) list.push(value)
  else map.set(key, [value])
}
