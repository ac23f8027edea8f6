/**
 * Which source fetches which piece of work, for a multi-source fetch: every source runs a few
 * requests at once, each taking the next unit of work from one queue, so a fast source takes more
 * of it. A source whose request fails in any way (unreachable, refused, stalled, a corrupt or
 * unwanted block, a CAR cut short) is dropped with its other requests, and what its units still
 * miss goes back to the front of the queue for the others. The work fails only when no source is
 * left (`fetch-failed`, naming each source's fault). Measured choices:
 * docs/adr/0030-multi-source-fetch.md.
 */
import { NodeError } from '../errors.js'

export interface SourceReport {
  readonly source: string
  /** Units this source completed. */
  units: number
  /** CAR bytes received from it in completed units. */
  bytes: number
  /** Why it was dropped, if it was. */
  dropped?: string
}

export interface ScheduleOptions<Unit> {
  readonly sources: readonly string[]
  readonly units: readonly Unit[]
  /** Requests each source has under way at once. */
  readonly perSource: number
  /** Runs one unit on one source; resolves with the bytes received. */
  readonly run: (source: string, unit: Unit, signal: AbortSignal) => Promise<number>
  /** What of a unit is still to do after a run of it failed (written parts are not asked for again). */
  readonly remaining: (unit: Unit) => Unit[]
  readonly signal: AbortSignal
  readonly onDrop?: (source: string, error: unknown) => void
}

/** Runs every unit to the end on the sources, or throws when none is left. */
export async function runOnSources<Unit>(options: ScheduleOptions<Unit>): Promise<SourceReport[]> {
  const queue = [...options.units]
  const reports = options.sources.map((source): SourceReport => ({ source, units: 0, bytes: 0 }))
  let running = 0
  const waiting: (() => void)[] = []
  const wake = () => {
    for (const w of waiting.splice(0)) w()
  }

  const lane = async (report: SourceReport, drop: AbortController) => {
    const signal = AbortSignal.any([options.signal, drop.signal])
    for (;;) {
      if (signal.aborted) return
      const unit = queue.shift()
      if (unit === undefined) {
        // Nothing queued; a unit under way may still come back from a source that fails.
        if (running === 0) return
        await new Promise<void>((r) => waiting.push(r))
        continue
      }
      running++
      try {
        // Read after the await: `report.bytes += await …` would add to a value read before it.
        const received = await options.run(report.source, unit, signal)
        report.bytes += received
        report.units++
      } catch (e) {
        queue.unshift(...options.remaining(unit))
        if (!drop.signal.aborted && !options.signal.aborted) {
          report.dropped = (e as Error)?.message ?? String(e)
          drop.abort(e)
          options.onDrop?.(report.source, e)
        }
      } finally {
        running--
        wake()
      }
    }
  }

  const lanes = reports.flatMap((report) => {
    const drop = new AbortController()
    return Array.from({ length: options.perSource }, () => lane(report, drop))
  })
  await Promise.all(lanes)
  if (options.signal.aborted) throw options.signal.reason
  if (queue.length > 0) throw noSourceLeft(reports)
  return reports
}

function noSourceLeft(reports: readonly SourceReport[]): NodeError {
  const why = reports.map((r) => r.dropped ?? `${r.source}: not reached`).join('; ')
  return new NodeError(
    'fetch-failed',
    reports.length === 0
      ? 'no source to fetch from'
      : `every source failed (${why}); run the fetch again to resume, or add a source with --gateway URL`,
    { status: 502 },
  )
}
