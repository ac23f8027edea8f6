/**
 * `allmende node unpin N@V` (docs/adr/0028-mirrors-and-withholding.md): a node keeps what it
 * mirrored when its policy stops covering it (`node mirror rm` releases nothing); the operator
 * lets a version's weights go here. Refused while the node's own duties still need the root: a
 * version the mirror policy still covers, or an open ratification this steward checks before it
 * seals. The blocks no other pin holds are deleted in the unpin's turn, as retention.ts does.
 */
import type { CID } from 'multiformats/cid'
import type { FederationState, ModelView } from '../../protocol/index.js'
import { type MirrorPolicy, mirrors } from '../config-weights.js'
import { NodeError } from '../errors.js'
import type { Logger } from '../log.js'
import type { ManifestReader } from './mirror-plan.js'
import type { RetentionBlockstore, RetentionPins } from './retention.js'
import { unpinRoot } from './unpin-root.js'

/** Statuses under which the mirror duty holds a covered version (fetched, or kept while withheld). */
const MIRROR_KEEPS: ReadonlySet<string> = new Set(['ratified', 'conflicted', 'suspended'])

export interface UnpinOptions {
  readonly state: () => FederationState
  readonly read: ManifestReader
  readonly policy: () => MirrorPolicy
  /** Whether this node seals (a steward's): it checks the weights of open ratifications. */
  readonly steward: boolean
  readonly pins: RetentionPins
  readonly blockstore: RetentionBlockstore
  readonly held: { forget(root: CID): Promise<void> }
  /** The weights roots (CIDv1 text) being fetched now: the mirror's and `node pin`'s. */
  readonly fetching: () => readonly string[]
  readonly log: Logger
}

export interface UnpinAnswer {
  readonly model: string
  readonly weights: string
  /** unpinned: the pin was removed now; not-pinned: there was none (the held record is cleared all the same). */
  readonly status: 'unpinned' | 'not-pinned'
  /** Blocks walked under the root, and those deleted (no other pin held them). */
  readonly blocks: number
  readonly deleted: number
}

export type Unpin = (model: string) => Promise<UnpinAnswer>

/** The unpin; calls one at a time, so two asks for one root never walk it together. */
export function createUnpin(options: UnpinOptions): Unpin {
  let turn: Promise<unknown> = Promise.resolve()
  return (model) => {
    const done = turn.then(() => unpinVersion(options, model))
    turn = done.catch(() => {})
    return done
  }
}

async function unpinVersion(options: UnpinOptions, model: string): Promise<UnpinAnswer> {
  const state = options.state()
  const root = weightsOf(state, model, options.read)
  refuseIfNeeded(options, state, root, model)
  if (!(await options.pins.hasPin(root))) {
    await options.held.forget(root)
    return { model, weights: root.toString(), status: 'not-pinned', blocks: 0, deleted: 0 }
  }
  const { blocks, deleted } = await unpinRoot(options.pins, options.blockstore, root)
  await options.held.forget(root)
  options.log.info('weights-unpinned', { root: root.toString(), reason: 'operator', model, blocks, deleted })
  return { model, weights: root.toString(), status: 'unpinned', blocks, deleted }
}

/** The weights root of `model`: its ratified manifest's, else the one its manifests share. */
function weightsOf(state: FederationState, model: string, read: ManifestReader): CID {
  const view = state.models.get(model)
  if (!view)
    throw new NodeError('unknown-model', `no manifest of ${model} is known to this node (name@version)`, {
      status: 404,
    })
  const roots = new Map<string, CID>()
  for (const manifest of view.manifest ? [view.manifest] : view.manifests) {
    const weights = read(manifest)?.weights
    if (weights) roots.set(weights.toV1().toString(), weights)
  }
  if (roots.size !== 1)
    throw new NodeError(
      'ambiguous-weights',
      `the manifests of ${model} name ${roots.size === 0 ? 'no weights held here' : `${roots.size} different weights`}; nothing was unpinned`,
      { status: 409 },
    )
  return [...roots.values()][0]!
}

/** Throws when this node's own duties still need `root`, naming the duty and what lifts it. */
function refuseIfNeeded(options: UnpinOptions, state: FederationState, root: CID, model: string): void {
  const key = root.toV1().toString()
  const policy = options.policy()
  for (const version of versionsNaming(state, key, options.read)) {
    if (MIRROR_KEEPS.has(version.status) && mirrors(policy, nameOf(version.key)))
      throw new NodeError(
        'version-mirrored',
        `${version.key} falls under this node's mirror policy, which would fetch these weights again; run "allmende node mirror rm PATTERN" for the pattern that covers it (see "allmende node mirror list"), then unpin ${model}`,
        { status: 409 },
      )
  }
  if (options.steward && openRatification(state, key, options.read))
    throw new NodeError(
      'weights-needed',
      `an open ratification names these weights, and this steward checks them before it seals; unpin ${model} once it is decided`,
      { status: 409 },
    )
  if (options.fetching().includes(key))
    throw new NodeError(
      'weights-fetching',
      `the weights of ${model} are being fetched here; ask again once the fetch ends`,
      {
        status: 409,
      },
    )
}

/** The versions with a manifest naming the root `key`. */
function versionsNaming(state: FederationState, key: string, read: ManifestReader): ModelView[] {
  return [...state.models.values()].filter((version) =>
    version.manifests.some((m) => read(m)?.weights.toV1().toString() === key),
  )
}

/** Whether a ratification not yet final names a manifest of the root `key`. */
function openRatification(state: FederationState, key: string, read: ManifestReader): boolean {
  for (const p of state.proposals.values()) {
    if (p.action.type !== 'ratify-model' || (p.phase !== 'undecided' && p.phase !== 'pending')) continue
    if (read(p.action.manifest)?.weights.toV1().toString() === key) return true
  }
  return false
}

function nameOf(model: string): string {
  return model.slice(0, model.lastIndexOf('@'))
}
