/**
 * A checkpoint's state-root entry (SPEC.md §11.1, §11.2): for each name@version, every manifest
 * with a final-passed ratify or revoke decision closed by the epoch, flagged with which it has;
 * the status and decision follow from those flags.
 */
import { describe, expect, it } from 'vitest'
import {
  type Action,
  checkpointFor,
  compareCids,
  plainManifestEntry,
  proveKey,
  resolvedManifest,
  type Verified,
  verifyProof,
} from '../../../protocol/index.js'
import { decide, HOUR, simulator } from '../../support/federation.js'
import type { SimMember } from '../../support/simulator.js'

const MEMBERS: readonly SimMember[] = [
  { name: 's1', roles: ['steward', 'voter'], weight: 1 },
  { name: 's2', roles: ['steward', 'voter'], weight: 1 },
  { name: 's3', roles: ['steward', 'voter'], weight: 1 },
  { name: 'v1', roles: ['publisher', 'voter'], weight: 1 },
]

describe('the state-root entry of a checkpoint (SPEC.md §11.1)', () => {
  it('lists every manifest of the version with a decision closed by the epoch, and what was decided', () => {
    const sim = simulator(MEMBERS, 'entry federation')
    const [m1, m2, undecided] = ['e1', 'e2', 'e3'].map((id) =>
      sim.manifest('v1', 0, { id, name: 'x', version: '1.0.0' }),
    ) as [Verified<'manifest'>, Verified<'manifest'>, Verified<'manifest'>]
    const late = sim.manifest('v1', 0, { id: 'e4', name: 'y', version: '1.0.0' })
    sim.add(m1, m2, undecided, late)
    const decideBy = (by: string, at: number, action: Action) =>
      decide(sim, { by, at, action, voters: ['s1', 's2', 's3'], sealers: ['s1', 's2'] })
    decideBy('s1', 10, { type: 'ratify-model', manifest: m1.cid })
    const revocation = decideBy('s2', 2000, { type: 'revoke-model', manifest: m1.cid, reason: 'withdrawn' })
    const ratification = decideBy('s3', 4000, { type: 'ratify-model', manifest: m2.cid })
    // Closes after the epoch: not in the checkpoint, though final when it is built.
    decideBy('s1', HOUR - 500, { type: 'ratify-model', manifest: late.cid })
    const content = checkpointFor(sim.fold.state(), sim.base + HOUR)

    const x = verifyProof(content.body.stateRoot, 'x@1.0.0', proveKey(content.root, 'x@1.0.0'))
    expect(x.ok).toBe(true)
    if (!x.ok) return
    const value = x.value.value!
    expect(value.status).toBe('ratified')
    expect(value.decision?.equals(ratification.proposal.cid)).toBe(true)
    expect(value.manifests).toEqual(
      [plainManifestEntry(m1.cid, true, true), plainManifestEntry(m2.cid, true, false)].sort((a, b) =>
        compareCids(a.cid, b.cid),
      ),
    )
    expect(resolvedManifest(value)?.cid.equals(m2.cid)).toBe(true)
    const y = verifyProof(content.body.stateRoot, 'y@1.0.0', proveKey(content.root, 'y@1.0.0'))
    expect(y.ok && y.value.value).toBeNull()

    // Before the second ratification closed: revoked, decided by the revocation.
    const earlier = checkpointFor(sim.fold.state(), sim.base + 4000)
    const before = verifyProof(earlier.body.stateRoot, 'x@1.0.0', proveKey(earlier.root, 'x@1.0.0'))
    expect(before.ok && before.value.value?.status).toBe('revoked')
    expect(before.ok && before.value.value?.decision?.equals(revocation.proposal.cid)).toBe(true)
    expect(before.ok && before.value.value?.manifests).toEqual([plainManifestEntry(m1.cid, true, true)])
  })
})
