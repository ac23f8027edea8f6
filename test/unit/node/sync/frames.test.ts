/**
 * Sync framing as a node reads it (node/sync/frames.ts, channel.ts): a frame
 * holds the largest list block; over a real stream (@libp2p/utils `lpStream`,
 * as streams.ts builds it) a frame counts its length prefix, and an announced
 * length above the limit ends the read as `sync-oversize` without waiting for
 * the payload.
 */
import { lpStream, streamPair } from '@libp2p/utils'
import { describe, expect, it } from 'vitest'
import { countedChannel } from '../../../../node/sync/channel.js'
import { isSyncError } from '../../../../node/sync/errors.js'
import { MAX_FRAME_BYTES, varintLength } from '../../../../node/sync/frames.js'
import { createPeerLedger, DEFAULT_BUDGET } from '../../../../node/sync/ledger.js'
import { encodeMessage, MAX_BLOCK_BYTES } from '../../../../node/sync/messages.js'

const limits = { ledger: createPeerLedger(DEFAULT_BUDGET), budget: DEFAULT_BUDGET, frameTimeoutMs: 10_000 }

describe('frames', () => {
  it('hold a blocks answer carrying the largest list block', () => {
    expect(MAX_FRAME_BYTES).toBeGreaterThan(1024 * 1024)
    const largest = encodeMessage({ type: 'blocks', blocks: [new Uint8Array(MAX_BLOCK_BYTES).fill(1)] })
    expect(largest.length).toBeLessThanOrEqual(MAX_FRAME_BYTES)
  })

  it('count each frame read with its length prefix', async () => {
    const [outbound, inbound] = await streamPair()
    const sender = lpStream(outbound, { maxDataLength: MAX_FRAME_BYTES })
    const channel = countedChannel(
      lpStream(inbound, { maxDataLength: MAX_FRAME_BYTES }),
      'peer',
      limits,
      AbortSignal.timeout(10_000),
    )
    for (const size of [0, 127, 128, 300_000]) {
      const payload = encodeMessage({ type: 'blocks', blocks: size === 0 ? [] : [new Uint8Array(size)] })
      await sender.write(payload)
      const before = channel.received
      const { message, bytes } = await channel.read()
      expect(message.type).toBe('blocks')
      expect(bytes).toBe(payload.length + varintLength(payload.length))
      expect(channel.received - before).toBe(bytes)
    }
  })

  it('refuse an announced length above the limit as sync-oversize, before the payload arrives', async () => {
    const [outbound, inbound] = await streamPair()
    const channel = countedChannel(
      lpStream(inbound, { maxDataLength: MAX_FRAME_BYTES }),
      'peer',
      limits,
      AbortSignal.timeout(10_000),
    )
    // Announce 64 MiB; send only a little of it (the rest never comes).
    outbound.send(Uint8Array.from([0x80, 0x80, 0x80, 0x20, 1, 2, 3]))
    const error = await channel.read().then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(isSyncError(error) && error.code).toBe('sync-oversize')
  })
})
