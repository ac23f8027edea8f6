/**
 * The retry policy of a steward's weights check (node/weights/steward-check.ts): how long one
 * background run may take, which problems a fetch can mend, which fetch failures are final, and
 * when a run that ended without a verdict is followed by another. Times come from the node's
 * clock, so a test on a fake clock decides when a check runs again.
 */
import type { Problem } from './verify.js'

/** After a run that ended without a verdict, the pause before the next check starts another. */
export const WEIGHTS_FETCH_RETRY_MS = 10_000

/** Problems of held weights that a fetch can mend: blocks not held, or held but damaged. */
const REFETCH: ReadonlySet<string> = new Set(['block-missing', 'block-corrupt', 'unreadable'])

/** Fetch failures that a retry would only repeat. */
const FETCH_FINAL: ReadonlySet<string> = new Set(['oversize', 'not-unixfs'])

/** One background run of a manifest's check: when it ended (0 while it runs), and its verdict if final. */
export interface CheckRun {
  endedAt: number
  verdict?: boolean
}

/**
 * How long one background fetch of a model's weights may take: a minute, and a second per 8 MiB
 * (a 14 GiB model gets half an hour). Each run starts over, so a fixed minute would never let a
 * model of many GiB arrive; a gateway that goes silent is left long before (gateway-fetch.ts).
 */
export function fetchBudgetMs(bytes: number): number {
  return 60_000 + Math.ceil(bytes / (8 * 1024 * 1024)) * 1000
}

/** Whether a fetch could mend what the check of the held weights found (else the content is wrong). */
export function fetchCanMend(problems: readonly Problem[]): boolean {
  return problems.every((p) => REFETCH.has(p.code))
}

/** Whether weights checked after a fetch are only incomplete (blocks still missing), not wrong. */
export function onlyMissing(problems: readonly Problem[]): boolean {
  return problems.every((p) => p.code === 'block-missing')
}

/** Whether a fetch failed for good: another run would be refused the same way. */
export function fetchFailedForGood(code: string): boolean {
  return FETCH_FINAL.has(code)
}

/** Whether a check of a manifest starts a run now: none ran yet, or the last ended a retry pause ago. */
export function runDue(run: CheckRun | undefined, now: number): boolean {
  return run === undefined || now - run.endedAt >= WEIGHTS_FETCH_RETRY_MS
}
