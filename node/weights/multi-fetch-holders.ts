/**
 * The sources of a fetch: the node asked (its own gateway), the gateways its replication report
 * names for the version (`GET /replication?model=N@V`, holders' announced gateways), and those
 * given by hand; each an http(s) base URL, each once, at most MAX_SOURCES
 * (docs/adr/0030-multi-source-fetch.md).
 */
import { NodeError } from '../errors.js'

/** Sources fetched from at once; more only adds connections to a machine's one disk. */
export const MAX_SOURCES = 16
/** The longest source URL taken. */
export const MAX_SOURCE_URL_CHARS = 2048

/** A gateway URL as a base (`http://host:port`, no trailing slash), or undefined when it is not one. */
export function gatewayBase(url: string): string | undefined {
  if (url.length > MAX_SOURCE_URL_CHARS) return undefined
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return undefined
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return undefined
  if (parsed.search !== '' || parsed.hash !== '' || parsed.username !== '' || parsed.password !== '')
    return undefined
  return `${parsed.origin}${parsed.pathname.replace(/\/+$/, '')}`
}

/**
 * The gateways a replication answer names for `weights` (the CID's string), in the order given.
 * The answer is the node's word and is only a list of places to try: every block is checked.
 */
export function holderGateways(answer: unknown, weights: string): string[] {
  const versions = (answer as { versions?: unknown } | null)?.versions
  if (!Array.isArray(versions)) return []
  const gateways: string[] = []
  for (const version of versions as { weights?: unknown; holders?: unknown }[]) {
    if (version?.weights !== weights || !Array.isArray(version.holders)) continue
    for (const holder of version.holders as { gateways?: unknown }[]) {
      if (!Array.isArray(holder?.gateways)) continue
      for (const url of holder.gateways) if (typeof url === 'string') gateways.push(url)
    }
  }
  return gateways
}

/**
 * The sources in order (the node first, then the given ones, then the holders'), each once.
 * A given URL that is not a gateway base is refused; a holder's is skipped. Past MAX_SOURCES the
 * holders are left out; given ones past it are refused.
 */
export function sourceList(node: string, given: readonly string[], holders: readonly string[]): string[] {
  const sources = new Set<string>([node])
  for (const url of given) {
    const base = gatewayBase(url)
    if (base === undefined)
      throw new NodeError('bad-gateway', `--gateway ${url.slice(0, 80)} is not an http(s) URL of a gateway`, {
        status: 400,
      })
    sources.add(base)
  }
  if (sources.size > MAX_SOURCES)
    throw new NodeError(
      'bad-gateway',
      `${sources.size} sources: at most ${MAX_SOURCES} (the node and its --gateway URLs)`,
      {
        status: 400,
      },
    )
  for (const url of holders) {
    const base = gatewayBase(url)
    if (base !== undefined && sources.size < MAX_SOURCES) sources.add(base)
  }
  return [...sources]
}
