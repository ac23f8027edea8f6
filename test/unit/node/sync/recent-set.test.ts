/**
 * The bounded set sync remembers CIDs in (node/sync/recent-set.ts): what
 * strangers make a node remember must not grow without bound.
 */
import { describe, expect, it } from 'vitest'
import { RecentSet } from '../../../../node/sync/recent-set.js'

describe('a recent set', () => {
  it('holds max keys; one more forgets the oldest, and only the oldest', () => {
    const set = new RecentSet(3)
    for (const k of ['a', 'b', 'c']) set.add(k)
    expect(set.size).toBe(3)
    expect(['a', 'b', 'c'].every((k) => set.has(k))).toBe(true)
    set.add('d')
    expect(set.size).toBe(3)
    expect(set.has('a')).toBe(false)
    expect(['b', 'c', 'd'].every((k) => set.has(k))).toBe(true)
  })

  it('counts a key added again as the newest', () => {
    const set = new RecentSet(2)
    set.add('a')
    set.add('b')
    set.add('a')
    set.add('c')
    expect(set.has('a')).toBe(true)
    expect(set.has('b')).toBe(false)
  })

  it('refuses a bound that is not a positive integer', () => {
    for (const max of [0, -1, 1.5, Number.NaN]) expect(() => new RecentSet(max)).toThrow(RangeError)
  })
})
