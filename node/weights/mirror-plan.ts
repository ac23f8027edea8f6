/**
 * What a mirror does with each version, read from the fold's state alone (docs/adr/0028-mirrors-and-withholding.md):
 * which ratified versions its policy asks it to hold, and which weights roots no node serves
 * while their version waits for a decision. No I/O and no clock: the same state gives the same plan.
 *
 * Per status of a `name@version`:
 * - ratified: fetched, verified, pinned and served when the name falls under the mirror policy;
 * - conflicted (two or more manifests ratified), suspended: withheld, not fetched, until decided;
 * - revoked: not fetched; what is held is served until retention unpins it (retention.ts);
 * - proposed (pending or rejected): not mirrored.
 */
import { cidKey, type FederationState, type ManifestView, type ModelView } from '../../protocol/index.js'
import { type MirrorPolicy, mirrors } from '../config-weights.js'
import type { WeightsManifest } from './verify.js'

/**
 * Version statuses whose live manifests are withheld. `suspended` arrives with the control bodies
 * (issue 17); it is named here so that a fold which reports it is obeyed from its first day.
 */
const WITHHELD_STATUSES: ReadonlySet<string> = new Set(['conflicted', 'suspended'])

/** A manifest as the mirror reads it: its weights and what verifying them needs. */
export interface MirroredManifest extends WeightsManifest {
  readonly name: string
  readonly version: string
}

/** One ratified version the policy asks this node to hold. */
export interface MirrorTarget {
  /** `name@version` */
  readonly model: string
  readonly manifest: ManifestView['cid']
  readonly body: MirroredManifest
}

/** Why a root is not served: the version it belongs to and that version's status. */
export interface Withholding {
  readonly model: string
  readonly status: string
}

/** Reads a manifest's body by CID (the fold's record), or undefined when it is not held. */
export type ManifestReader = (manifest: ManifestView['cid']) => MirroredManifest | undefined

/** Whether `manifest` of `model` is withheld: a live manifest of a withheld version, or one suspended itself. */
export function isWithheld(model: ModelView, manifest: ManifestView): boolean {
  if (WITHHELD_STATUSES.has(manifest.status)) return true
  return WITHHELD_STATUSES.has(model.status) && manifest.status === 'ratified'
}

/** The ratified versions whose name falls under `policy`, each with its one ratified manifest. */
export function mirrorTargets(
  state: FederationState,
  policy: MirrorPolicy,
  read: ManifestReader,
): MirrorTarget[] {
  if (policy === 'none') return []
  const targets: MirrorTarget[] = []
  for (const model of state.models.values()) {
    const target = ratifiedTarget(state, model, read)
    if (target && mirrors(policy, target.body.name)) targets.push(target)
  }
  return targets
}

/** The version's ratified manifest, when its status is ratified and the manifest is served. */
export function ratifiedTarget(
  state: FederationState,
  model: ModelView,
  read: ManifestReader,
): MirrorTarget | undefined {
  if (model.status !== 'ratified' || model.manifest === undefined) return undefined
  const view = state.manifests.get(cidKey(model.manifest))
  if (!view || isWithheld(model, view)) return undefined
  const body = read(model.manifest)
  return body ? { model: model.key, manifest: model.manifest, body } : undefined
}

/**
 * The weights roots (CIDv1 text) no node serves: every manifest naming the root is withheld.
 * A root that some other manifest names and that one is not withheld (the same bytes
 * republished) is served; so is a root no manifest names (an upload before its proposal).
 */
export function withheldRoots(state: FederationState, read: ManifestReader): Map<string, Withholding> {
  const withheld = new Map<string, Withholding>()
  const served = new Set<string>()
  for (const model of state.models.values()) {
    for (const manifest of model.manifests) {
      const view = state.manifests.get(cidKey(manifest))
      const body = view ? read(manifest) : undefined
      if (!view || !body) continue
      const root = body.weights.toV1().toString()
      if (!isWithheld(model, view)) served.add(root)
      else if (!withheld.has(root)) withheld.set(root, { model: model.key, status: statusOf(model, view) })
    }
  }
  for (const root of served) withheld.delete(root)
  return withheld
}

function statusOf(model: ModelView, manifest: ManifestView): string {
  return WITHHELD_STATUSES.has(manifest.status) ? manifest.status : model.status
}

/**
 * `f` of the state's manifests and models, computed again only when they change (votes alone
 * make a new state object, with the same maps).
 */
export function perVersions<T>(f: (state: FederationState) => T): (state: FederationState) => T {
  let models: unknown
  let manifests: unknown
  let value: T | undefined
  return (state) => {
    if (value === undefined || state.models !== models || state.manifests !== manifests) {
      value = f(state)
      models = state.models
      manifests = state.manifests
    }
    return value
  }
}
