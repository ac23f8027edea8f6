/**
 * A full garbage collection now and then during a long fetch (docs/adr/0030-multi-source-fetch.md).
 *
 * Why: a fetch streams GiBs through the socket's 64 KiB chunks. Those that wait for a hashing slot
 * outlive two scavenges and are promoted, and V8 lets old space, with the chunks' memory outside
 * it, grow a long way before it collects: sampled every second, a 2 GiB fetch rose from 157 to
 * 181 MB (about 12 MB per GiB, on course to pass 200 MB at 4 GiB). With old space capped
 * (`--max-old-space-size=40`) the same fetch stayed at 157 MB, so this is garbage, not data kept
 * alive. Node offers no collection without `--expose-gc`, which
 * the binary is not started with; the flag is turned on for this process only when a fetch
 * asks for a collector.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** Bytes written between two collections: a full collection of a small heap costs a few ms. */
export const COLLECT_EVERY_BYTES = 256 * 1024 * 1024

/** A function to call with the bytes written, which collects every COLLECT_EVERY_BYTES. */
export function collectorEvery(bytes = COLLECT_EVERY_BYTES): (written: number) => void {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  let since = 0
  return (written) => {
    since += written
    if (since < bytes) return
    since = 0
    gc()
  }
}
