/**
 * `--include GLOB`: which of a manifest's files a fetch takes. A glob matches a whole path: `*`
 * and `?` stay inside one path segment, `**` crosses them (`**\/` also matches no directory),
 * everything else is literal. Hand-written rather than a library: the project has no glob
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
  const patterns = globs.map(globRegExp)
  return (path) => patterns.length === 0 || patterns.some((p) => p.test(path))
}

function globRegExp(glob: string): RegExp {
  if (glob.length === 0 || glob.length > MAX_GLOB_CHARS)
    throw new NodeError(
      'bad-include',
      `an --include glob must have 1 to ${MAX_GLOB_CHARS} characters, not ${glob.length}`,
      { status: 400 },
    )
  let source = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!
    if (c === '*' && glob[i + 1] === '*') {
      const slash = glob[i + 2] === '/'
      source += slash ? '(?:.*/)?' : '.*'
      i += slash ? 2 : 1
    } else if (c === '*') source += '[^/]*'
    else if (c === '?') source += '[^/]'
    else source += c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
  }
  return new RegExp(`^${source}$`)
}
