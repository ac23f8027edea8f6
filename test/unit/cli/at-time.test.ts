/** `--at TIME` (docs/adr/0026): only forms with one meaning; a day that does not exist is refused. */
import { describe, expect, it } from 'vitest'
import { instantText, parseAt, problemsAsOf } from '../../../cli/at-time.js'

describe('--at TIME', () => {
  it('reads ms since the epoch, a date (midnight UTC), and a date-time with its offset', () => {
    expect(parseAt('1746100800000')).toBe(1746100800000)
    expect(parseAt('2025-05-01')).toBe(Date.UTC(2025, 4, 1))
    expect(parseAt('2025-05-01T12:00:00Z')).toBe(Date.UTC(2025, 4, 1, 12))
    expect(parseAt('2025-05-01T12:00Z')).toBe(Date.UTC(2025, 4, 1, 12))
    expect(parseAt('2025-05-01T14:00:00.250+02:00')).toBe(Date.UTC(2025, 4, 1, 12, 0, 0, 250))
    expect(parseAt('2025-05-01T10:30:00-01:30')).toBe(Date.UTC(2025, 4, 1, 12))
    expect(parseAt('2025-05-01t12:00:00z')).toBe(Date.UTC(2025, 4, 1, 12))
  })

  it('refuses a time without an offset, a day that does not exist, and anything else (exit 2)', () => {
    for (const text of [
      '2025-05-01T12:00:00',
      '2025-02-30',
      '2025-13-01',
      '2025-05-01T24:00Z',
      'yesterday',
      '1.5',
      '',
    ])
      expect(() => parseAt(text), text).toThrow(expect.objectContaining({ code: 'usage', exit: 2 }))
  })

  it('words cert-future as a checkpoint that did not exist yet at TIME', () => {
    const at = Date.UTC(2025, 4, 1, 12)
    const checkpoint = { height: 3, epoch: at + 60_000, age: -70_000 }
    const [future, stale] = problemsAsOf(
      [
        { code: 'cert-future', message: "check this computer's clock" },
        { code: 'cert-stale', message: 'old' },
      ],
      at,
      checkpoint,
    )
    expect(future!.message).toBe(
      `the checkpoint (height 3, epoch ${instantText(at + 60_000)}) did not exist yet at ${instantText(at)}: no steward could sign it before ${instantText(at + 70_000)}`,
    )
    expect(stale!.message).toBe('old')
  })

  it('refuses a checkpoint not yet signable at TIME even where the clock skew would let it through', () => {
    const at = Date.UTC(2025, 4, 1, 12)
    const [future] = problemsAsOf([], at, { height: 2, epoch: at - 1_000, age: -3_000 })
    expect(future).toMatchObject({ code: 'cert-future' })
    expect(future!.message).toContain(`did not exist yet at ${instantText(at)}`)
    expect(problemsAsOf([], at, { height: 2, epoch: at - 5_000, age: 0 })).toEqual([])
  })
})
