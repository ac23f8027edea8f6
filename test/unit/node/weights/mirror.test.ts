/**
 * The mirror's decisions (node/weights/mirror-plan.ts, mirror.ts) on states a Simulator folds:
 * which versions a policy asks for, which roots are withheld, and how the duty runs its fetches
 * (a bound on how many at once, a pause after a failure, nothing for what is held, nothing after
 * stop) and answers `node pin`.
 */
import { describe, expect, it } from 'vitest'
import { isNodeError } from '../../../../node/errors.js'
import { silentLogger } from '../../../../node/log.js'
import { servingPins } from '../../../../node/weights/gateway-serving.js'
import { createMirror, type FetchOutcome, type MirrorHeld } from '../../../../node/weights/mirror.js'
import {
  type ManifestReader,
  type MirroredManifest,
  type MirrorTarget,
  mirrorTargets,
  withheldRoots,
} from '../../../../node/weights/mirror-plan.js'
import type { CID, Role, Verified } from '../../../../protocol/index.js'
import { Simulator } from '../../../support/simulator.js'

const roles: Role[] = ['publisher', 'steward', 'voter']

function federation(): Simulator {
  return new Simulator({
    members: [
      { name: 's1', roles, weight: 1 },
      { name: 's2', roles, weight: 1 },
      { name: 's3', roles, weight: 1 },
    ],
    keyPrefix: 'allmende-mirror-unit:',
    name: 'mirror-unit',
  })
}

/** A manifest of `name@version`, ratified (final-passed by s1 and s2) unless `ratify` is false. */
function version(
  sim: Simulator,
  at: number,
  m: { id: string; name: string; version?: string; weights?: Verified<'manifest'> },
  ratify = true,
): Verified<'manifest'> {
  const body = m.weights?.record.body
  const manifest = sim.manifest('s1', at, {
    id: m.id,
    name: m.name,
    version: m.version ?? '1.0.0',
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

/** Held roots in memory, as HeldVersions keeps them. */
function heldInMemory(): MirrorHeld & { roots: Map<string, number> } {
  const roots = new Map<string, number>()
  return {
    roots,
    get: (root) => {
      const at = roots.get(root.toV1().toString())
      return at === undefined ? undefined : { complete: true, verifiedAt: at }
    },
    verified: async (root, at) => {
      roots.set(root.toV1().toString(), at)
    },
  }
}

/** A fetch the test ends by hand, per root. */
function manualFetch() {
  const pending = new Map<string, (o: FetchOutcome) => void>()
  const started: string[] = []
  return {
    started,
    fetch: (target: MirrorTarget, _max: number, signal: AbortSignal) =>
      new Promise<FetchOutcome>((resolve) => {
        const key = target.body.weights.toV1().toString()
        started.push(target.model)
        pending.set(key, resolve)
        signal.addEventListener('abort', () => resolve({ result: 'aborted' }), { once: true })
      }),
    end(root: CID, outcome: FetchOutcome) {
      pending.get(root.toV1().toString())!(outcome)
    },
  }
}

const settled = () => new Promise((r) => setTimeout(r, 0))

describe('the mirror plan', () => {
  it('asks for the ratified versions under the policy, never pending, rejected or revoked ones', () => {
    const sim = federation()
    version(sim, 100, { id: 'a', name: 'occiglot/a' })
    version(sim, 100, { id: 'b', name: 'other/b' })
    version(sim, 100, { id: 'c', name: 'occiglot/pending' }, false)
    const state = sim.fold.state()
    const names = (policy: Parameters<typeof mirrorTargets>[1]) =>
      mirrorTargets(state, policy, reader(sim))
        .map((t) => t.model)
        .sort()
    expect(names('none')).toEqual([])
    expect(names('ratified')).toEqual(['occiglot/a@1.0.0', 'other/b@1.0.0'])
    expect(names(['occiglot/*'])).toEqual(['occiglot/a@1.0.0'])
    expect(names(['*/b', 'nothing'])).toEqual(['other/b@1.0.0'])
    // other/b revoked: no longer asked for.
    const b = [...state.manifests.values()].find((m) => m.name === 'other/b')!
    const revoke = sim.proposal('s2', 2_000, {
      closesAt: 3_100,
      action: { type: 'revoke-model', manifest: b.cid, reason: 'withdrawn' },
    })
    sim.add(
      revoke,
      ...['s1', 's2', 's3'].map((v) => sim.vote(v, 2_010, { proposal: revoke.cid, choice: 'yes' })),
    )
    sim.add(...['s1', 's2'].map((by) => sim.seal(by, 3_300, { proposal: revoke.cid })))
    expect(sim.fold.state().models.get('other/b@1.0.0')?.status).toBe('revoked')
    expect(mirrorTargets(sim.fold.state(), 'ratified', reader(sim)).map((t) => t.model)).toEqual([
      'occiglot/a@1.0.0',
    ])
  })

  it('withholds the weights of a conflicted version, unless a served version names the same weights', () => {
    const sim = federation()
    const first = version(sim, 100, { id: 'first', name: 'twin' })
    version(sim, 100, { id: 'second', name: 'twin', weights: first })
    const root = first.record.body.weights.toV1().toString()
    expect(sim.fold.state().models.get('twin@1.0.0')?.status).toBe('conflicted')
    expect(mirrorTargets(sim.fold.state(), 'ratified', reader(sim))).toEqual([])
    expect(withheldRoots(sim.fold.state(), reader(sim))).toEqual(
      new Map([[root, { model: 'twin@1.0.0', status: 'conflicted' }]]),
    )
    // The same bytes ratified under another name: served.
    version(sim, 2_000, { id: 'same', name: 'republished', weights: first })
    expect(withheldRoots(sim.fold.state(), reader(sim)).size).toBe(0)
  })

  it('withholds a suspended version (the status control bodies bring) as a conflicted one', () => {
    const sim = federation()
    const m = version(sim, 100, { id: 'one', name: 'org/one' })
    const state = sim.fold.state()
    const model = state.models.get('org/one@1.0.0')!
    const manifest = [...state.manifests.values()].find((v) => v.cid.equals(m.cid))!
    const suspendedModel = {
      ...state,
      models: new Map([[model.key, { ...model, status: 'suspended' as never }]]),
    }
    expect(withheldRoots(suspendedModel, reader(sim))).toEqual(
      new Map([[m.record.body.weights.toV1().toString(), { model: 'org/one@1.0.0', status: 'suspended' }]]),
    )
    expect(mirrorTargets(suspendedModel, 'ratified', reader(sim))).toEqual([])
    const suspendedManifest = {
      ...state,
      manifests: new Map(
        [...state.manifests].map(([k, v]) => [
          k,
          v.cid.equals(m.cid) ? { ...manifest, status: 'suspended' as never } : v,
        ]),
      ),
    }
    expect(
      withheldRoots(suspendedManifest, reader(sim)).get(m.record.body.weights.toV1().toString())?.status,
    ).toBe('suspended')
    expect(mirrorTargets(suspendedManifest, 'ratified', reader(sim))).toEqual([])
  })

  it('lets the gateway serve a block under one root that is not withheld, and names the version otherwise', async () => {
    const withheldRoot = 'bafy-withheld'
    const asCid = (text: string) => ({ toV1: () => ({ toString: () => text }) }) as unknown as CID
    const roots = new Map<string, CID[]>([
      ['only-withheld', [asCid(withheldRoot)]],
      ['shared', [asCid(withheldRoot), asCid('bafy-served')]],
      ['unpinned', []],
    ])
    const pins = servingPins(
      {
        isPinned: async (cid) => (roots.get(String(cid)) ?? []).length > 0,
        rootsOf: async (cid) => roots.get(String(cid)) ?? [],
      },
      () => new Map([[withheldRoot, { model: 'twin@1.0.0', status: 'conflicted' }]]),
    )
    const block = (name: string) => name as unknown as CID
    expect(await pins.isPinned(block('only-withheld'))).toBe(false)
    expect(await pins.withheldBy(block('only-withheld'))).toEqual({
      model: 'twin@1.0.0',
      status: 'conflicted',
    })
    expect(await pins.isPinned(block('shared'))).toBe(true)
    expect(await pins.withheldBy(block('shared'))).toBeUndefined()
    expect(await pins.isPinned(block('unpinned'))).toBe(false)
    expect(await pins.withheldBy(block('unpinned'))).toBeUndefined()
  })
})

describe('the mirror duty', () => {
  function setup(options: { maxFetches?: number; ids?: string[] } = {}) {
    const sim = federation()
    const manifests = (options.ids ?? ['a', 'b', 'c']).map((id) =>
      version(sim, 100, { id, name: `org/${id}` }),
    )
    const held = heldInMemory()
    const fetch = manualFetch()
    let now = 10_000
    const stop = new AbortController()
    const outcomes: string[] = []
    const mirror = createMirror({
      state: () => sim.fold.state(),
      read: reader(sim),
      policy: () => 'ratified',
      held,
      fetch: fetch.fetch,
      clock: () => now,
      log: silentLogger,
      stopped: stop.signal,
      retryMs: 1_000,
      maxRetryMs: 4_000,
      onOutcome: (o) => outcomes.push(o.result),
      ...(options.maxFetches !== undefined ? { maxFetches: options.maxFetches } : {}),
    })
    const roots = manifests.map((m) => m.record.body.weights)
    return { sim, mirror, held, fetch, roots, stop, outcomes, advance: (ms: number) => (now += ms) }
  }

  it('runs at most two fetches at once and starts the next when one ends', async () => {
    const { mirror, fetch, roots, held } = setup()
    mirror.tick()
    expect(fetch.started).toEqual(['org/a@1.0.0', 'org/b@1.0.0'])
    mirror.tick()
    expect(fetch.started).toHaveLength(2)
    fetch.end(roots[0]!, { result: 'ok', fetched: 3 })
    await settled()
    expect(held.roots.has(roots[0]!.toV1().toString())).toBe(true)
    expect(fetch.started).toEqual(['org/a@1.0.0', 'org/b@1.0.0', 'org/c@1.0.0'])
    expect(mirror.fetching()).toHaveLength(2)
  })

  it('leaves what is held alone', async () => {
    const { mirror, fetch, roots, held } = setup({ maxFetches: 3 })
    await held.verified(roots[1]!, 5)
    mirror.tick()
    expect(fetch.started).toEqual(['org/a@1.0.0', 'org/c@1.0.0'])
  })

  it('tries a failed fetch again only after a pause that doubles, up to the most', async () => {
    const { mirror, fetch, roots, advance, outcomes } = setup({ ids: ['a'] })
    mirror.tick()
    for (const pause of [1_000, 2_000, 4_000, 4_000]) {
      fetch.end(roots[0]!, { result: 'missing', why: 'block-missing' })
      await settled()
      const before = fetch.started.length
      advance(pause - 1)
      mirror.tick()
      expect(fetch.started).toHaveLength(before)
      advance(1)
      mirror.tick()
      expect(fetch.started).toHaveLength(before + 1)
    }
    expect(outcomes).toEqual(['missing', 'missing', 'missing', 'missing'])
  })

  it('aborts its fetches when the node stops and starts no more', async () => {
    const { mirror, fetch, stop, outcomes } = setup()
    mirror.tick()
    stop.abort()
    await settled()
    expect(outcomes).toEqual(['aborted', 'aborted'])
    mirror.tick()
    expect(fetch.started).toHaveLength(2)
  })

  it('pins one version on request: fetching, then held; a failure is told at the next ask', async () => {
    const sim = federation()
    const m = version(sim, 100, { id: 'one', name: 'org/one' })
    version(sim, 100, { id: 'p', name: 'org/pending' }, false)
    const held = heldInMemory()
    const fetch = manualFetch()
    const mirror = createMirror({
      state: () => sim.fold.state(),
      read: reader(sim),
      policy: () => 'none',
      held,
      fetch: fetch.fetch,
      clock: () => 7,
      log: silentLogger,
      stopped: new AbortController().signal,
      retryMs: 0,
    })
    const code = (f: () => unknown) => {
      try {
        f()
        return undefined
      } catch (e) {
        return isNodeError(e) ? `${e.status} ${e.code}` : String(e)
      }
    }
    expect(code(() => mirror.pinOnce('org/nothing@1.0.0'))).toBe('404 unknown-model')
    expect(code(() => mirror.pinOnce('org/pending@1.0.0'))).toBe('409 version-not-ratified')
    // The policy says none: the duty fetches nothing, the request does.
    mirror.tick()
    expect(fetch.started).toEqual([])
    expect(mirror.pinOnce('org/one@1.0.0')).toMatchObject({ status: 'fetching' })
    expect(mirror.pinOnce('org/one@1.0.0')).toMatchObject({ status: 'fetching' })
    expect(fetch.started).toEqual(['org/one@1.0.0'])
    fetch.end(m.record.body.weights, { result: 'missing', why: 'fetch-timeout' })
    await settled()
    expect(code(() => mirror.pinOnce('org/one@1.0.0'))).toBe('502 pin-fetch-failed')
    expect(mirror.pinOnce('org/one@1.0.0')).toMatchObject({ status: 'fetching' })
    fetch.end(m.record.body.weights, { result: 'ok', fetched: 4, bytes: 100 })
    await settled()
    expect(mirror.pinOnce('org/one@1.0.0')).toMatchObject({
      status: 'held',
      verifiedAt: 7,
      fetch: { result: 'ok', fetched: 4 },
    })
  })
})
