/**
 * The admin's config routes (docs/adr/0028-mirrors-and-withholding.md), each needing the admin
 * token: `GET /admin/config` (the running config and the live settings with their defaults),
 * `PUT /admin/config/:key {value}` (a live setting checked, persisted to config.json and applied;
 * `null` restores the default), and `POST /admin/pin {model}` (`node pin N@V`: 202 while the
 * weights are fetched, 200 once held and verified; ask again to follow it), `POST
 * /admin/config/mirror/add|rm {pattern}` (`node mirror add|rm`: the policy edited in the live
 * config's turn, so two edits at once both land), and `POST /admin/unpin {model}` (`node unpin`).
 */
import type { FastifyInstance } from 'fastify'
import { DEFAULT_UNPIN_REVOKED_AFTER_MS, type NodeConfig } from '../config.js'
import { isLiveKey, LIVE_KEYS, type LiveConfig, type LiveKey } from '../config-live.js'
import {
  announcedGateways,
  MAX_MIRROR_PATTERN_CHARS,
  MAX_MIRROR_PATTERNS,
  type MirrorPolicy,
  mirrorAdded,
  mirrorPolicyProblem,
  mirrorRemoved,
  WEIGHTS_CONFIG_DEFAULTS,
} from '../config-weights.js'
import { NodeError } from '../errors.js'
import type { PinAnswer } from '../weights/mirror.js'
import type { Unpin } from '../weights/mirror-unpin.js'
import type { RequireAdmin } from './admin.js'

/**
 * The largest `PUT /admin/config/:key` body: the longest mirror policy with every character
 * written as a JSON `\uXXXX` escape (6 bytes), quotes and commas, and room for the wrapper.
 */
export const CONFIG_BODY_BYTES = MAX_MIRROR_PATTERNS * (MAX_MIRROR_PATTERN_CHARS * 6 + 3) + 1024

/** The longest `name@version` asked of `POST /admin/pin`. */
export const MAX_MODEL_KEY_CHARS = 512

export interface ConfigRoutesOptions {
  readonly requireAdmin: RequireAdmin
  readonly live: LiveConfig
  /** `node pin`; absent on a node without weights. */
  readonly pinOnce?: (model: string) => PinAnswer
  /** `node unpin`; absent on a node without weights. */
  readonly unpin?: Unpin
}

/** Each live setting: its value now, its default, and whether config.json sets it. */
function liveSettings(config: NodeConfig) {
  const defaults: Record<LiveKey, unknown> = {
    ...WEIGHTS_CONFIG_DEFAULTS,
    unpinRevokedAfterMs: DEFAULT_UNPIN_REVOKED_AFTER_MS,
    announceGateways: announcedGateways({ api: config.api }),
  }
  const settings: Record<string, { value: unknown; default: unknown; set: boolean }> = {}
  for (const key of LIVE_KEYS) {
    const value = config[key]
    settings[key] = { value: value ?? defaults[key], default: defaults[key], set: value !== undefined }
  }
  return settings
}

export function registerConfigRoutes(app: FastifyInstance, options: ConfigRoutesOptions): void {
  const { requireAdmin, live } = options
  app.get('/admin/config', async (req) => {
    requireAdmin(req)
    const config = live.current()
    return { config, live: LIVE_KEYS, settings: liveSettings(config) }
  })

  app.put('/admin/config/:key', { bodyLimit: CONFIG_BODY_BYTES }, async (req) => {
    requireAdmin(req)
    const key = (req.params as { key: string }).key
    if (!isLiveKey(key))
      throw new NodeError(
        'config-not-live',
        `"${key.slice(0, 64)}" is not a setting a running node changes; the live ones are ${LIVE_KEYS.join(', ')} (others: edit config.json and restart)`,
        { status: 400 },
      )
    const body = req.body as { value?: unknown } | null
    if (!body || typeof body !== 'object' || !('value' in body))
      throw new NodeError('bad-request', 'send {"value": …} (null restores the default)', { status: 400 })
    const previous = live.current()[key] ?? null
    const config = await live.set(key, body.value)
    return { key, value: liveSettings(config)[key]!.value, previous, persisted: true }
  })

  app.post('/admin/config/mirror/:verb', async (req) => {
    requireAdmin(req)
    const verb = (req.params as { verb: string }).verb
    if (verb !== 'add' && verb !== 'rm')
      throw new NodeError('not-found', 'POST /admin/config/mirror/add or /rm {"pattern": …}', { status: 404 })
    const entry = mirrorEntry(req.body)
    let previous: MirrorPolicy = WEIGHTS_CONFIG_DEFAULTS.mirror
    const config = await live.update('mirror', (current) => {
      previous = current.mirror ?? WEIGHTS_CONFIG_DEFAULTS.mirror
      const next = verb === 'add' ? mirrorAdded(previous, entry) : mirrorRemoved(previous, entry)
      if (next === undefined)
        throw new NodeError(
          'not-mirrored',
          `"${entry}" is not in the mirror policy; see "allmende node mirror list"`,
          {
            status: 409,
          },
        )
      return JSON.stringify(next) === JSON.stringify(previous) ? undefined : next
    })
    const mirror = config.mirror ?? WEIGHTS_CONFIG_DEFAULTS.mirror
    return { mirror, previous, changed: JSON.stringify(mirror) !== JSON.stringify(previous) }
  })

  app.post('/admin/pin', async (req, reply) => {
    requireAdmin(req)
    const model = modelOf(req.body)
    if (!options.pinOnce) throw weightsOff('pins')
    const answer = options.pinOnce(model)
    return reply.code(answer.status === 'held' ? 200 : 202).send(answer)
  })

  app.post('/admin/unpin', async (req) => {
    requireAdmin(req)
    const model = modelOf(req.body)
    if (!options.unpin) throw weightsOff('unpins')
    return options.unpin(model)
  })
}

/** The `model` of a pin or unpin body, or the 400 that says what to send. */
function modelOf(body: unknown): string {
  const model = (body as { model?: unknown } | null)?.model
  if (typeof model !== 'string' || !model.includes('@') || model.length > MAX_MODEL_KEY_CHARS)
    throw new NodeError(
      'bad-request',
      `send {"model": "name@version"} (at most ${MAX_MODEL_KEY_CHARS} characters)`,
      {
        status: 400,
      },
    )
  return model
}

/** The `pattern` of a mirror add or rm body: `ratified` or one name pattern, checked as the policy's. */
function mirrorEntry(body: unknown): string {
  const pattern = (body as { pattern?: unknown } | null)?.pattern
  if (pattern === 'ratified') return pattern
  const why = mirrorPolicyProblem([pattern])
  if (why)
    throw new NodeError('config-invalid', `send {"pattern": …}: "ratified" or a name pattern; ${why}`, {
      status: 400,
    })
  return pattern as string
}

function weightsOff(verb: string): NodeError {
  return new NodeError('weights-off', `this node runs without weights (Helia), so it ${verb} nothing`, {
    status: 409,
  })
}
