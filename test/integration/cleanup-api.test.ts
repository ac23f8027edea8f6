/**
 * `POST /admin/gc` (node/api/gc.ts) at its edges, on one real node: the admin token is needed, a
 * body that is not `{dryRun: boolean}` is 400 `bad-request` with a message saying what to send,
 * and a body one byte over the 256-byte limit is refused as too large, never read.
 */
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { GC_BODY_BYTES } from '../../node/api/gc.js'
import { adminToken, initHome } from '../../node/config.js'
import { startNode } from '../../node/index.js'
import { silentLogger } from '../../node/log.js'
import { stewardFederation } from '../support/stewards.js'
import { tempDirForFile } from '../support/temp-dir.js'

const root = tempDirForFile('allmende-cleanup-api-')

describe('POST /admin/gc', () => {
  it('needs the token, a {dryRun: boolean} body, and at most 256 bytes of it', async () => {
    const sim = stewardFederation({ name: 'gc-api', keyPrefix: 'allmende-gc-api-test:', base: Date.now() })
    const home = join(root(), 'node')
    const config = await initHome(home, { genesis: sim.genesis, api: '127.0.0.1:0' })
    const node = await startNode({ home, config, genesis: sim.genesis, log: silentLogger })
    try {
      const token = (await adminToken(home)).trim()
      const post = async (body: string, auth = true) => {
        const res = await fetch(`${node.apiUrl}/admin/gc`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(auth ? { authorization: `Bearer ${token}` } : {}),
          },
          body,
        })
        return {
          status: res.status,
          body: (await res.json()) as { error?: { code: string; message: string } },
        }
      }
      expect((await post('{"dryRun":true}', false)).status).toBe(401)
      expect(await post('{"dryRun":true}')).toEqual({
        status: 200,
        body: { dryRun: true, roots: [], totalBytes: 0 },
      })
      for (const bad of ['{"dryRun":"yes"}', '[true]', '"dry"']) {
        const answer = await post(bad)
        expect(answer.status, bad).toBe(400)
        expect(answer.body.error).toMatchObject({
          code: 'bad-request',
          message: expect.stringContaining('dryRun'),
        })
      }
      // Exactly the limit is read; one byte more is not.
      const padded = (n: number) => `{"dryRun":true}${' '.repeat(n - '{"dryRun":true}'.length)}`
      expect((await post(padded(GC_BODY_BYTES))).status).toBe(200)
      const over = await post(padded(GC_BODY_BYTES + 1))
      expect(over.status).toBe(413)
    } finally {
      await node.stop()
    }
  }, 60_000)
})
