/**
 * The verifier's trust marks: the highest checkpoint accepted so far, per federation, kept in
 * `$ALLMENDE_HOME/trust/<federation>.json` so that nothing older is accepted later (rollback;
 * protocol/SPEC.md §12). The library's `verifyModel` takes the mark as `trusted`; keeping it on
 * disk is the CLI's.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeAtomic } from '../node/index.js'
import { MAX_CLOCK_SKEW_MS, type TrustMark } from '../protocol/index.js'
import { CliError } from './context.js'
import { allmendeHome } from './homes.js'

export function trustPath(federation: string, home: string = allmendeHome()): string {
  return join(home, 'trust', `${federation}.json`)
}

/**
 * The highest checkpoint accepted so far for a federation, if any. A mark whose epoch lies past
 * `now + MAX_CLOCK_SKEW_MS` was kept by an older version from a checkpoint dated in the future
 * (SPEC §12.3 now forbids it): it keeps its height, which still stops rollbacks, but not its
 * epoch, which would refuse every honest checkpoint of that height until the clock caught up.
 */
export async function readTrust(
  federation: string,
  home?: string,
  now: number = Date.now(),
): Promise<TrustMark | undefined> {
  let text: string
  try {
    text = await readFile(trustPath(federation, home), 'utf8')
  } catch {
    return undefined
  }
  try {
    const v = JSON.parse(text) as { height?: unknown; epoch?: unknown }
    if (Number.isSafeInteger(v.height) && Number.isSafeInteger(v.epoch)) {
      const epoch = (v.epoch as number) > now + MAX_CLOCK_SKEW_MS ? 0 : (v.epoch as number)
      return { height: v.height as number, epoch }
    }
  } catch {}
  throw new CliError('trust-corrupt', `${trustPath(federation, home)} is not a trust mark {height, epoch}`)
}

/** Keeps `mark` if it is higher than the one kept (atomically and durably: a crash leaves the old one). */
export async function keepTrust(federation: string, mark: TrustMark, home?: string): Promise<void> {
  const old = await readTrust(federation, home)
  if (old && (old.height > mark.height || (old.height === mark.height && old.epoch >= mark.epoch))) return
  const path = trustPath(federation, home)
  await mkdir(join(path, '..'), { recursive: true })
  await writeAtomic(path, `${JSON.stringify({ height: mark.height, epoch: mark.epoch })}\n`)
}
