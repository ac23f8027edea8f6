/**
 * The federation a deployer's home trusts (`$ALLMENDE_HOME/federation.json`). Online `verify`,
 * `exec` and `certificate export` check every certificate a node serves against it, so a node of
 * another federation — or one that lies about which federation it serves — is refused.
 *
 * Trust on first use, as SSH does with host keys: with nothing pinned and no `--federation ID`,
 * the first node asked names the federation, and it is pinned and said so. A federation given
 * with `--federation ID` is pinned when nothing was. From then on a node of another federation is
 * `federation-mismatch`; `--federation ID --pin` replaces the pin on purpose, `--federation ID`
 * alone trusts another federation for one run.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { writeAtomic } from '../node/index.js'
import type { NodeClient } from './client.js'
import { CliError, usage } from './context.js'
import { allmendeHome } from './homes.js'
import { parseCidArg } from './records.js'

export interface Pin {
  readonly federation: string
  /** ISO time of pinning. */
  readonly pinnedAt: string
  /** The node URL it was first learnt from, or `--federation`. */
  readonly from: string
}

export function pinPath(home: string = allmendeHome()): string {
  return join(home, 'federation.json')
}

/** The pinned federation, if any; a file that is not a pin is an error naming it (never ignored). */
export async function readPin(home?: string): Promise<Pin | undefined> {
  const path = pinPath(home)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new CliError('pin-unreadable', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`)
  }
  try {
    const v = JSON.parse(text) as Partial<Pin>
    if (typeof v.federation === 'string' && CID.parse(v.federation))
      return {
        federation: v.federation,
        pinnedAt: typeof v.pinnedAt === 'string' ? v.pinnedAt : 'at an unknown time',
        from: typeof v.from === 'string' ? v.from : 'an unknown source',
      }
  } catch {}
  throw new CliError(
    'pin-corrupt',
    `${path} is not a federation pin {federation, pinnedAt, from}; remove it to pin again on next use`,
  )
}

/** Writes the pin atomically (a crash leaves the old one). */
export async function writePin(pin: Pin, home?: string): Promise<string> {
  const path = pinPath(home)
  await mkdir(join(path, '..'), { recursive: true, mode: 0o700 })
  await writeAtomic(path, `${JSON.stringify(pin)}\n`, { mode: 0o600 })
  return path
}

export interface FederationChoice {
  /** `--federation ID` */
  readonly federation?: string
  /** `--pin`: make `--federation` this home's pinned federation. */
  readonly pin?: boolean
}

export interface TrustedFederation {
  readonly federation: CID
  /** Set when this run wrote the pin: what to tell the user. */
  readonly pinned?: PinWritten
}

/**
 * The federation named by `--federation`, else the pinned one, and the pin to write once it is
 * used: `--federation` with `--pin`, or when nothing is pinned yet.
 */
export async function chosenFederation(
  choice: FederationChoice,
  home?: string,
): Promise<{ federation?: CID; pin?: Pin; toPin?: Pin }> {
  const given = choice.federation !== undefined ? parseCidArg(choice.federation, '--federation') : undefined
  if (choice.pin && !given) throw usage('--pin needs --federation ID: the federation to pin')
  const pin = await readPin(home)
  const toPin =
    given && (choice.pin || !pin)
      ? { federation: given.toString(), pinnedAt: new Date().toISOString(), from: '--federation' }
      : undefined
  const federation = given ?? (pin ? CID.parse(pin.federation) : undefined)
  return { ...(federation ? { federation } : {}), ...(pin ? { pin } : {}), ...(toPin ? { toPin } : {}) }
}

/** Writes `toPin` (from chosenFederation), and says what was written. */
export async function keepPin(toPin: Pin, firstUse: boolean, home?: string): Promise<PinWritten> {
  return { pin: toPin, file: await writePin(toPin, home), firstUse }
}

export interface PinWritten {
  readonly pin: Pin
  readonly file: string
  readonly firstUse: boolean
}

/**
 * The federation to check a node's certificates against: `--federation`, the pin, or — on first
 * use — the node's own, pinned. The node must say it serves that federation (a node that says so
 * falsely is caught by the certificate, which must chain to it).
 */
export async function trustedFederation(
  client: NodeClient,
  choice: FederationChoice,
  home?: string,
): Promise<TrustedFederation> {
  const chosen = await chosenFederation(choice, home)
  const status = await client.get<{ federation?: unknown }>('/status')
  let served: CID | undefined
  try {
    served = typeof status.federation === 'string' ? CID.parse(status.federation) : undefined
  } catch {}
  if (served === undefined)
    throw new CliError('bad-answer', `the node at ${client.base} does not say which federation it serves`)
  const expected = chosen.federation
  if (expected && !expected.equals(served)) {
    const why =
      choice.federation === undefined && chosen.pin
        ? `this home trusts federation ${expected} (pinned ${chosen.pin.pinnedAt} from ${chosen.pin.from}, in ${pinPath(home)})`
        : `--federation says ${expected}`
    throw new CliError(
      'federation-mismatch',
      `the node at ${client.base} serves federation ${served}, but ${why}. If you mean to trust ${served} from now on, run again with --federation ${served} --pin; for this run only, with --federation ${served}`,
    )
  }
  if (expected)
    return {
      federation: expected,
      ...(chosen.toPin ? { pinned: await keepPin(chosen.toPin, false, home) } : {}),
    }
  const first = { federation: served.toString(), pinnedAt: new Date().toISOString(), from: client.base }
  return { federation: served, pinned: await keepPin(first, true, home) }
}

/** What to tell the user when a run wrote the pin. */
export function pinNotice(pinned: PinWritten): string {
  const { pin, file, firstUse } = pinned
  return firstUse
    ? `trust on first use: pinned federation ${pin.federation}, as the node at ${pin.from} says, in ${file}; check this id with your federation's stewards. From now on a node of another federation is refused (--federation ID --pin to change it)`
    : `pinned federation ${pin.federation} (given with --federation) in ${file}; a node of another federation is refused from now on`
}
