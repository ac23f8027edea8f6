/**
 * `GET /replication?model=N@V` builds the one version's entry, not the whole report
 * (docs/adr/0029-holding-announcements.md): the route is open, and the report costs every
 * ratified version.
 */
import Fastify from 'fastify'
import { describe, expect, it } from 'vitest'
import { registerReplicationRoutes } from '../../../../node/api/replication.js'
import type { ReplicationEntry } from '../../../../node/holdings/report.js'

describe('GET /replication?model=', () => {
  it('answers from the one entry and minHolders, without building the report', async () => {
    const app = Fastify()
    let reports = 0
    const entry = {
      model: 'm@1',
      holders: [],
      affiliatedHolders: 0,
      flagged: true,
    } as unknown as ReplicationEntry
    registerReplicationRoutes(app, {
      report: () => {
        reports++
        return { minHolders: 3, versions: [entry] }
      },
      minHolders: () => 3,
      version: () => entry,
      bindings: () => [],
      submitBinding: async () => ({ verdict: 'accept', kind: 'binding' }),
    })
    const res = await app.inject({ method: 'GET', url: '/replication?model=m%401' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ minHolders: 3, versions: [entry] })
    expect(reports).toBe(0)
    await app.close()
  })
})
