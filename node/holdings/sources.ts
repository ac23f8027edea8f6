/**
 * The holders' gateways as fetch sources (docs/adr/0029-holding-announcements.md, SPEC §15.6):
 * anyone may announce, so the list a mirror or scrub tries is bounded and ordered before it is
 * used: at most 16, affiliated holders first, then the most recently verified; one URL per host;
 * never a link-local host (169.254.0.0/16, fe80::/10: cloud metadata services live there), so
 * a stranger's announcement cannot aim the node's fetches at them.
 */
import { BlockList, isIP } from 'node:net'
import type { Holder } from './report.js'

export const MAX_HOLDER_SOURCES = 16

/** Node's own address matcher (node:net), which also reads IPv4-mapped IPv6 forms. */
const LINK_LOCAL = new BlockList()
LINK_LOCAL.addSubnet('169.254.0.0', 16, 'ipv4')
LINK_LOCAL.addSubnet('fe80::', 10, 'ipv6')

/** The host of a gateway URL as the WHATWG parser reads it (it turns numeric IPv4 forms into dotted ones). */
function hostOf(url: string): string | undefined {
  try {
    return new URL(url).hostname.replace(/^\[|\]$/g, '')
  } catch {
    return undefined
  }
}

/** Whether `host` is a literal link-local address (names are not resolved here). */
export function isLinkLocal(host: string): boolean {
  const family = isIP(host)
  if (family === 4) return LINK_LOCAL.check(host, 'ipv4')
  if (family === 6) return LINK_LOCAL.check(host, 'ipv6')
  return false
}

/** The gateways to fetch from, in the order to try them. */
export function holderSources(holders: readonly Holder[]): string[] {
  const ordered = [...holders].sort(
    (a, b) => Number(b.member !== null) - Number(a.member !== null) || b.verifiedAt - a.verifiedAt,
  )
  const hosts = new Set<string>()
  const sources: string[] = []
  for (const holder of ordered)
    for (const url of holder.gateways) {
      const host = hostOf(url)
      if (!host || hosts.has(host) || isLinkLocal(host)) continue
      hosts.add(host)
      sources.push(url)
      if (sources.length === MAX_HOLDER_SOURCES) return sources
    }
  return sources
}
