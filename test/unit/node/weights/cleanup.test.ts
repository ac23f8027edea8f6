/**
 * Clean-up's decisions (node/weights/cleanup-plan.ts): every case of a pinned root — no manifest,
 * a manifest with no proposal, rejected, expired, pending (open or awaiting seals), ratified,
 * revoked, and weights two manifests share — and from when the retention counts: the latest of
 * the pin, the manifests' `at` and the proposals' `closesAt`; and a collection that judges each
 * root again just before its unpin, on the fold's state of that moment.
 */
import { MemoryDatastore } from 'datastore-core'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { createLogger } from '../../../../node/log.js'
import { createCleanup } from '../../../../node/weights/cleanup.js'
import { judgeRoot, type RootStanding } from '../../../../node/weights/cleanup-plan.js'
import { RootLedger } from '../../../../node/weights/root-ledger.js'
import type { FederationState, Phase, ProposalView } from '../../../../protocol/index.js'

const DAY = 24 * 60 * 60 * 1000
const RETENTION = 30 * DAY
const SEAL_DEADLINE = 5_000

/** A ratification as the fold shows it: its phase and close (what the decision reads). */
function proposal(phase: Phase, closesAt: number): ProposalView {
  return { phase, closesAt, rules: { sealDeadlineMs: SEAL_DEADLINE } } as unknown as ProposalView
}

function manifest(
  at: number,
  proposals: ProposalView[] = [],
  status: 'ratified' | 'revoked' | 'proposed' = 'proposed',
): RootStanding['manifests'][number] {
  return { at, status, proposals }
}

const none: RootStanding = { manifests: [] }

describe('clean-up of a pinned root', () => {
  it('with no manifest: kept for the retention from its pin, then collected as no-manifest', () => {
    expect(judgeRoot(none, 5 * DAY, 5 * DAY + RETENTION - 1, RETENTION)).toEqual({
      collect: false,
      why: 'retained',
      dueAt: 5 * DAY + RETENTION,
    })
    expect(judgeRoot(none, 5 * DAY, 5 * DAY + RETENTION, RETENTION)).toEqual({
      collect: true,
      why: 'no-manifest',
      since: 5 * DAY,
      dueAt: 5 * DAY + RETENTION,
    })
  })

  it('with a manifest but no proposal: counted from the manifest when it came after the pin', () => {
    const standing = { manifests: [manifest(9 * DAY)] }
    expect(judgeRoot(standing, 2 * DAY, 9 * DAY + RETENTION - 1, RETENTION).collect).toBe(false)
    expect(judgeRoot(standing, 2 * DAY, 9 * DAY + RETENTION, RETENTION)).toMatchObject({
      collect: true,
      why: 'no-proposal',
      since: 9 * DAY,
    })
  })

  it('rejected (or without quorum, or void): counted from the last proposal’s close', () => {
    for (const phase of ['final-rejected', 'final-no-quorum', 'void', 'superseded'] as const) {
      const standing = {
        manifests: [manifest(DAY, [proposal(phase, 3 * DAY), proposal('final-rejected', 4 * DAY)])],
      }
      expect(judgeRoot(standing, 0, 4 * DAY + RETENTION - 1, RETENTION).collect).toBe(false)
      expect(judgeRoot(standing, 0, 4 * DAY + RETENTION, RETENTION)).toMatchObject({
        collect: true,
        why: 'rejected',
        since: 4 * DAY,
      })
    }
  })

  it('expired (closed, never sealed within the seal deadline): collected as expired', () => {
    const standing = { manifests: [manifest(DAY, [proposal('undecided', 2 * DAY)])] }
    expect(judgeRoot(standing, 0, 2 * DAY + RETENTION, RETENTION)).toMatchObject({
      collect: true,
      why: 'expired',
      since: 2 * DAY,
    })
  })

  it('pending (open, awaiting seals, pending or conflicted): kept however long it waits', () => {
    const long = 1000 * DAY
    const open = { manifests: [manifest(DAY, [proposal('undecided', long + 1)])] }
    expect(judgeRoot(open, 0, long, RETENTION)).toEqual({ collect: false, why: 'pending' })
    const awaiting = { manifests: [manifest(DAY, [proposal('undecided', long - 1)])] }
    expect(judgeRoot(awaiting, 0, long, RETENTION)).toEqual({ collect: false, why: 'pending' })
    for (const phase of ['pending', 'conflicted'] as const) {
      const standing = { manifests: [manifest(DAY, [proposal(phase, DAY)])] }
      expect(judgeRoot(standing, 0, long, RETENTION)).toEqual({ collect: false, why: 'pending' })
    }
    // One pending beside a rejected one: still waits.
    const both = {
      manifests: [manifest(DAY, [proposal('final-rejected', DAY), proposal('undecided', long + 1)])],
    }
    expect(judgeRoot(both, 0, long, RETENTION)).toEqual({ collect: false, why: 'pending' })
  })

  it('a final-passed ratification keeps its weights through its manifest, not as an undecided proposal', () => {
    // The fold makes the manifest of a final-passed ratification `ratified` (or `revoked`); the
    // proposal's own status is then never what keeps them, so §15.7's list need not name it.
    const passed = { manifests: [manifest(DAY, [proposal('final-passed', 2 * DAY)], 'ratified')] }
    expect(judgeRoot(passed, 0, 10_000 * DAY, RETENTION)).toEqual({ collect: false, why: 'ratified' })
  })

  it('ratified: never collected; revoked: left to the retention of revoked weights', () => {
    const ratified = { manifests: [manifest(DAY, [proposal('final-passed', 2 * DAY)], 'ratified')] }
    expect(judgeRoot(ratified, 0, 10_000 * DAY, RETENTION)).toEqual({ collect: false, why: 'ratified' })
    const revoked = { manifests: [manifest(DAY, [proposal('final-passed', 2 * DAY)], 'revoked')] }
    expect(judgeRoot(revoked, 0, 10_000 * DAY, RETENTION)).toEqual({ collect: false, why: 'revoked' })
  })

  it('shared by two manifests: kept while either keeps it, else counted from the later of them', () => {
    const rejected = manifest(DAY, [proposal('final-rejected', 2 * DAY)])
    const ratified = manifest(3 * DAY, [proposal('final-passed', 4 * DAY)], 'ratified')
    expect(judgeRoot({ manifests: [rejected, ratified] }, 0, 10_000 * DAY, RETENTION)).toEqual({
      collect: false,
      why: 'ratified',
    })
    const pending = manifest(3 * DAY, [proposal('undecided', 10_001 * DAY)])
    expect(judgeRoot({ manifests: [rejected, pending] }, 0, 10_000 * DAY, RETENTION).why).toBe('pending')
    const unproposed = manifest(6 * DAY)
    expect(judgeRoot({ manifests: [rejected, unproposed] }, 0, 6 * DAY + RETENTION, RETENTION)).toMatchObject(
      {
        collect: true,
        why: 'rejected',
        since: 6 * DAY,
      },
    )
    expect(
      judgeRoot({ manifests: [rejected, unproposed] }, 0, 6 * DAY + RETENTION - 1, RETENTION).collect,
    ).toBe(false)
  })

  it('a retention of 0 collects as soon as nothing keeps it', () => {
    expect(judgeRoot(none, 7, 7, 0)).toMatchObject({ collect: true, why: 'no-manifest' })
  })
})

const cid = async (text: string) => CID.createV1(0x55, await sha256.digest(new TextEncoder().encode(text)))

describe('a collection', () => {
  /** A fold state holding one manifest (proposed) and the ratifications given. */
  const stateWith = (manifestCid: CID, proposals: ProposalView[]) =>
    ({
      manifests: new Map([[manifestCid.toString(), { cid: manifestCid, status: 'proposed' }]]),
      proposals: new Map(proposals.map((p, i) => [String(i), p])),
    }) as unknown as FederationState

  /** A clean-up of one pinned root named by one manifest; `onWalk` runs while its bytes are counted. */
  async function cleanupOf(root: CID, manifestCid: CID, state: () => FederationState, onWalk: () => void) {
    const unpinned: CID[] = []
    const lines: Record<string, unknown>[] = []
    const cleanup = createCleanup({
      state,
      manifestOf: (m) => (m.equals(manifestCid) ? { weights: root, at: 0 } : undefined),
      pinnedRoots: async () => [root],
      pins: {
        hasPin: async () => true,
        async *rm(r) {
          unpinned.push(r)
          yield r
        },
        rootsOf: async () => {
          onWalk()
          return [root]
        },
      },
      blockstore: { get: () => [], delete: async () => {} },
      ledger: await RootLedger.open(new MemoryDatastore()),
      clock: () => DAY,
      retentionMs: () => 0,
      log: createLogger({ level: 'info', name: 't', write: (l) => lines.push(JSON.parse(l)) }),
    })
    return { cleanup, unpinned, lines }
  }

  it('judges each root again just before its unpin: a proposal that arrived after the plan keeps it', async () => {
    const [root, manifestCid] = [await cid('weights'), await cid('manifest')]
    const ratify = {
      ...proposal('undecided', 2 * DAY),
      action: { type: 'ratify-model', manifest: manifestCid },
    } as unknown as ProposalView
    let state = stateWith(manifestCid, [])
    // The ratification reaches the fold while the bytes are counted: after the plan's verdict.
    const racing = await cleanupOf(
      root,
      manifestCid,
      () => state,
      () => {
        state = stateWith(manifestCid, [ratify])
      },
    )
    expect(await racing.cleanup.collect()).toEqual([])
    expect(racing.unpinned).toEqual([])
    expect(racing.lines).toContainEqual(
      expect.objectContaining({ event: 'weights-gc-kept', root: root.toString(), reason: 'pending' }),
    )

    // Nothing arrives meanwhile: collected.
    const quiet = await cleanupOf(
      root,
      manifestCid,
      () => stateWith(manifestCid, []),
      () => {},
    )
    expect((await quiet.cleanup.collect()).map((d) => [d.root, d.why])).toEqual([[root, 'no-proposal']])
    expect(quiet.unpinned).toEqual([root])
  })
})

describe('the ledger of pinned roots', () => {
  it('keeps the first sight, forgets roots no longer pinned, and reads back what it wrote', async () => {
    const datastore = new MemoryDatastore()
    const ledger = await RootLedger.open(datastore)
    const [a, b] = [await cid('a'), await cid('b')]
    expect(await ledger.seen(a, 10)).toEqual({ pinnedAt: 10, scrubbedAt: null })
    expect(await ledger.seen(a, 20)).toEqual({ pinnedAt: 10, scrubbedAt: null })
    await ledger.seen(b, 30)
    await ledger.scrubbed(b, 40)
    await ledger.setCursor({ root: b, blocks: 7 })

    const reopened = await RootLedger.open(datastore)
    expect(reopened.get(a)).toEqual({ pinnedAt: 10, scrubbedAt: null })
    expect(reopened.get(b)).toEqual({ pinnedAt: 30, scrubbedAt: 40 })
    expect(reopened.cursor()).toEqual({ root: b, blocks: 7 })

    // a let go elsewhere (retention): pinned again later, its retention starts again.
    await reopened.prune([b])
    expect(reopened.get(a)).toBeUndefined()
    expect(await reopened.seen(a, 50)).toEqual({ pinnedAt: 50, scrubbedAt: null })
    expect((await RootLedger.open(datastore)).get(a)).toEqual({ pinnedAt: 50, scrubbedAt: null })
    await reopened.setCursor(undefined)
    expect((await RootLedger.open(datastore)).cursor()).toBeUndefined()
  })
})
