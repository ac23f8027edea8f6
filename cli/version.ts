/**
 * What `allmende --version` prints: the package's version, the protocol version it speaks
 * (protocol/SPEC.md, carried by every record as `v`), and the Node and OpenSSL it runs on,
 * since node:crypto's Ed25519 verdicts on edge cases differ between builds (SPEC §4.2).
 *
 * The versions are constants rather than read from package.json: the CLI runs as one bundled
 * file (scripts/bundle.mjs), with no package.json at a fixed place beside it, and start-up
 * should not pay for a file read. test/unit/cli/version.test.ts keeps both equal to their sources.
 */

/** The npm package's version (package.json "version"). */
export const PACKAGE_VERSION = '0.1.0'

/** The protocol version of protocol/SPEC.md: the only record `v` this code accepts (SPEC §5.1). */
export const PROTOCOL_VERSION = 1

/** The lines `allmende --version` prints, one `name version` pair each. */
export function versionText(runtime: NodeJS.ProcessVersions = process.versions): string {
  return [
    `allmende ${PACKAGE_VERSION}`,
    `protocol ${PROTOCOL_VERSION}`,
    `node ${runtime.node}`,
    `openssl ${runtime.openssl}`,
  ].join('\n')
}
