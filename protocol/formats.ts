/**
 * Text formats of manifest fields (SPEC.md §5.2): semantic versions (the
 * semver.org 2.0.0 grammar), SPDX license expressions (spdx-expression-parse,
 * which checks ids against the SPDX list) and BCP 47 language tags (bcp-47,
 * well-formedness per RFC 5646). Pure functions of the text.
 */
import { parse as parseBcp47 } from 'bcp-47'
import parseSpdx from 'spdx-expression-parse'

// The regular expression published with the semver 2.0.0 specification.
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/

export function isSemver(text: string): boolean {
  return text.length <= 256 && SEMVER.test(text)
}

export function isSpdxExpression(text: string): boolean {
  if (text.length === 0 || text.length > 256) return false
  try {
    parseSpdx(text)
    return true
  } catch {
    return false
  }
}

export function isBcp47(text: string): boolean {
  if (text.length === 0 || text.length > 64) return false
  let warned = false
  const tag = parseBcp47(text, {
    warning: () => {
      warned = true
    },
  })
  if (warned) return false
  return tag.language !== null || tag.privateuse.length > 0 || tag.irregular !== null || tag.regular !== null
}

/** Model names: letters, digits, `.`, `_`, `-`, optionally one `/` (organisation/name); never `@`. */
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)?$/
export function isModelName(text: string): boolean {
  return text.length <= 128 && MODEL_NAME.test(text)
}

/** Lower-case identifiers: attestation kinds, formats, metric names. */
const IDENT = /^[a-z][a-z0-9._-]*$/
export function isIdentifier(text: string, max = 64): boolean {
  return text.length <= max && IDENT.test(text)
}

/**
 * A relative POSIX path inside a model directory: no leading `/`, no empty,
 * `.` or `..` segments, no backslash or control characters.
 */
export function isRelativePath(text: string): boolean {
  if (text.length === 0 || text.length > 1024) return false
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f\\]/.test(text)) return false
  for (const segment of text.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') return false
  }
  return true
}
