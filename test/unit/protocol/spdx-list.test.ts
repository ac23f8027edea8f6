/**
 * The SPDX lists are part of protocol version 1 (protocol/SPEC.md §5.2): a license id added to the
 * SPDX list later must not make one implementation accept a manifest another refuses. Updating
 * these packages is a protocol change, so the lists are pinned here by their digests.
 */
import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import { isSpdxExpression } from '../../../protocol/formats.js'

const require = createRequire(import.meta.url)
const digest = (ids: readonly string[]) => createHash('sha256').update(ids.join('\n')).digest('hex')

describe('the SPDX lists of protocol version 1', () => {
  it('are spdx-license-ids 3.0.24 and spdx-exceptions 2.5.0, pinned by digest', () => {
    const licenses: string[] = require('spdx-license-ids')
    const deprecated: string[] = require('spdx-license-ids/deprecated')
    const exceptions: string[] = require('spdx-exceptions')
    expect([licenses.length, deprecated.length, exceptions.length]).toEqual([708, 26, 66])
    expect(digest(licenses)).toBe('41dd520b082d840e059ad9027d85e9f6873ab7616fe2fa65e2121ca3af001c4f')
    expect(digest(deprecated)).toBe('b64bd1abd33674e4362c5ba88c8dc481adfe76be099f3401b3799a3969358204')
    expect(digest(exceptions)).toBe('1463948ad3d9ba02b0a6c4c0cc0bc6c4074ba70ac874555bf2d1997422d08609')
  })

  it('match ids case-sensitively and take the SPDX 2.3 expression grammar', () => {
    expect(isSpdxExpression('Apache-2.0')).toBe(true)
    expect(isSpdxExpression('apache-2.0')).toBe(false)
    expect(isSpdxExpression('GPL-2.0-only WITH Classpath-exception-2.0 OR MIT')).toBe(true)
    expect(isSpdxExpression('LicenseRef-occiglot-research')).toBe(true)
    expect(isSpdxExpression('GPL-2.0+')).toBe(true)
    expect(isSpdxExpression('Not-A-License-1.0')).toBe(false)
  })
})
