/**
 * `node unpin` (node/weights/mirror-unpin.ts) on states a Simulator folds: refused while the
 * mirror policy covers a version naming the root, while a steward's open ratification names it,
 * or while it is fetched; otherwise unpinned, the released blocks deleted, the root forgotten.
 */
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import type { MirrorPolicy } from '../../../../node/config-weights.js'
import { isNodeError } from '../../../../node/errors.js'
import { silentLogger } from '../../../../node/log.js'
import type { ManifestReader, MirroredManifest } from '../../../../node/weights/mirror-plan.js'
import { createUnpin } from '../../../../node/weights/mirror-unpin.js'
import type { Role, Verified } from '../../../../protocol/index.js'
import { Simulator } from '../../../support/simulator.js'

const roles: Role[] = ['publisher', 'steward', 'voter']
const LEAF = CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')

function federation(): Simulator {
  return new Simulator({
    members: ['s1', 's2', 's3'].map((name) => ({ name, roles, weight: 1 })),
    keyPrefix: 'allmende-mirror-unpin-unit:',
    name: 'mirror-unpin-unit',
  })
}

/** A manifest of `name@1.0.0` under a ratification, final-passed unless `ratify` is false. */
function version(
  sim: Simulator,
  at: number,
  m: { id: string; name: string; weights?: Verified<'manifest'> },
  ratify = true,
): Verified<'manifest'> {
  const body = m.weights?.record.body
  const manifest = sim.manifest('s1', at, {
    id: m.id,
    name: m.name,
    version: '1.0.0',
    description: m.id,
    ...(body ? { weights: { root: body.weights, files: body.files, size: body.size } } : {}),
  })
  const p = sim.proposal('s1', at + 1, {
    closesAt: at + 1_100,
    action: { type: 'ratify-model', manifest: manifest.cid },
  })
  sim.add(manifest, p)
  if (!ratify) return manifest
  sim.add(...['s1', 's2', 's3'].map((v) => sim.vote(v, at + 10, { proposal: p.cid, choice: 'yes' })))
  sim.add(...['s1', 's2'].map((s) => sim.seal(s, at + 1_300, { proposal: p.cid, weightsVerified: true })))
  return manifest
}

function reader(sim: Simulator): ManifestReader {
  return (cid) => {
    const r = sim.fold.get(cid)
    return r?.record.kind === 'manifest' ? (r.record.body as MirroredManifest) : undefined
  }
}

/** Pins of the given roots, each releasing its root block and one leaf; deletes and forgets recorded. */
function setup(
  sim: Simulator,
  pinned: Verified<'manifest'>[],
  opts: { policy?: MirrorPolicy; steward?: boolean; fetching?: string[] } = {},
) {
  const pins = new Set(pinned.map((m) => m.record.body.weights.toString()))
  const deleted: string[] = []
  const forgotten: string[] = []
  const unpin = createUnpin({
    state: () => sim.fold.state(),
    read: reader(sim),
    policy: () => opts.policy ?? 'none',
    steward: opts.steward ?? false,
    pins: {
      hasPin: async (root) => pins.has(root.toString()),
      async *rm(root, options) {
        pins.delete(root.toString())
        for (const cid of [root, LEAF]) {
          await options?.onReleased?.(cid)
          yield cid
        }
      },
    },
    blockstore: { delete: async (cid) => void deleted.push(cid.toString()) },
    held: { forget: async (root) => void forgotten.push(root.toString()) },
    fetching: () => opts.fetching ?? [],
    log: silentLogger,
  })
  return { unpin, pins, deleted, forgotten }
}

async function refusal(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p
    return undefined
  } catch (e) {
    return isNodeError(e) ? e.code : String(e)
  }
}

describe('node unpin', () => {
  it('refuses a version the policy covers, and unpins it once the policy no longer does', async () => {
    const sim = federation()
    const m = version(sim, 100, { id: 'a', name: 'occiglot/a' })
    const root = m.record.body.weights.toString()
    const covered = setup(sim, [m], { policy: ['occiglot/*'] })
    expect(await refusal(covered.unpin('occiglot/a@1.0.0'))).toBe('version-mirrored')
    expect(covered.pins.has(root)).toBe(true)
    const uncovered = setup(sim, [m], { policy: ['other/*'] })
    expect(await uncovered.unpin('occiglot/a@1.0.0')).toEqual({
      model: 'occiglot/a@1.0.0',
      weights: m.record.body.weights.toString(),
      status: 'unpinned',
      blocks: 2,
      deleted: 2,
    })
    expect(uncovered.pins.has(root)).toBe(false)
    expect(uncovered.deleted).toEqual([root, LEAF.toString()])
    expect(uncovered.forgotten).toEqual([root])
  })

  it('refuses weights another version shares while the policy covers that one', async () => {
    const sim = federation()
    const first = version(sim, 100, { id: 'a', name: 'free/a' })
    version(sim, 200, { id: 'b', name: 'kept/b', weights: first })
    const { unpin } = setup(sim, [first], { policy: ['kept/*'] })
    expect(await refusal(unpin('free/a@1.0.0'))).toBe('version-mirrored')
  })

  it("keeps what an open ratification names on a steward's node, not on another", async () => {
    const sim = federation()
    const m = version(sim, 100, { id: 'a', name: 'open/a' }, false)
    expect(await refusal(setup(sim, [m], { steward: true }).unpin('open/a@1.0.0'))).toBe('weights-needed')
    expect((await setup(sim, [m]).unpin('open/a@1.0.0')).status).toBe('unpinned')
  })

  it('refuses while the root is fetched, and forgets a root with no pin', async () => {
    const sim = federation()
    const m = version(sim, 100, { id: 'a', name: 'open/a' })
    const root = m.record.body.weights.toV1().toString()
    expect(await refusal(setup(sim, [m], { fetching: [root] }).unpin('open/a@1.0.0'))).toBe(
      'weights-fetching',
    )
    const unpinned = setup(sim, [])
    expect(await unpinned.unpin('open/a@1.0.0')).toMatchObject({
      status: 'not-pinned',
      blocks: 0,
      deleted: 0,
    })
    expect(unpinned.forgotten).toEqual([m.record.body.weights.toString()])
  })

  it('answers unknown-model for a version no manifest names', async () => {
    expect(await refusal(setup(federation(), []).unpin('none/x@1.0.0'))).toBe('unknown-model')
  })
})
