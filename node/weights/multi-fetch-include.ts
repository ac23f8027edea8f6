/**
 * `--include GLOB`: which of a manifest's files a fetch takes. A glob matches a whole path: `*`
 * and `?` stay inside one path segment, a segment `**` matches any number of segments (none
 * too), everything else is literal. Hand-written rather than a library: the project has no glob
 * dependency, and Node 20's path.matchesGlob prints an experimental warning
 * (docs/adr/0030-multi-source-fetch.md).
 */
import { NodeError } from '../errors.js'

/** The longest glob taken (a path of the profile is far shorter). */
export const MAX_GLOB_CHARS = 256
/** The most `--include` globs taken. */
export const MAX_GLOBS = 64

/** A predicate over paths: true when any glob matches (always true with no globs). */
export function includeMatcher(globs: readonly string[]): (path: string) => boolean {
  if (globs.length > MAX_GLOBS)
    throw new NodeError('bad-include', `${globs.length} --include globs: at most ${MAX_GLOBS}`, {
      status: 400,
    })
  for (const glob of globs) {
    if (glob.length === 0 || glob.length > MAX_GLOB_CHARS)
      throw new NodeError(
        'bad-include',
        `an --include glob must have 1 to ${MAX_GLOB_CHARS} characters, not ${glob.length}`,
        { status: 400 },
      )
  }
  return (path) =>
    globs.length === 0 ||
    globs.some((glob) => wildcardMatches(glob.split('/'), path.split('/'), '**', segmentMatches))
}

/** One path segment against a segment of a glob: `*` any run of characters, `?` one. */
function segmentMatches(pattern: string, name: string): boolean {
  return wildcardMatches([...pattern], [...name], '*', (p, c) => p === '?' || p === c)
}

/**
 * `items` against `pattern`, where `star` matches any run of items and `equal` says whether one
 * pattern item matches one item. Two pointers that go back only to just after the last star, so
 * the work is at most pattern × items, whatever the pattern (a regular expression built from
 * `*a*a*…b` backtracks exponentially).
 */
function wildcardMatches<T>(
  pattern: readonly T[],
  items: readonly T[],
  star: T,
  equal: (p: T, item: T) => boolean,
): boolean {
  let p = 0
  let i = 0
  let afterStar = -1
  let resume = 0
  while (i < items.length) {
    if (p < pattern.length && pattern[p] === star) {
      while (pattern[p] === star) p++
      afterStar = p
      resume = i
    } else if (p < pattern.length && equal(pattern[p]!, items[i]!)) {
      p++
      i++
    } else if (afterStar >= 0) {
      // The last star takes one more item; the rest of the pattern tries again after it.
      p = afterStar
      i = ++resume
    } else return false
  }
  while (pattern[p] === star) p++
  return p === pattern.length
}
