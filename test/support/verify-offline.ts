/**
 * Verifies a certificate in a process of its own: the only inputs are the
 * CAR file's bytes and the federation id as text (no fold, no simulator, no
 * module state shared with the test that built it). Prints the verdict as
 * JSON. Usage: node --import tsx verify-offline.ts <car file> <federation id> <now ms>
 */
import { readFileSync } from 'node:fs'
import { CID } from 'multiformats/cid'
import { verifyCertificate } from '../../protocol/certificate/index.js'

const [file, id, now] = process.argv.slice(2)
if (!file || !id || !now) throw new Error('usage: verify-offline.ts <car file> <federation id> <now ms>')
const v = verifyCertificate(CID.parse(id), new Uint8Array(readFileSync(file)), { now: Number(now) })
process.stdout.write(
  JSON.stringify({
    ok: v.ok,
    status: v.status,
    model: v.model,
    manifest: v.manifest?.toString(),
    proposal: v.proposal?.toString(),
    trusted: v.trusted,
    problems: v.problems,
  }),
)
