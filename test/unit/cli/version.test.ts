/**
 * `allmende --version` (cli/version.ts): its constants equal their sources, package.json's
 * version and the protocol version of protocol/SPEC.md that the record schema accepts.
 */
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { PACKAGE_VERSION, PROTOCOL_VERSION, versionText } from '../../../cli/version.js'
import { isFutureVersion, recordSchema } from '../../../protocol/schema.js'
import { RECORD_VERSION } from '../../../protocol/types.js'

const read = (path: string): string => readFileSync(new URL(`../../../${path}`, import.meta.url), 'utf8')

describe('allmende --version', () => {
  it("names the package's version from package.json", () => {
    const pkg = JSON.parse(read('package.json')) as { version: string }
    expect(PACKAGE_VERSION).toBe(pkg.version)
  })

  it('names the protocol version in the title of SPEC.md, the record v the schema applies', () => {
    const title = read('protocol/SPEC.md').split('\n')[0]
    expect(title).toBe(`# allmende protocol specification, version ${PROTOCOL_VERSION}`)
    expect(PROTOCOL_VERSION).toBe(RECORD_VERSION)
    // A later v is a future record (SPEC.md §5.1, Versions): kept, its body not read.
    expect(isFutureVersion(PROTOCOL_VERSION + 1)).toBe(true)
    expect(isFutureVersion(PROTOCOL_VERSION)).toBe(false)
    expect(recordSchema({ v: PROTOCOL_VERSION - 1 })?.code).toBe('schema-version')
    // The version passes; the next check (the missing kind) is what refuses this one.
    expect(recordSchema({ v: PROTOCOL_VERSION })?.code).toBe('schema-missing-field')
  })

  it('prints one line each for the package, the protocol, Node and OpenSSL', () => {
    expect(versionText().split('\n')).toEqual([
      `allmende ${PACKAGE_VERSION}`,
      `protocol ${PROTOCOL_VERSION}`,
      `node ${process.versions.node}`,
      `openssl ${process.versions.openssl}`,
    ])
    const other = { ...process.versions, node: '24.21.0', openssl: '3.5.8' }
    expect(versionText(other)).toBe(
      `allmende ${PACKAGE_VERSION}\nprotocol ${PROTOCOL_VERSION}\nnode 24.21.0\nopenssl 3.5.8`,
    )
  })
})
