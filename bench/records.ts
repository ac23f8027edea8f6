/**
 * Records per second: encode+sign and decode+verify of vote records, with
 * @noble/curves and with node:crypto (`nativeSigner`, `fastEd25519`), side
 * by side, plus raw node:crypto sign/verify of the same messages measured in
 * the same run, so the last column shows what the protocol costs on top of
 * the signature itself. Not part of `npm test`:
 *
 *     npx tsx bench/records.ts [records]
 */
import '../node/polyfill.js'
import { createPrivateKey, createPublicKey, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto'
import { sha256 } from '@noble/hashes/sha2.js'
import { fastEd25519, nativeSigner, PKCS8_PREFIX, SPKI_PREFIX } from '../node/ed25519-native.js'
import { utf8 } from '../protocol/bytes.js'
import { encode } from '../protocol/cbor.js'
import { cidOfBlock } from '../protocol/cid.js'
import { type Ed25519Backend, nobleSigner, zip215 } from '../protocol/ed25519.js'
import { decodeRecord, signRecord } from '../protocol/record.js'
import { createSigner, type Signer, signingBytes } from '../protocol/signing.js'
import type { Choice, SignedRecord } from '../protocol/types.js'

const N = Number(process.argv[2] ?? 5000)
const VOTERS = 50
const BASE = 1_767_225_600_000
const federation = cidOfBlock(encode({ bench: 'federation' }))
const proposal = cidOfBlock(encode({ bench: 'proposal' }))
const CHOICES: Choice[] = ['yes', 'no', 'abstain']
const seeds = Array.from({ length: VOTERS }, (_, i) => sha256(utf8.encode(`allmende-bench:${i}`)))

function time(fn: () => void): number {
  const t0 = performance.now()
  fn()
  return (performance.now() - t0) / 1000
}

const nobleSigners = seeds.map((s) => createSigner(s, nobleSigner)) // key derivation is not measured
const nativeSigners = seeds.map((s) => createSigner(s, nativeSigner))

function vote(i: number, signers: readonly Signer[]): Uint8Array {
  return signRecord<'vote'>(
    {
      kind: 'vote',
      federation,
      at: BASE + i,
      body: { proposal, choice: CHOICES[i % 3]!, reason: `reason ${i}` },
    },
    signers[i % VOTERS]!,
  ).bytes
}

function decodeAll(bytes: readonly Uint8Array[], backend: Ed25519Backend): void {
  for (const b of bytes) {
    const r = decodeRecord(b, { federation, ed25519: backend })
    if (!r.ok) throw new Error(`bench record rejected: ${r.code} ${r.message}`)
  }
}

// The reference: crypto.sign / crypto.verify of the same signing bytes with KeyObjects made beforehand.
const privs = seeds.map((s) =>
  createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, s]), format: 'der', type: 'pkcs8' }),
)
const pubs = nativeSigners.map((s) =>
  createPublicKey({ key: Buffer.concat([SPKI_PREFIX, s.publicKey]), format: 'der', type: 'spki' }),
)

// Warm up the JIT and the key caches.
for (let i = 0; i < Math.min(300, N); i++) {
  decodeAll([vote(i, nobleSigners)], zip215)
  decodeAll([vote(i, nativeSigners)], fastEd25519)
}

// Measure in interleaved chunks, so a change in machine load hits every column alike.
const CHUNKS = 10
const seconds = { nobleSign: 0, nativeSign: 0, nobleVerify: 0, nativeVerify: 0, rawSign: 0, rawVerify: 0 }
let recordBytes = 0
for (let c = 0; c < CHUNKS; c++) {
  const from = Math.floor((c * N) / CHUNKS)
  const to = Math.floor(((c + 1) * N) / CHUNKS)
  const idx = Array.from({ length: to - from }, (_, k) => from + k)
  let nobleBytes: Uint8Array[] = []
  let nativeBytes: Uint8Array[] = []
  seconds.nobleSign += time(() => {
    nobleBytes = idx.map((i) => vote(i, nobleSigners))
  })
  seconds.nativeSign += time(() => {
    nativeBytes = idx.map((i) => vote(i, nativeSigners))
  })
  for (let k = 0; k < idx.length; k++) {
    if (Buffer.compare(nobleBytes[k]!, nativeBytes[k]!) !== 0)
      throw new Error('noble and node:crypto disagree')
  }
  recordBytes = nativeBytes[0]?.length ?? recordBytes
  seconds.nobleVerify += time(() => decodeAll(nobleBytes, zip215))
  seconds.nativeVerify += time(() => decodeAll(nativeBytes, fastEd25519))
  const items = nativeBytes.map((b, k) => {
    const r = decodeRecord(b, { federation, ed25519: fastEd25519 })
    if (!r.ok) throw new Error('bench record rejected')
    const v = idx[k]! % VOTERS
    return {
      message: signingBytes(r.value.record as SignedRecord),
      sig: r.value.record.sig,
      priv: privs[v]!,
      pub: pubs[v]!,
    }
  })
  seconds.rawSign += time(() => {
    for (const it of items) cryptoSign(null, it.message, it.priv)
  })
  seconds.rawVerify += time(() => {
    for (const it of items)
      if (!cryptoVerify(null, it.message, it.pub, it.sig)) throw new Error('raw verify failed')
  })
}

const rate = (seconds: number) => N / seconds
const fmt = (x: number) => Math.round(x).toLocaleString('en-US').padStart(9)
const ratio = (x: number) => `${x.toFixed(1)}×`.padStart(8)
const pct = (x: number) => `${Math.round(x * 100)} %`.padStart(8)

const rows = [
  ['encode + sign', rate(seconds.nobleSign), rate(seconds.nativeSign), rate(seconds.rawSign)],
  ['decode + verify', rate(seconds.nobleVerify), rate(seconds.nativeVerify), rate(seconds.rawVerify)],
] as const

console.log(
  `${N.toLocaleString('en-US')} vote records, ${VOTERS} voters, ${recordBytes} bytes each; Node ${process.version}, OpenSSL ${process.versions.openssl}\n`,
)
console.log(
  `${'records/s'.padEnd(16)} ${'noble'.padStart(9)} ${'node:crypto'.padStart(11)} ${'node/noble'.padStart(10)}   ${'raw crypto'.padStart(10)} ${'of raw'.padStart(8)}`,
)
for (const [name, n, c, r] of rows) {
  console.log(
    `${name.padEnd(16)} ${fmt(n)} ${fmt(c).padStart(11)} ${ratio(c / n).padStart(10)}   ${fmt(r).padStart(10)} ${pct(c / r)}`,
  )
}
console.log(
  '\nnode:crypto = nativeSigner / fastEd25519 (OpenSSL, rejects re-checked by noble ZIP-215).' +
    '\nraw crypto = crypto.sign / crypto.verify of the same signing bytes with ready KeyObjects;' +
    '\n"of raw" = node:crypto records/s as a share of it: the rest is protocol overhead' +
    ' (DAG-CBOR, strict decode, schema, signing bytes).',
)
