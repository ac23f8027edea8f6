/**
 * When the checkpoint covering a decision is due (SPEC.md §11.2): the first epoch boundary E ≥ the
 * proposal's close, signed once E + sealDeadlineMs has passed; when that time has passed
 * without it, the next signing time ahead. A steward's checkpoint duty signs at such times the
 * epoch `newestDueEpoch` names: the two must agree.
 */
import { describe, expect, it } from 'vitest'
import { newestDueEpoch } from '../../../node/steward/checkpoint-duty.js'
import { checkpointDue } from '../../../protocol/checkpoint-due.js'

const rules = { checkpointIntervalMs: 5_000, sealDeadlineMs: 20_000 }

describe('checkpointDue', () => {
  it('a close between two boundaries is covered by the next one, signed a seal deadline later', () => {
    expect(checkpointDue(rules, 12_001, 13_000)).toEqual({
      epoch: 15_000,
      at: 35_000,
      overdue: false,
      nextAt: 35_000,
    })
  })

  it('a close exactly on a boundary is covered by that boundary (closesAt ≤ epoch)', () => {
    expect(checkpointDue(rules, 15_000, 15_500)).toMatchObject({ epoch: 15_000, at: 35_000 })
  })

  it('overdue: the covering checkpoint was due and is not counted; the next signing time is ahead of now', () => {
    // Due at 35 000; at 47 000 the newest boundary with E + 20 000 still ahead is 30 000 (50 000).
    expect(checkpointDue(rules, 12_001, 47_000)).toEqual({
      epoch: 15_000,
      at: 35_000,
      overdue: true,
      nextAt: 50_000,
    })
    // Exactly at a signing time, that one counts as passed: the next is one interval later.
    expect(checkpointDue(rules, 12_001, 50_000)).toMatchObject({ overdue: true, nextAt: 55_000 })
  })
})

describe("a steward's checkpoint duty and checkpointDue agree", () => {
  it('the epoch a steward signs at a signing time is the one checkpointDue says is due then', () => {
    for (const closesAt of [12_001, 15_000, 15_001, 19_999]) {
      const due = checkpointDue(rules, closesAt, closesAt)
      expect(newestDueEpoch(rules, due.at)).toBe(due.epoch)
      // Just before, the boundary before it is the newest due.
      expect(newestDueEpoch(rules, due.at - 1)).toBe(due.epoch - rules.checkpointIntervalMs)
    }
  })

  it('overdue: what a steward signs at the next signing time covers the decision too', () => {
    const due = checkpointDue(rules, 12_001, 47_000)
    expect(newestDueEpoch(rules, due.nextAt)).toBeGreaterThanOrEqual(due.epoch)
    expect(newestDueEpoch(rules, due.nextAt)).toBe(due.nextAt - rules.sealDeadlineMs)
  })
})
