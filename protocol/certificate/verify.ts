/**
 * Certificates: verification without a server (SPEC.md §12).
 *
 * A certificate is a CARv1 file whose single root is a small header block
 * `{certificate: 1, federation, model, genesis, checkpoint}`. It carries the
 * genesis; the newest counted checkpoint (every identical copy, so that t
 * steward signatures are present) with its `finalized` list; the governance
 * chain from the genesis to the checkpoint's head (proposals, their valid
 * seals, the seals' list blocks and the votes they name); the Merkle path
 * for `name@version` under the checkpoint's state root; and the manifest,
 * its attestations, and the deciding proposal with its seals, lists and
 * votes.
 *
 * `verifyCertificate` trusts nothing in the file but the federation id it is
 * given: it folds the records it finds with the same fold every node runs,
 * so the chain, the checkpoint's signatures (by stewards of state(head)),
 * the proof and the ratification's own tally are all recomputed. The header
 * is only a hint; blocks that are not records are ignored; the file size is
 * capped. Pure: `now` and `trusted` are parameters.
 */

import { CarBufferReader } from '@ipld/car/buffer-reader'
import { CID } from 'multiformats/cid'
import { equalBytes } from '../bytes.js'
import { DAG_CBOR_CODE, decodeStrict } from '../cbor.js'
import { cidKey, cidOfBlock } from '../cid.js'
import { createFold, type FederationState, proposalStatus } from '../fold/index.js'
import type { Verified } from '../record.js'
import { decodeRecord } from '../record.js'
import { federationIdOf } from '../signing.js'
import { verifyProof } from '../stateroot.js'
import {
  type CertificateProblem,
  type CertificateProblemCode,
  type CertificateVerdict,
  MAX_CERTIFICATE_BYTES,
  MAX_CLOCK_SKEW_MS,
  type TrustMark,
  type VerifyCertificateOptions,
} from './format.js'

function older(a: TrustMark, b: TrustMark): boolean {
  return a.height !== b.height ? a.height < b.height : a.epoch < b.epoch
}

/** Verifies a certificate offline from the federation id alone. Never throws. */
export function verifyCertificate(
  federation: CID,
  car: Uint8Array,
  options: VerifyCertificateOptions,
): CertificateVerdict {
  const problems: CertificateProblem[] = []
  const fail = (code: CertificateProblemCode, message: string): CertificateVerdict => ({
    ok: false,
    status: 'unknown',
    ...(options.trusted ? { trusted: options.trusted } : {}),
    problems: [...problems, { code, message }],
  })
  const cap = options.maxBytes ?? MAX_CERTIFICATE_BYTES
  if (car.length > cap)
    return fail('cert-too-large', `the certificate is ${car.length} bytes; at most ${cap} are read`)

  // Blocks, each checked against its CID.
  let reader: CarBufferReader
  try {
    reader = CarBufferReader.fromBytes(car)
  } catch (e) {
    return fail('cert-car', `not a CARv1 file: ${(e as Error).message}`)
  }
  const blocks = new Map<string, Uint8Array>()
  try {
    for (const b of reader.blocks()) {
      if (b.cid.code !== DAG_CBOR_CODE) continue
      if (!equalBytes(cidOfBlock(b.bytes).bytes, b.cid.bytes)) {
        problems.push({ code: 'cert-block-invalid', message: `block ${b.cid} does not match its CID` })
        continue
      }
      blocks.set(cidKey(b.cid), b.bytes)
    }
  } catch (e) {
    return fail('cert-car', `the CAR file is damaged: ${(e as Error).message}`)
  }
  const getBlock = (cid: CID) => blocks.get(cidKey(cid))

  // The header (a hint only).
  const roots = reader.getRoots()
  const headerBytes = roots.length === 1 ? getBlock(roots[0]!) : undefined
  const header = headerBytes ? decodeStrict(headerBytes) : undefined
  const h = (header?.ok ? header.value : undefined) as Record<string, unknown> | undefined
  if (h?.certificate !== 1 || typeof h.model !== 'string') {
    return fail('cert-header', 'the certificate has no readable header block as its root')
  }
  const model = h.model
  if (options.model !== undefined && options.model !== model) {
    return fail('cert-wrong-model', `the certificate is for ${model}, not ${options.model}`)
  }

  // The genesis: the record whose unsigned form has the federation id.
  let genesis: Verified<'genesis'> | undefined
  const genesisHint = CID.asCID(h.genesis)
  const candidates = genesisHint ? [genesisHint] : []
  for (const c of candidates) {
    const bytes = getBlock(c)
    const d = bytes
      ? decodeRecord(bytes, { ...(options.ed25519 ? { ed25519: options.ed25519 } : {}) })
      : undefined
    if (d?.ok && d.value.record.kind === 'genesis') {
      if (federationIdOf(d.value.record as never).equals(federation)) genesis = d.value as Verified<'genesis'>
    }
  }
  if (!genesis) {
    return fail('cert-genesis-mismatch', `the certificate holds no genesis with federation id ${federation}`)
  }

  // Fold every record in the file, as a node would.
  const fold = createFold(genesis)
  const skip = new Set([cidKey(roots[0]!), cidKey(genesis.cid)])
  for (const [key, bytes] of blocks) {
    if (skip.has(key)) continue
    const d = decodeRecord(bytes, {
      federation,
      blocks: getBlock,
      ...(options.ed25519 ? { ed25519: options.ed25519 } : {}),
    })
    if (d.ok) {
      fold.add(d.value)
      continue
    }
    if (d.code === 'list-block-missing') {
      problems.push({ code: 'cert-block-missing', message: `a record's list is incomplete: ${d.message}` })
    } else if (d.code.startsWith('sig-') || d.code.startsWith('list-')) {
      problems.push({
        code: 'cert-record-invalid',
        message: `a record in the certificate is invalid (${d.code}): ${d.message}`,
      })
    }
    // Anything else is not a record of this federation (or not a record at all): extra blocks are ignored.
  }
  const state = fold.state()
  for (const r of fold.records()) {
    const rep = fold.report(r.cid)
    if (
      rep?.status === 'pending' &&
      (rep.code === 'record-unknown' || rep.code === 'proposal-unknown' || rep.code === 'basis-unknown')
    ) {
      problems.push({
        code: 'cert-block-missing',
        message: `${r.record.kind} ${r.cid} waits for a record the certificate lacks`,
      })
    }
  }

  // The checkpoint.
  const cp = state.checkpoint
  if (!cp) {
    const badSigners = [...fold.records()].filter(
      (r) => r.record.kind === 'checkpoint' && fold.report(r.cid)?.status === 'inapplicable',
    )
    if (badSigners.length > 0) {
      problems.push({
        code: 'cert-checkpoint-signer',
        message: `${badSigners.length} checkpoint signature(s) are by keys that are not stewards of the checkpoint's head (removed or replaced keys cannot sign)`,
      })
    }
    return fail(
      'cert-checkpoint-unsigned',
      `no checkpoint in the certificate is signed by ${state.rules.sealThreshold} stewards`,
    )
  }
  const sealDeadlineMs = cp.rules.sealDeadlineMs
  // The earliest time an honest steward could have signed it.
  const signable = cp.epoch + sealDeadlineMs
  const age = options.now - signable
  const maxAge = options.maxAgeMs ?? 2 * cp.rules.checkpointIntervalMs
  const checkpoint = { cid: cp.cid, epoch: cp.epoch, height: cp.height, age }
  const mark: TrustMark = { height: cp.height, epoch: cp.epoch }
  if (signable > options.now + MAX_CLOCK_SKEW_MS) {
    problems.push({
      code: 'cert-future',
      message: `the checkpoint cannot have been signed before ${timeText(signable)}, ${Math.ceil(-age / 1000)} s after this computer's clock (at most ${MAX_CLOCK_SKEW_MS / 1000} s of difference are accepted): check this computer's clock; if it is right, the checkpoint was signed ahead of time`,
    })
  }
  if (options.trusted && older(mark, options.trusted)) {
    problems.push({
      code: 'cert-rollback',
      message: `the checkpoint (height ${cp.height}, epoch ${cp.epoch}) is older than one already trusted (height ${options.trusted.height}, epoch ${options.trusted.epoch})`,
    })
  }
  if (age > maxAge) {
    problems.push({
      code: 'cert-stale',
      message: `the checkpoint is ${Math.round(age / 1000)} s old; at most ${Math.round(maxAge / 1000)} s are accepted`,
    })
  }

  // The proof under the checkpointed root.
  const proof = verifyProof(cp.stateRoot, model, getBlock)
  // The high-water mark moves only to a checkpoint that is newer and came with no integrity problem.
  const markAfter = (): TrustMark | undefined =>
    problems.every((p) => STATUS_ONLY.has(p.code)) && !(options.trusted && older(mark, options.trusted))
      ? mark
      : options.trusted
  const base = { model, checkpoint }
  const done = <T extends object>(r: T) => {
    const trusted = markAfter()
    return { ...r, ...(trusted ? { trusted } : {}) }
  }
  if (!proof.ok) {
    problems.push({ code: 'cert-proof', message: `the proof for ${model} does not verify: ${proof.message}` })
    return done({ ...base, ok: false, status: 'unknown' as const, problems })
  }
  if (!proof.value.head.equals(cp.head) || proof.value.height !== cp.height) {
    problems.push({ code: 'cert-proof', message: 'the state root names another head than the checkpoint' })
  }
  const value = proof.value.value
  if (!value) {
    problems.push({ code: 'cert-not-ratified', message: `${model} has no decision under the checkpoint` })
    return done({ ...base, ok: false, status: 'unknown' as const, problems })
  }
  const status = value.status
  const manifest = value.manifests.length === 1 ? value.manifests[0] : undefined
  const manifestRecord = manifest ? (fold.get(manifest) as Verified<'manifest'> | undefined) : undefined
  const result = {
    ...base,
    status,
    ...(manifest ? { manifest } : {}),
    ...(manifestRecord ? { manifestRecord } : {}),
    ...(value.decision ? { proposal: value.decision } : {}),
  }
  if (status === 'revoked')
    problems.push({ code: 'cert-revoked', message: `${model} is revoked under the checkpoint` })
  else if (status === 'conflicted')
    problems.push({ code: 'cert-conflicted', message: `${model} has more than one ratified manifest` })
  else if (status !== 'ratified')
    problems.push({ code: 'cert-not-ratified', message: `${model} is ${status}` })
  else {
    if (!manifestRecord)
      problems.push({
        code: 'cert-block-missing',
        message: `the manifest ${manifest} is not in the certificate`,
      })
    const problem = ratificationProblem(state, value.decision, manifest!)
    if (problem) problems.push({ code: 'cert-ratification-unproven', message: problem })
  }
  return done({ ...result, ok: problems.length === 0 && status === 'ratified', problems })
}

/** An ISO date when `ms` is one (a signed epoch may lie far beyond what Date can show). */
function timeText(ms: number): string {
  const d = new Date(ms)
  return Number.isNaN(d.getTime()) ? `${ms} ms after 1970` : d.toISOString()
}

/** Problems about the model's status or age, not about the certificate's integrity. */
const STATUS_ONLY: ReadonlySet<string> = new Set([
  'cert-stale',
  'cert-revoked',
  'cert-conflicted',
  'cert-not-ratified',
])

/** The ratification itself, recomputed: its seals (each re-tallied from its votes) must agree on passed. */
function ratificationProblem(
  state: FederationState,
  decision: CID | null,
  manifest: CID,
): string | undefined {
  if (!decision) return 'the entry names no ratifying proposal'
  const p = state.proposals.get(cidKey(decision))
  if (!p) return `the ratifying proposal ${decision} is not in the certificate`
  if (p.action.type !== 'ratify-model' || !p.action.manifest.equals(manifest))
    return 'the deciding proposal does not ratify this manifest'
  const status = proposalStatus(p, Number.MAX_SAFE_INTEGER)
  if (status !== 'final-passed') return `the ratifying proposal is ${status}`
  if (!p.decidedBy || p.weightsVerified !== true) {
    return `the ratifying proposal's seals do not show ${state.rules.sealThreshold} stewards agreeing on passed with verified weights`
  }
  return undefined
}
