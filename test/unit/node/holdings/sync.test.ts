/**
 * The bounds of holdings sync (docs/adr/0029-holding-announcements.md): an answer carries at most
 * MAX_SYNC_MESSAGES frames and MAX_SYNC_BYTES bytes, and the asking side ends a session at one
 * frame or one byte more, at a frame over 2 KiB, at a fault, and at a silence longer than the
 * frame timeout.
 */
import { describe, expect, it } from 'vitest'
import type { SignedAnnouncement } from '../../../../node/holdings/announcement.js'
import type { Intake, TakeResult } from '../../../../node/holdings/intake.js'
import { HoldingsStore } from '../../../../node/holdings/store.js'
import {
  answerOf,
  type FrameReader,
  MAX_SYNC_BYTES,
  MAX_SYNC_MESSAGES,
  readAnswer,
  SessionEnd,
} from '../../../../node/holdings/sync.js'
import { MAX_HOLDINGS_MESSAGE_BYTES } from '../../../../node/holdings/wire.js'
import { FEDERATION, weightsCid } from '../../../support/holdings.js'

/** Frames of `size` bytes, `count` of them, then the empty end frame. */
function framesOf(count: number, size: number): FrameReader {
  let sent = 0
  return {
    read: async () => (sent++ < count ? new Uint8Array(size).fill(1) : new Uint8Array(0)),
  }
}

const accepting: Intake = { take: (): TakeResult => ({ verdict: 'accept', kind: 'announcement' }) }

async function endOf(frames: FrameReader, intake: Intake = accepting, frameTimeoutMs = 10_000) {
  const counts = { received: 0, stored: 0, deferred: 0 }
  try {
    await readAnswer(frames, intake, counts, { frameTimeoutMs, session: new AbortController().signal })
    return { code: 'ok', ...counts }
  } catch (e) {
    if (e instanceof SessionEnd) return { code: e.code, ...counts }
    throw e
  }
}

describe('the asking side', () => {
  it(`takes ${MAX_SYNC_MESSAGES} frames and ends the session at one more`, async () => {
    expect(await endOf(framesOf(MAX_SYNC_MESSAGES, 10))).toMatchObject({
      code: 'ok',
      stored: MAX_SYNC_MESSAGES,
    })
    expect((await endOf(framesOf(MAX_SYNC_MESSAGES + 1, 10))).code).toBe('too-many')
  })

  it(`takes ${MAX_SYNC_BYTES} bytes and ends the session at one byte more`, async () => {
    const frames = MAX_SYNC_BYTES / MAX_HOLDINGS_MESSAGE_BYTES
    expect((await endOf(framesOf(frames, MAX_HOLDINGS_MESSAGE_BYTES))).code).toBe('ok')
    // The same full frames, then one frame of a single byte.
    const full = framesOf(frames, MAX_HOLDINGS_MESSAGE_BYTES)
    let fullDone = false
    let extraSent = false
    const oneByteMore: FrameReader = {
      read: async (options) => {
        if (!fullDone) {
          const frame = await full.read(options)
          if (frame.byteLength > 0) return frame
          fullDone = true
        }
        if (extraSent) return new Uint8Array(0)
        extraSent = true
        return new Uint8Array([1])
      },
    }
    expect((await endOf(oneByteMore)).code).toBe('too-many')
  })

  it('ends the session at a frame over 2 KiB (the length-prefixed reader refuses it), at a fault, and at a silence', async () => {
    const oversize: FrameReader = {
      read: async () => {
        throw Object.assign(new Error('Message length too long'), { name: 'InvalidDataLengthError' })
      },
    }
    expect((await endOf(oversize)).code).toBe('oversize')
    const rejecting: Intake = {
      take: () => ({ verdict: 'reject', kind: 'announcement', reason: 'signature' }),
    }
    expect(await endOf(framesOf(3, 10), rejecting)).toMatchObject({ code: 'fault', received: 1 })
    const silent: FrameReader = {
      read: ({ signal }) =>
        new Promise((_, reject) =>
          signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
        ),
    }
    expect((await endOf(silent, accepting, 50)).code).toBe('timeout')
  })

  it('counts what it could not judge yet (no manifest, no member here) to ask again later', async () => {
    const deferring: Intake = {
      take: () => ({ verdict: 'ignore', kind: 'announcement', reason: 'unknown-weights' }),
    }
    expect(await endOf(framesOf(2, 10), deferring)).toMatchObject({ code: 'ok', deferred: 2, stored: 0 })
  })
})

describe('the answering side', () => {
  it(`sends at most ${MAX_SYNC_MESSAGES} announcements, newest first`, () => {
    const store = new HoldingsStore({
      clock: () => 1_000_000,
      ttlMs: 1_000_000,
      maxPerPeer: MAX_SYNC_MESSAGES + 1,
    })
    for (let i = 0; i <= MAX_SYNC_MESSAGES; i++) {
      const value: SignedAnnouncement = {
        federation: FEDERATION,
        peer: 'p',
        weights: weightsCid(i),
        gateways: [],
        verifiedAt: i,
        at: 500_000 + i,
        withdrawn: false,
        sig: new Uint8Array(64),
      }
      store.offerAnnouncement({ value, bytes: new Uint8Array([i & 0xff, i >> 8]) })
    }
    const answer = answerOf(store)
    expect(answer.length).toBe(MAX_SYNC_MESSAGES)
    // The oldest (at 500,000, bytes [0, 0]) is the one left out.
    expect(answer.some((b) => b[0] === 0 && b[1] === 0)).toBe(false)
  })
})
