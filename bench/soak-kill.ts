/**
 * Soak: SIGKILL a node process during bursts of API submissions, N times
 * (default 1,000), restarting it on the same home each time and checking
 * that every record it ever acknowledged is still there.
 *
 *   npm run build && npx tsx bench/soak-kill.ts [rounds=1000]
 *
 * The test suite runs the same loop 20 times (test/e2e/crash.test.ts).
 */
import '../node/polyfill.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { initHome } from '../node/config.js'
import type { AnyVerified } from '../protocol/index.js'
import { burstThenKill, holds, startDaemon } from '../test/support/daemon.js'
import { Simulator } from '../test/support/simulator.js'

const ROUNDS = Number(process.argv[2] ?? 1000)
const sim = new Simulator({
  members: [
    { name: 'a', roles: ['publisher', 'steward', 'voter'], weight: 1 },
    { name: 'b', roles: ['steward', 'voter'], weight: 1 },
    { name: 'c', roles: ['steward', 'voter'], weight: 1 },
  ],
  base: Date.now(),
  name: 'soak',
})
const dir = await mkdtemp(join(tmpdir(), 'allmende-soak-'))
const home = join(dir, 'node')
await initHome(home, { genesis: sim.genesis, api: '127.0.0.1:0', logLevel: 'warn' })

let serial = 0
const acked: AnyVerified[] = []
const started = Date.now()
let lost = 0
for (let round = 0; round <= ROUNDS; round++) {
  const d = await startDaemon(home)
  // Check a sample each round (everything at the end) to keep rounds short.
  const check = round === ROUNDS ? acked : acked.slice(-400)
  for (const r of check) {
    if (!(await holds(d.api, r.cid))) {
      lost++
      console.error(`round ${round}: acknowledged record ${r.cid} is missing`)
    }
  }
  if (round === ROUNDS) {
    await d.kill('SIGTERM')
    break
  }
  const burst = Array.from({ length: 120 }, () => {
    serial++
    return sim.manifest('a', serial, { id: `s${serial}`, name: 'soak', version: `1.0.${serial}` })
  })
  acked.push(...(await burstThenKill(d, burst, 3 + Math.floor(Math.random() * 80))))
  if (round % 50 === 0)
    console.log(
      `round ${round}: ${acked.length} acknowledged so far, ${lost} lost, ${((Date.now() - started) / 1000).toFixed(0)} s`,
    )
}
await rm(dir, { recursive: true, force: true })
console.log(`${ROUNDS} SIGKILLs, ${acked.length} acknowledged records, ${lost} lost`)
process.exit(lost > 0 ? 1 : 0)
