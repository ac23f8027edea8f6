/**
 * Whether the head state demands a record version this node does not speak (SPEC.md §5.1,
 * Versions; docs/adr/0023). Once the stewards raise `minVersion` above it, every proposal, vote
 * and seal this node could sign is `version-below-minimum`: it still keeps and relays records,
 * but takes no part in decisions until upgraded. The status shows it, and one log line says so
 * each time the demand changes.
 */

import { versionAboveSpoken } from '../../protocol/fold/versions.js'
import type { Fold } from '../../protocol/index.js'
import { RECORD_VERSION } from '../../protocol/types.js'
import type { Logger } from '../log.js'

export interface VersionWatch {
  /** The version the head state demands, when above the one this node speaks. */
  required(): number | undefined
  /** Reads the head state again (after records were held); logs when the demand changed. */
  review(): void
}

export function createVersionWatch(fold: Pick<Fold, 'headState' | 'state'>, log: Logger): VersionWatch {
  let required: number | undefined
  return {
    required: () => required,
    review() {
      const now = versionAboveSpoken(fold.headState())
      if (now === required) return
      required = now
      if (now === undefined) {
        log.info('record-version-supported', { speaks: RECORD_VERSION })
        return
      }
      log.error('record-version-unsupported', {
        speaks: RECORD_VERSION,
        required: now,
        head: fold.state().head.toString(),
        message: `the federation's rules demand records of version ${now}; this node signs version ${RECORD_VERSION} and takes no part in decisions until it is upgraded`,
      })
    },
  }
}
