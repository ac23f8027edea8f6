/**
 * A running node's live settings, with its admin token (docs/adr/0028-mirrors-and-withholding.md):
 * `node config show`, `node config set KEY VALUE` (the settings a node applies without a restart,
 * persisted to its config.json), `node mirror add|rm|list` (the mirror policy, edited in the
 * node's own turn), `node pin N@V` (one ratified version fetched, verified and pinned once) and
 * `node unpin N@V` (its weights let go, when the node's duties no longer need them).
 */
import type { Command } from 'commander'
import { LIVE_KEYS } from '../../node/config-live.js'
import type { MirrorPolicy } from '../../node/config-weights.js'
import { action, CliError, EXIT, examples, usage } from '../context.js'
import { parseDuration, parseSize } from '../durations.js'
import { defaultNodeHome } from '../homes.js'
import { nodeAdmin } from '../node-admin.js'

/** How long `node pin` follows a fetch before it leaves it running and says so. */
const PIN_FOLLOW_MS = 6 * 3600_000
const PIN_POLL_MS = 1_000

interface Settings {
  readonly config: Record<string, unknown>
  readonly settings: Record<string, { value: unknown; default: unknown; set: boolean }>
}

/** The node of a home: its API address and admin token, and requests with that token. */
class AdminClient {
  private constructor(
    readonly base: string,
    private readonly token: string,
  ) {}

  static async of(homeOption: string): Promise<AdminClient> {
    const { config, token } = await nodeAdmin(homeOption)
    return new AdminClient(`http://${config.api}`, token)
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    let res: Response
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          accept: 'application/json',
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(30_000),
      })
    } catch (e) {
      const why = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message
      throw new CliError(
        'node-unreachable',
        `cannot reach the node at ${this.base} (${why}); is it running? (its address is "api" in config.json)`,
        EXIT.unreachable,
      )
    }
    const answer = (await res.json().catch(() => undefined)) as
      | (T & { error?: { code?: string; message?: string } })
      | undefined
    if (!res.ok || answer === undefined) {
      const error = answer?.error
      throw new CliError(
        error?.code ?? `http-${res.status}`,
        error?.message ?? `the node answered ${res.status} ${res.statusText}`,
      )
    }
    return { status: res.status, body: answer }
  }
}

/** A value as typed: JSON where it parses, a duration for `…Ms` keys, a size for `…BytesPerSecond`, else text. */
export function parseSettingValue(key: string, text: string): unknown {
  if (text === 'default') return null
  if (key.endsWith('Ms')) {
    const ms = parseDuration(text)
    if (ms === undefined) throw usage(`${key}: not a duration (e.g. 7d, 4h, 90s, or milliseconds): ${text}`)
    return ms
  }
  if (key.endsWith('BytesPerSecond')) {
    const bytes = parseSize(text)
    if (bytes === undefined) throw usage(`${key}: not a size (e.g. 32MiB, or bytes): ${text}`)
    return bytes
  }
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

function policyText(policy: MirrorPolicy): string[] {
  if (policy === 'none') return ['mirrors nothing of its own accord (mirror: none)']
  if (policy === 'ratified') return ['mirrors every ratified version (mirror: ratified)']
  return ['mirrors the ratified versions whose name matches:', ...policy.map((p) => `  ${p}`)]
}

async function setting(client: AdminClient, key: string, value: unknown) {
  return (
    await client.request<{ key: string; value: unknown; previous: unknown }>('PUT', `/admin/config/${key}`, {
      value,
    })
  ).body
}

function withHome(cmd: Command): Command {
  return cmd.option('--home <dir>', 'the node home (its API address and admin token)', defaultNodeHome())
}

function registerConfig(node: Command): void {
  const config = node.command('config').description("a running node's live settings (admin)")
  const show = withHome(config.command('show').description('the running config and the live settings'))
  examples(show, ['allmende node config show', 'allmende --json node config show --home /srv/allmende'])
  show.action(
    action<{ home: string }>(async (ctx, opts) => {
      const client = await AdminClient.of(opts.home)
      const { body } = await client.request<Settings>('GET', '/admin/config')
      ctx.out(body, [
        'live settings (node config set KEY VALUE; "default" restores one):',
        ...Object.entries(body.settings).map(
          ([k, s]) => `  ${k.padEnd(22)} ${JSON.stringify(s.value)}${s.set ? '' : '  (default)'}`,
        ),
      ])
    }),
  )
  const set = withHome(
    config
      .command('set')
      .description(`change a live setting and persist it (${LIVE_KEYS.join(', ')})`)
      .argument('<key>')
      .argument('<value>', 'JSON, a duration for …Ms (7d), a size for …BytesPerSecond (32MiB), or "default"'),
  )
  examples(set, [
    'allmende node config set unpinRevokedAfterMs 14d',
    'allmende node config set mirror \'["occiglot/*"]\'',
    'allmende node config set minHolders default',
  ])
  set.action(
    action<{ home: string }>(async (ctx, opts, [key, text]) => {
      const client = await AdminClient.of(opts.home)
      const r = await setting(client, key!, parseSettingValue(key!, text!))
      ctx.out(
        r,
        `${r.key} is now ${JSON.stringify(r.value)} (was ${JSON.stringify(r.previous)}); saved in config.json`,
      )
    }),
  )
}

function registerMirror(node: Command): void {
  const mirror = node.command('mirror').description("a running node's mirror policy (admin)")
  const list = withHome(mirror.command('list').description('what the node mirrors'))
  examples(list, ['allmende node mirror list'])
  list.action(
    action<{ home: string }>(async (ctx, opts) => {
      const { body } = await (await AdminClient.of(opts.home)).request<Settings>('GET', '/admin/config')
      const policy = body.settings.mirror!.value as MirrorPolicy
      ctx.out({ mirror: policy }, policyText(policy))
    }),
  )
  // The node edits the policy in its own turn: two edits at once both land.
  const edit = (verb: 'add' | 'rm') =>
    action<{ home: string }>(async (ctx, opts, [entry]) => {
      const client = await AdminClient.of(opts.home)
      const { body } = await client.request<{ mirror: MirrorPolicy; changed: boolean }>(
        'POST',
        `/admin/config/mirror/${verb}`,
        { pattern: entry },
      )
      ctx.out({ mirror: body.mirror, changed: body.changed }, policyText(body.mirror))
    })
  const add = withHome(
    mirror
      .command('add')
      .description('mirror the ratified versions matching PATTERN, or all (ratified)')
      .argument('<pattern>'),
  )
  examples(add, ['allmende node mirror add "occiglot/*"', 'allmende node mirror add ratified'])
  add.action(edit('add'))
  const rm = withHome(
    mirror.command('rm').description('stop mirroring PATTERN (or ratified)').argument('<pattern>'),
  )
  examples(rm, ['allmende node mirror rm "occiglot/*"'])
  rm.action(edit('rm'))
}

function registerUnpin(node: Command): void {
  const unpin = withHome(
    node
      .command('unpin')
      .description("let go of one version's weights the node's duties no longer need (admin)")
      .argument('<model>', 'name@version'),
  )
  examples(unpin, [
    'allmende node mirror rm "occiglot/*" && allmende node unpin occiglot/mistral-7b-de@1.0.0',
  ])
  unpin.action(
    action<{ home: string }>(async (ctx, opts, [model]) => {
      const client = await AdminClient.of(opts.home)
      const { body } = await client.request<{
        status: string
        weights: string
        blocks: number
        deleted: number
      }>('POST', '/admin/unpin', { model })
      ctx.out(
        body,
        body.status === 'unpinned'
          ? `${model}: weights ${body.weights} unpinned (${body.deleted} of ${body.blocks} blocks deleted; the rest other pins hold)`
          : `${model}: weights ${body.weights} were not pinned here`,
      )
    }),
  )
}

interface PinAnswer {
  status: 'fetching' | 'held'
  model: string
  weights: string
  verifiedAt?: number
  fetch?: { fetched?: number; bytes?: number; viaGateway?: number }
}

function registerPin(node: Command): void {
  const pin = withHome(
    node
      .command('pin')
      .description('fetch, verify and pin one ratified version once, whatever the mirror policy (admin)')
      .argument('<model>', 'name@version'),
  )
  examples(pin, ['allmende node pin occiglot/mistral-7b-de@1.0.0'])
  pin.action(
    action<{ home: string }>(async (ctx, opts, [model]) => {
      const client = await AdminClient.of(opts.home)
      const started = Date.now()
      let answer = (await client.request<PinAnswer>('POST', '/admin/pin', { model })).body
      const wasHeld = answer.status === 'held'
      // Each ask is answered at once; the node fetches in the background between them.
      while (answer.status === 'fetching' && Date.now() - started < PIN_FOLLOW_MS) {
        await new Promise((r) => setTimeout(r, PIN_POLL_MS))
        answer = (await client.request<PinAnswer>('POST', '/admin/pin', { model })).body
      }
      if (answer.status === 'fetching')
        throw new CliError('pin-still-fetching', `${model} is still being fetched; ask again later`)
      const did = wasHeld
        ? 'already held and verified here'
        : `fetched (${answer.fetch?.fetched ?? 0} blocks from the network, ${answer.fetch?.bytes ?? 0} bytes), verified and pinned`
      ctx.out({ ...answer, fetchedNow: !wasHeld }, `${model}: weights ${answer.weights} ${did}`)
    }),
  )
}

export function registerNodeMirror(node: Command): void {
  registerConfig(node)
  registerMirror(node)
  registerPin(node)
  registerUnpin(node)
}
