/**
 * Fuzz of the sync session logic (node/sync/session.ts) with fast-check,
 * against a real record store on a temp dir: random and mutated frames from
 * a peer that holds no member key, in both roles.
 *
 * - as responder: the peer's frames are whatever fast-check makes (random
 *   bytes; well-formed messages carrying junk list blocks, a stranger's
 *   signed records and seals, random CIDs; any of these mutated);
 * - as initiator: the peer answers like a rogue responder advertising junk
 *   ids (its reconciliation and its answers are honest about the junk),
 *   with fuzzed frames injected in between.
 *
 * Properties: a session never throws and never hangs (each ends within a
 * bound, or the run fails); it ends well or with a stable sync code; and not
 * one byte is written, nor one id added, for a peer that sends no seal or
 * checkpoint the store admits. A second property mixes an admitted seal with
 * its lists and junk in random frames: exactly the seal and its lists are
 * kept.
 *
 * Cases: FUZZ_RUNS (default 2,000 for each role, so `npm test` stays short);
 * `FUZZ_RUNS=10000 npx vitest run test/unit/node/sync/fuzz.test.ts` is the long run.
 */
import fc from 'fast-check'
import type { CID } from 'multiformats/cid'
import { beforeAll, describe, expect, it } from 'vitest'
import { nativeSigner } from '../../../../node/ed25519-native.js'
import { silentLogger } from '../../../../node/log.js'
import type { RecordStore } from '../../../../node/store.js'
import { createIdSet } from '../../../../node/sync/id-set.js'
import { createPeerLedger, DEFAULT_BUDGET } from '../../../../node/sync/ledger.js'
import { decodeMessage, encodeMessage, type SyncMessage } from '../../../../node/sync/messages.js'
import { createReconciler } from '../../../../node/sync/reconcile.js'
import {
  createSessions,
  type FrameChannel,
  RECONCILE_FRAME_LIMIT,
  type SessionOutcome,
} from '../../../../node/sync/session.js'
import { buildList, cidKey, cidOfBlock, encode } from '../../../../protocol/index.js'
import { seededBytes } from '../../../support/prng.js'
import { Simulator } from '../../../support/simulator.js'
import { scripted, storeForFile } from '../../../support/sync-channel.js'

const RUNS = Number(process.env.FUZZ_RUNS ?? 2_000)
/** A session of a fuzz case that takes longer than this hangs (they take milliseconds). */
const CASE_BOUND_MS = 20_000
const CODES = new Set([
  'sync-malformed',
  'sync-oversize',
  'sync-version',
  'sync-timeout',
  'sync-invalid',
  'sync-budget',
  'sync-junk',
  'sync-stream-failed',
])

const sim = new Simulator({
  members: [
    { name: 'a', roles: ['publisher', 'steward', 'voter'], weight: 1 },
    { name: 'b', roles: ['steward', 'voter'], weight: 1 },
  ],
  base: 1_800_000_000_000,
  name: 'sync-fuzz',
  signer: nativeSigner,
})

// ---------------------------------------------------------------- what a stranger has

const fakeCids = (n: number, tag: string): CID[] =>
  Array.from({ length: n }, (_, i) => cidOfBlock(encode({ tag, i })))

/** List-shaped blocks nothing names: leaves of random bytes or CIDs, branches of random CIDs. */
const junkBlocks: Uint8Array[] = [
  ...Array.from({ length: 6 }, (_, i) => encode([0, [seededBytes(10 + i * 700, i)]])),
  encode([0, fakeCids(40, 'leaf')]),
  encode([1, fakeCids(3, 'branch')]),
  encode([0, []]),
]
// The stranger's own seal (a valid signature by a key that is no member) and its lists.
const p = sim.proposal('a', 1, {
  closesAt: 3_600_000,
  action: { type: 'ratify-model', manifest: fakeCids(1, 'm')[0]! },
})
const strangerSealVotes = fakeCids(300, 'stranger-votes')
const strangerSeal = sim.seal('stranger', 2, { proposal: p.cid, votes: strangerSealVotes, attestations: [] })
const strangerLists = buildList(strangerSealVotes).blocks.map((b) => b.bytes)
const strangerRecords: Uint8Array[] = [
  strangerSeal.bytes,
  sim.vote('stranger', 3, { proposal: p.cid, choice: 'yes' }).bytes,
  sim.manifest('stranger', 4, { id: 'x', name: 'stranger-model', version: '1.0.0' }).bytes,
  sim.checkpoint('stranger', 5, 0).bytes,
]
// Member records exist only mutated (their signatures break): never offered intact.
const memberRecords: Uint8Array[] = [sim.vote('a', 6, { proposal: p.cid, choice: 'no' }).bytes, p.bytes]

const corpus = [...junkBlocks, ...strangerLists, ...strangerRecords]

// ---------------------------------------------------------------- arbitraries

/** One change that always alters the bytes: a bit flip, a truncation, a deletion or an insertion. */
function mutated(source: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(
      source,
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      fc.constantFrom('flip', 'cut', 'delete', 'insert'),
    )
    .map(([bytes, at, value, op]) => {
      const i = bytes.length === 0 ? 0 : at % bytes.length
      const out = Uint8Array.from(bytes)
      switch (op) {
        case 'flip':
          if (out.length === 0) return Uint8Array.of(value)
          out[i]! ^= value
          return out
        case 'cut':
          return out.subarray(0, i)
        case 'delete':
          return bytes.length === 0
            ? Uint8Array.of(value)
            : Uint8Array.from([...out.subarray(0, i), ...out.subarray(i + 1)])
        default:
          return Uint8Array.from([...out.subarray(0, i), value, ...out.subarray(i)])
      }
    })
}

const block: fc.Arbitrary<Uint8Array> = fc
  .oneof(
    fc.constantFrom(...corpus),
    mutated(fc.constantFrom(...corpus, ...memberRecords)),
    fc.uint8Array({ minLength: 1, maxLength: 300 }),
  )
  .filter((b) => b.length > 0)

const someCid: fc.Arbitrary<CID> = fc.oneof(
  fc.constantFrom(...corpus.map((b) => cidOfBlock(b))),
  fc.uint8Array({ maxLength: 40 }).map((b) => cidOfBlock(b)),
)

const message: fc.Arbitrary<SyncMessage> = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 200 }).map((payload) => ({ type: 'reconcile' as const, payload })),
  fc.array(someCid, { minLength: 1, maxLength: 8 }).map((cids) => ({ type: 'get' as const, cids })),
  fc.array(block, { maxLength: 10 }).map((blocks) => ({ type: 'blocks' as const, blocks })),
  fc.constant({ type: 'done' as const }),
  fc.constantFrom('sync-malformed', 'x').map((code) => ({ type: 'error' as const, code })),
)

const frame: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 4, arbitrary: message.map(encodeMessage) },
  { weight: 3, arbitrary: mutated(message.map(encodeMessage)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) },
)

// ---------------------------------------------------------------- a rogue responder

/**
 * A peer answering the initiator like a responder that holds `held`: its reconciliation
 * replies and its answers to gets are honest about that set; `script` says, read by read,
 * whether to answer so or send a fuzzed frame instead. Bounded: the stream ends after 200 reads.
 */
function rogueResponder(held: readonly Uint8Array[], script: readonly (Uint8Array | null)[]): FrameChannel {
  const byKey = new Map(held.map((b) => [cidKey(cidOfBlock(b)), b]))
  const rec = createReconciler(
    createIdSet([...byKey.keys()].map((k) => cidOfBlock(byKey.get(k)!).multihash.digest)),
    {
      frameSizeLimit: RECONCILE_FRAME_LIMIT,
    },
  )
  let last: SyncMessage | undefined
  let reads = 0
  const honest = (): Uint8Array => {
    if (last?.type === 'reconcile') {
      const reply = rec.reconcile(last.payload).reply
      return encodeMessage({ type: 'reconcile', payload: reply ?? Uint8Array.of(0x61) })
    }
    if (last?.type === 'get') {
      const blocks = last.cids
        .map((c) => byKey.get(cidKey(c)))
        .filter((b): b is Uint8Array => b !== undefined)
      return encodeMessage({ type: 'blocks', blocks })
    }
    return encodeMessage({ type: 'done' })
  }
  return {
    async read({ signal }) {
      signal.throwIfAborted()
      if (reads >= 200) throw Object.assign(new Error('the stream ended'), { name: 'StreamEndedError' })
      const injected = script[reads++]
      return injected ?? honest()
    },
    async write(payload) {
      last = decodeMessage(payload)
    },
  }
}

// ---------------------------------------------------------------- the store

const storeOf = storeForFile(sim, 'allmende-sync-fuzz-')
let store: RecordStore
beforeAll(() => {
  store = storeOf()
})

/** Fresh sessions (a fresh ledger: one peer's spent budget would end every later case at once). */
function sessions() {
  const budget = { ...DEFAULT_BUDGET, junkPoints: 1_000_000 }
  return createSessions({
    store,
    log: silentLogger,
    ledger: createPeerLedger(budget, () => 0),
    budget,
    frameTimeoutMs: 2_000,
  })
}

/** The session's outcome, or a failure if it does not end within the bound. */
async function bounded(run: (signal: AbortSignal) => Promise<SessionOutcome>): Promise<SessionOutcome> {
  let timer: NodeJS.Timeout | undefined
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`a session did not end within ${CASE_BOUND_MS} ms`)),
      CASE_BOUND_MS,
    )
  })
  try {
    return await Promise.race([run(AbortSignal.timeout(CASE_BOUND_MS / 2)), hang])
  } finally {
    clearTimeout(timer)
  }
}

function expectEndedWell(outcome: SessionOutcome) {
  const { report } = outcome
  if (report.ok) expect(report.code).toBeUndefined()
  else expect(CODES.has(report.code!)).toBe(true)
}

describe('sync sessions fed random and mutated frames by a stranger', () => {
  it(`as responder (${RUNS} cases): never throw, never hang, store nothing`, async () => {
    const [bytes, ids] = [store.logBytes(), store.ids.size]
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { maxLength: 12 }), async (frames) => {
        const outcome = await bounded((signal) => sessions().respond(scripted(frames), 'stranger', signal))
        expectEndedWell(outcome)
        expect(store.logBytes()).toBe(bytes)
        expect(store.ids.size).toBe(ids)
      }),
      { numRuns: RUNS },
    )
  }, 600_000)

  it(`as initiator, against a rogue responder (${RUNS} cases): never throw, never hang, store nothing`, async () => {
    const [bytes, ids] = [store.logBytes(), store.ids.size]
    await fc.assert(
      fc.asyncProperty(
        fc.subarray(corpus, { minLength: 1 }),
        fc.array(fc.option(frame, { freq: 3 }), { maxLength: 10 }),
        async (held, script) => {
          const outcome = await bounded((signal) =>
            sessions().initiate(rogueResponder(held, script), 'stranger', signal),
          )
          expectEndedWell(outcome)
          expect(store.logBytes()).toBe(bytes)
          expect(store.ids.size).toBe(ids)
        },
      ),
      { numRuns: RUNS },
    )
  }, 600_000)
})

describe('an admitted seal among junk, in random frames', () => {
  // Seals by steward `a`, one per case (each names lists of its own).
  const cases = Math.min(RUNS, 300)
  const seals = Array.from({ length: cases }, (_, i) => {
    const votes = fakeCids(1 + ((i * 37) % 400), `seal-${i}`)
    const seal = sim.seal('a', 100 + i, { proposal: p.cid, votes, attestations: votes.slice(0, i % 3) })
    const lists = [...buildList(votes).blocks, ...buildList(votes.slice(0, i % 3)).blocks]
    return { seal, lists }
  })
  let next = 0

  it(`keeps the seal and exactly its lists (${cases} cases)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        // The empty list's leaf is left out: a seal with no attestations names it.
        fc.subarray(junkBlocks.slice(0, -1)),
        fc.array(fc.nat(), { minLength: 40, maxLength: 40 }),
        async (junk, order) => {
          const { seal, lists } = seals[next++ % seals.length]!
          const items = [seal.bytes, ...lists.map((b) => b.bytes), ...junk]
          // Shuffled by `order`, cut into frames of 1 to 3 blocks.
          const shuffled = items
            .map((b, i) => [order[i % order.length]! + i / 1000, b] as const)
            .sort((x, y) => x[0] - y[0])
          const frames: SyncMessage[] = []
          for (let i = 0; i < shuffled.length; i += 1 + (order[i % order.length]! % 3))
            frames.push({
              type: 'blocks',
              blocks: shuffled.slice(i, i + 1 + (order[i % order.length]! % 3)).map(([, b]) => b),
            })
          frames.push({ type: 'done' })
          const idsBefore = store.ids.size
          // Two lists of one seal may share a block (the same entries).
          const newLists = new Set(lists.map((b) => cidKey(b.cid)).filter((k) => !store.hasBlock(k)))
          const outcome = await bounded((signal) => sessions().respond(scripted(frames), 'peer', signal))
          expect(outcome.report).toMatchObject({ ok: true, refused: junk.length })
          expect(store.fold.has(seal.cid)).toBe(true)
          for (const b of lists) expect(store.hasBlock(cidKey(b.cid))).toBe(true)
          for (const b of junk) expect(store.hasBlock(cidKey(cidOfBlock(b)))).toBe(false)
          expect(store.ids.size).toBe(idsBefore + 1 + newLists.size)
        },
      ),
      { numRuns: cases },
    )
  }, 600_000)
})
