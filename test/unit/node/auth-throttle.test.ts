import { describe, expect, it } from 'vitest'
import { createAuthThrottle } from '../../../node/auth-throttle.js'

describe('the budget of failed signature checks per address', () => {
  it('allows `burst` failures, refuses the next, and earns one back every 1/perSecond s', () => {
    let now = 1_000_000
    const t = createAuthThrottle({ burst: 20, perSecond: 10, clock: () => now })
    for (let i = 0; i < 20; i++) {
      expect(t.allows('a')).toBe(true)
      t.failed('a')
    }
    expect(t.allows('a')).toBe(false)
    // Another address has its own budget.
    expect(t.allows('b')).toBe(true)
    now += 99
    expect(t.allows('a')).toBe(false)
    now += 1
    expect(t.allows('a')).toBe(true)
    t.failed('a')
    expect(t.allows('a')).toBe(false)
    // Once the budget is whole again the address is forgotten.
    now += 2_000
    expect(t.allows('a')).toBe(true)
    expect(t.size()).toBe(0)
  })

  it('remembers at most maxAddresses: one more forgets the one touched longest ago', () => {
    const now = 0
    const t = createAuthThrottle({ burst: 1, perSecond: 1, maxAddresses: 3, clock: () => now })
    for (const a of ['a', 'b', 'c']) t.failed(a)
    expect(t.size()).toBe(3)
    t.failed('a') // touched again: now the newest
    t.failed('d')
    expect(t.size()).toBe(3)
    expect(t.allows('b')).toBe(true) // forgotten: its budget back
    expect(t.allows('a')).toBe(false)
    expect(t.allows('c')).toBe(false)
    expect(t.allows('d')).toBe(false)
  })
})
