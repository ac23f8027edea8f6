/**
 * The verifier's trust store: per federation, the highest checkpoint accepted so far (the trust
 * mark, so that nothing older is accepted later: rollback, protocol/SPEC.md §12.3) and, once a
 * certificate moved it, that checkpoint's governance head with its state (the TrustedHead, as TUF
 * keeps its trusted root), from which `--since` certificates are verified. Both live in one file,
 * `$ALLMENDE_HOME/trust/<federation>.json`, written atomically: `{height, epoch, trustedHead?}`,
 * the head encoded by the protocol (dag-cbor) as base64 (docs/adr/0026). A mark kept by an older
 * version has no head and keeps working. The library's `verifyModel` takes the mark as `trusted`;
 * keeping it on disk is the CLI's.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeAtomic } from '../node/index.js'
import {
  decodeTrustedHead,
  encodeTrustedHead,
  isTrustedHead,
  MAX_CLOCK_SKEW_MS,
  type TrustedHead,
  type TrustMark,
} from '../protocol/index.js'
import { CliError } from './context.js'
import { allmendeHome } from './homes.js'

/** What the store holds for a federation: a bare mark (older versions) or a mark with its head. */
export type KeptTrust = TrustMark | TrustedHead

export function trustPath(federation: string, home: string = allmendeHome()): string {
  return join(home, 'trust', `${federation}.json`)
}

/**
 * What is kept for a federation, if anything. A mark whose epoch lies past `now +
 * MAX_CLOCK_SKEW_MS` was kept by an older version from a checkpoint dated in the future (SPEC
 * §12.3 now forbids it): it keeps its height, which still stops rollbacks, but not its epoch,
 * which would refuse every honest checkpoint of that height until the clock caught up.
 */
export async function readTrust(
  federation: string,
  home?: string,
  now: number = Date.now(),
): Promise<KeptTrust | undefined> {
  const path = trustPath(federation, home)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch {
    return undefined
  }
  const kept = parseTrust(text)
  if (kept === undefined) throw new CliError('trust-corrupt', `${path} is not a trust mark {height, epoch}`)
  if (kept.epoch > now + MAX_CLOCK_SKEW_MS) return { height: kept.height, epoch: 0 }
  return kept
}

/** The file's content, or undefined when it is not one this version wrote or reads. */
function parseTrust(text: string): KeptTrust | undefined {
  let fields: { height?: unknown; epoch?: unknown; trustedHead?: unknown }
  try {
    fields = JSON.parse(text)
  } catch {
    return undefined
  }
  const { height, epoch, trustedHead } = fields
  if (!Number.isSafeInteger(height) || !Number.isSafeInteger(epoch)) return undefined
  const mark = { height: height as number, epoch: epoch as number }
  if (trustedHead === undefined) return mark
  if (typeof trustedHead !== 'string') return undefined
  const decoded = decodeTrustedHead(new Uint8Array(Buffer.from(trustedHead, 'base64')))
  // The head must be the checkpoint's the mark names: the two are written together, never apart.
  if (!decoded.ok || decoded.value.height !== mark.height || decoded.value.epoch !== mark.epoch)
    return undefined
  return decoded.value
}

/** True when `next` should replace `kept`: a higher checkpoint, or the same one that now names its head. */
function supersedes(next: KeptTrust, kept: KeptTrust | undefined): boolean {
  if (kept === undefined) return true
  if (next.height !== kept.height) return next.height > kept.height
  if (next.epoch !== kept.epoch) return next.epoch > kept.epoch
  return isTrustedHead(next) && !isTrustedHead(kept)
}

/**
 * Keeps `trust` if it supersedes what is kept (atomically and durably: a crash leaves the old
 * file), mark and head in one write. Returns whether it was written.
 */
export async function keepTrust(federation: string, trust: KeptTrust, home?: string): Promise<boolean> {
  if (!supersedes(trust, await readTrust(federation, home))) return false
  const path = trustPath(federation, home)
  await mkdir(join(path, '..'), { recursive: true })
  const fields = {
    height: trust.height,
    epoch: trust.epoch,
    ...(isTrustedHead(trust)
      ? { trustedHead: Buffer.from(encodeTrustedHead(trust)).toString('base64') }
      : {}),
  }
  await writeAtomic(path, `${JSON.stringify(fields)}\n`)
  return true
}
