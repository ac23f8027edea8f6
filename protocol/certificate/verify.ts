/**
 * Verifying a certificate (SPEC.md §12.2) offline, from the federation id alone: one function
 * per step, each a straight line of checks that add problems; a stopping problem (the file, its
 * header, its genesis, its `since`) ends the run. The records are folded with the fold every node
 * runs, so the chain, the checkpoint's signers, the proof and the ratification's own tally are
 * all recomputed; then the file must hold exactly the blocks its mode lists (contents.ts).
 * Pure: `now` and `trusted` are parameters. Modes and trust: docs/adr/0020, 0021.
 */
import type { CID } from 'multiformats/cid'
import { cidKey } from '../cid.js'
import type { Block } from '../cidlist.js'
import { type CheckpointView, type Fold, proposalStatus } from '../fold/index.js'
import { decodeRecord, type Verified } from '../record.js'
import { federationIdOf } from '../signing.js'
import { type MapValue, resolvedManifest, soleManifest, verifyProof } from '../stateroot.js'
import { collectContents } from './contents.js'
import { Findings } from './findings.js'
import {
  type CertificateHeader,
  type CertificateProblem,
  type CertificateVerdict,
  isTrustedHead,
  MAX_CERTIFICATE_BYTES,
  MAX_CLOCK_SKEW_MS,
  type TrustedHead,
  type TrustMark,
  type VerifyCertificateOptions,
} from './format.js'
import { readHeader } from './header.js'
import { type CertificateFile, orderProblems, readCertificateFile } from './read.js'
import { foldRecords } from './records.js'
import { older, stopped, verdictOf } from './verdict.js'

/** Verifies a certificate offline from the federation id alone. Never throws. */
export function verifyCertificate(
  federation: CID,
  car: Uint8Array,
  options: VerifyCertificateOptions,
): CertificateVerdict {
  const read = readCertificateFile(car, options.maxBytes ?? MAX_CERTIFICATE_BYTES)
  if ('stop' in read) return stopped([read.stop], options)
  const { file } = read
  const findings = new Findings()
  findings.problems.push(...read.problems)
  const headerRead = readHeader(file.roots, file.blocks, federation)
  if ('problem' in headerRead)
    return stopped([...findings.problems, headerProblem(headerRead.problem)], options)
  const { header } = headerRead
  const genesis = genesisOf(file, header, options)
  if ('code' in genesis) return stopped([...findings.problems, genesis], options, header)
  const anchor = trustedAnchor(header, options.trusted)
  if (anchor === false) return stopped([...findings.problems, sinceProblem(header)], options, header)
  findings.problems.push(...orderProblems(file.written, file.roots[0]!))
  if (options.model !== undefined && options.model !== header.model)
    findings.add('cert-wrong-model', `the certificate is for ${header.model}, not ${options.model}`)
  const headerKey = cidKey(file.roots[0]!)
  const records = { blocks: file.blocks, header, headerKey, genesis, anchor, ed25519: options.ed25519 }
  const fold = foldRecords(records, findings)
  checkCheckpointCopies(fold, findings)
  const newest = fold.state().checkpoint
  if (!newest) {
    const message = `no checkpoint in the certificate is signed by ${fold.state().rules.sealThreshold} stewards of its head state`
    findings.add('cert-checkpoint-unsigned', message)
    return verdictOf({ problems: findings.problems, header, options })
  }
  if (!newest.cid.equals(header.checkpoint))
    return stopped([...findings.problems, checkpointNotNamed(header, newest)], options, header)
  const age = checkFreshness(newest, options, findings)
  checkRollback(newest, options.trusted, findings)
  const proven = checkProof(newest, header.model, file, findings)
  // Which blocks the file lists depends on the proven entry: without one it cannot be said.
  if (proven.verified) checkCanonical(file, headerKey, fold, header, proven, findings)
  const entry = proven.entry
  if (entry) {
    checkStatus(entry, header.model, findings)
    checkManifestModel(fold, entry, header.model, findings)
    if (entry.status === 'ratified') checkRatification(fold, entry, header, findings)
  }
  return verdictOf({ problems: findings.problems, header, options, fold, newest, age, entry })
}

function headerProblem(message: string): CertificateProblem {
  return { code: 'cert-header', message }
}

function checkpointNotNamed(header: CertificateHeader, newest: CheckpointView): CertificateProblem {
  return headerProblem(
    `the header names checkpoint ${header.checkpoint}, not ${newest.cid}: the smallest steward-signed copy of the newest counted checkpoint`,
  )
}

// ---------------------------------------------------------------- steps

/**
 * Step 2: the block the header names is a valid genesis record (else the header is wrong) whose
 * federation id is the header's, and so the caller's.
 */
function genesisOf(
  file: CertificateFile,
  header: CertificateHeader,
  options: VerifyCertificateOptions,
): Verified<'genesis'> | CertificateProblem {
  const bytes = file.blocks.get(cidKey(header.genesis))?.bytes
  if (!bytes) return headerProblem(`the header’s genesis ${header.genesis} is not in the file`)
  const decoded = decodeRecord(bytes, options.ed25519 ? { ed25519: options.ed25519 } : {})
  if (!decoded.ok || decoded.value.record.kind !== 'genesis')
    return headerProblem(`the header’s genesis ${header.genesis} is not a valid genesis record`)
  const genesis = decoded.value as Verified<'genesis'>
  if (federationIdOf(genesis.record).equals(header.federation)) return genesis
  return {
    code: 'cert-genesis-mismatch',
    message: `the genesis in the certificate is not the genesis of federation ${header.federation}`,
  }
}

/**
 * Step 2, `since`: a file whose chain starts after a head verifies only from that head, which the
 * caller must hold as its TrustedHead; false when it does not. Undefined: from the genesis.
 */
function trustedAnchor(
  header: CertificateHeader,
  trusted: TrustMark | TrustedHead | undefined,
): TrustedHead | undefined | false {
  if (!header.since) return undefined
  return isTrustedHead(trusted) && trusted.head.equals(header.since) ? trusted : false
}

function sinceProblem(header: CertificateHeader): CertificateProblem {
  return {
    code: 'cert-since',
    message: `the certificate continues the chain after ${header.since}, a head this verifier does not hold as trusted: export it without --since`,
  }
}

/** Step 4: each copy of a checkpoint that the fold set aside, one problem per copy. */
function checkCheckpointCopies(fold: Fold, findings: Findings): void {
  for (const record of fold.records()) {
    if (record.record.kind !== 'checkpoint') continue
    const report = fold.report(record.key)
    if (report?.status !== 'inapplicable') continue
    if (report.code === 'checkpoint-not-steward') {
      const message = `checkpoint ${record.cid} is signed by ${record.record.author}, not a steward of its head state (removed or replaced keys cannot sign)`
      findings.add('cert-checkpoint-signer', message, record.key)
    } else if (
      report.code === 'checkpoint-head' ||
      report.code === 'checkpoint-label' ||
      report.code === 'checkpoint-epoch'
    ) {
      const message = `checkpoint ${record.cid} does not hold (${report.code}): ${report.message}`
      findings.add('cert-checkpoint-invalid', message, record.key)
    }
  }
}

/** Step 5: neither stale nor dated after the verifier's clock; returns the checkpoint's age. */
function checkFreshness(
  newest: CheckpointView,
  options: VerifyCertificateOptions,
  findings: Findings,
): number {
  // The earliest time an honest steward could have signed it.
  const signable = newest.epoch + newest.rules.sealDeadlineMs
  const age = options.now - signable
  const maxAge = options.maxAgeMs ?? 2 * newest.rules.checkpointIntervalMs
  if (signable > options.now + MAX_CLOCK_SKEW_MS) {
    findings.add(
      'cert-future',
      `the checkpoint cannot have been signed before ${timeText(signable)}, ${Math.ceil(-age / 1000)} s after this computer's clock (at most ${MAX_CLOCK_SKEW_MS / 1000} s of difference are accepted): check this computer's clock; if it is right, the checkpoint was signed ahead of time`,
    )
  }
  if (age > maxAge) {
    findings.add(
      'cert-stale',
      `the checkpoint is ${Math.round(age / 1000)} s old; at most ${Math.round(maxAge / 1000)} s are accepted`,
    )
  }
  return age
}

/** Step 6: not below the mark already trusted, height first. */
function checkRollback(newest: CheckpointView, trusted: TrustMark | undefined, findings: Findings): void {
  if (!trusted || !older(newest, trusted)) return
  const message = `the checkpoint (height ${newest.height}, epoch ${newest.epoch}) is older than one already trusted (height ${trusted.height}, epoch ${trusted.epoch})`
  findings.add('cert-rollback', message)
}

interface Proven {
  /** Whether the proof verified (the entry may still be absent: null). */
  readonly verified: boolean
  readonly entry: MapValue | null
  /** The blocks the proof read, in the order read. */
  readonly blocks: readonly Block[]
}

/** Step 7: the model's proof under the checkpoint's state root, for the checkpoint's head. */
function checkProof(
  newest: CheckpointView,
  model: string,
  file: CertificateFile,
  findings: Findings,
): Proven {
  const read: Block[] = []
  const proof = verifyProof(newest.stateRoot, model, (cid) => {
    const block = file.blocks.get(cidKey(cid))
    if (block) read.push(block)
    return block?.bytes
  })
  if (!proof.ok) {
    findings.add('cert-proof', `the proof for ${model} does not verify (${proof.code}): ${proof.message}`)
    return { verified: false, entry: null, blocks: read }
  }
  if (!proof.value.head.equals(newest.head) || proof.value.height !== newest.height)
    findings.add('cert-proof', 'the state root names another head than the checkpoint')
  if (!proof.value.value) findings.add('cert-not-ratified', `${model} has no decision under the checkpoint`)
  return { verified: true, entry: proof.value.value, blocks: read }
}

/**
 * The canonical set: every block outside what the mode lists is one problem, unless an earlier
 * step already named it (docs/adr/0020).
 */
function checkCanonical(
  file: CertificateFile,
  headerKey: string,
  fold: Fold,
  header: CertificateHeader,
  proven: Proven,
  findings: Findings,
): void {
  const listed = collectContents({
    fold,
    mode: header.mode,
    since: header.since,
    entry: proven.entry,
    proof: proven.blocks,
  })
  for (const [key, block] of file.blocks) {
    if (key === headerKey || listed.blocks.has(key) || findings.blocks.has(key)) continue
    findings.add(
      'cert-not-canonical',
      `block ${block.cid} is not one a ${header.mode} certificate of ${header.model} holds`,
    )
  }
}

/** Step 7, the status: only a ratified entry whose manifest is neither suspended nor tainted passes. */
function checkStatus(entry: MapValue, model: string, findings: Findings): void {
  const problem = statusProblem(entry, model)
  if (problem) findings.add(problem.code, problem.message)
  const resolved = resolvedManifest(entry)
  if (resolved?.suspension)
    findings.add('cert-suspended', `the manifest of ${model} is suspended under the checkpoint`)
  if (resolved?.taint) {
    const message = `the manifest of ${model} is tainted (${resolved.taint.reason}) under the checkpoint`
    findings.add('cert-tainted', message)
  }
}

function statusProblem(entry: MapValue, model: string): CertificateProblem | undefined {
  if (entry.status === 'revoked')
    return { code: 'cert-revoked', message: `${model} is revoked under the checkpoint` }
  if (entry.status === 'conflicted')
    return { code: 'cert-conflicted', message: `${model} has more than one ratified manifest` }
  if (entry.status !== 'ratified')
    return { code: 'cert-not-ratified', message: `${model} is ${entry.status}` }
  return undefined
}

/** Step 7, the key: the manifest the entry speaks of is one of the header's name@version. */
function checkManifestModel(fold: Fold, entry: MapValue, model: string, findings: Findings): void {
  const manifest = soleManifest(entry)
  const record = manifest && fold.get(manifest)
  if (record?.record.kind !== 'manifest') return
  const { name, version } = (record as Verified<'manifest'>).record.body
  if (`${name}@${version}` !== model)
    findings.add('cert-wrong-model', `the entry under ${model} proves a manifest of ${name}@${version}`)
}

/**
 * Step 8: the entry's decision ratifies its manifest, is final-passed by its own seals (each
 * re-tallied from its votes) with verified weights, and stands on the file's chain; the manifest
 * record is present.
 */
function checkRatification(fold: Fold, entry: MapValue, header: CertificateHeader, findings: Findings): void {
  const manifest = soleManifest(entry)!
  if (!fold.get(manifest))
    findings.add('cert-block-missing', `the manifest ${manifest} is not in the certificate`)
  const problem = ratificationProblem(fold, entry.decision, manifest, header)
  if (problem) findings.add('cert-ratification-unproven', problem)
}

function ratificationProblem(
  fold: Fold,
  decision: CID | null,
  manifest: CID,
  header: CertificateHeader,
): string | undefined {
  if (!decision) return 'the entry names no ratifying proposal'
  const state = fold.state()
  const proposal = state.proposals.get(cidKey(decision))
  if (!proposal) return `the ratifying proposal ${decision} is not in the certificate`
  if (proposal.action.type !== 'ratify-model' || !proposal.action.manifest.equals(manifest))
    return 'the deciding proposal does not ratify this manifest'
  if (!chainOf(fold, header).has(cidKey(proposal.basis)))
    return `the ratifying proposal's basis ${proposal.basis} is not on the certificate's chain, so its electorate is unproven`
  const status = proposalStatus(proposal, Number.MAX_SAFE_INTEGER)
  if (status !== 'final-passed') return `the ratifying proposal is ${status}`
  if (!proposal.decidedBy || proposal.weightsVerified !== true)
    return `the ratifying proposal's seals do not show ${state.rules.sealThreshold} stewards agreeing on passed with verified weights`
  return undefined
}

/** The heads a deciding proposal may stand on: the federation id, `since`, and every chain step. */
function chainOf(fold: Fold, header: CertificateHeader): Set<string> {
  const state = fold.state()
  const heads = new Set([cidKey(state.federation)])
  if (header.since) heads.add(cidKey(header.since))
  const start = header.since ?? state.federation
  for (let head = state.checkpoint!.head; !head.equals(start) && !heads.has(cidKey(head)); ) {
    heads.add(cidKey(head))
    const step = fold.get(head) as Verified<'proposal'> | undefined
    if (!step) break
    head = step.record.body.basis
  }
  return heads
}

/** An ISO date when `ms` is one (a signed epoch may lie far beyond what Date can show). */
function timeText(ms: number): string {
  const d = new Date(ms)
  return Number.isNaN(d.getTime()) ? `${ms} ms after 1970` : d.toISOString()
}
