/**
 * The settings a running node changes without a restart (`allmende node config set`, and `node
 * mirror add|rm` over it): a new value is checked as config.json would be on start (the whole
 * file, with the value in it, through `parseConfig`), written to config.json atomically
 * (files.ts), then applied; readers take `current()` each time they act. One change at a time.
 * docs/adr/0028-mirrors-and-withholding.md.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { FILES, type NodeConfig, parseConfig } from './config.js'
import { NodeError } from './errors.js'
import { writeAtomic } from './files.js'

/** The keys a running node applies at once; every other setting needs a restart. */
export const LIVE_KEYS = [
  'mirror',
  'unpinRevokedAfterMs',
  'unratifiedRetentionMs',
  'minHolders',
  'scrubBytesPerSecond',
  'announceGateways',
  'holdingRenewMs',
] as const

export type LiveKey = (typeof LIVE_KEYS)[number]

export function isLiveKey(key: string): key is LiveKey {
  return (LIVE_KEYS as readonly string[]).includes(key)
}

export type LiveListener = (config: NodeConfig, key: LiveKey) => void

export interface LiveConfig {
  /** The config as it is now. */
  current(): NodeConfig
  /**
   * Checks, persists and applies `value` for `key`; `null` removes the key (its default applies).
   * Returns the config as it is now. Throws `config-invalid` (400) for a value the config would
   * refuse, naming why.
   */
  set(key: LiveKey, value: unknown): Promise<NodeConfig>
  /**
   * `set` with the value computed from the config as it is in this change's turn, so an edit
   * (`node mirror add`) made from the value before it cannot lose a concurrent one. `change`
   * returning undefined changes nothing; what it throws is the answer.
   */
  update(key: LiveKey, change: (config: NodeConfig) => unknown): Promise<NodeConfig>
  /** Calls `listener` after every change; returns what stops it. */
  onChange(listener: LiveListener): () => void
}

/**
 * The live config of the node in `home`, starting from `initial` (what it started with). The
 * file is read again at each change, so settings the operator edited by hand are kept as written.
 */
export function createLiveConfig(home: string, initial: NodeConfig): LiveConfig {
  const path = join(home, FILES.config)
  let config = initial
  let turn: Promise<unknown> = Promise.resolve()
  const listeners = new Set<LiveListener>()

  const apply = async (key: LiveKey, value: unknown): Promise<NodeConfig> => {
    const raw = await rawConfig(path, config)
    if (value === null) delete raw[key]
    else raw[key] = value
    const text = `${JSON.stringify(raw, null, 2)}\n`
    const parsed = parseConfig(text, 'the new config')
    await writeAtomic(path, text)
    const next: Record<string, unknown> = { ...config }
    if (parsed[key] === undefined) delete next[key]
    else next[key] = parsed[key]
    config = next as unknown as NodeConfig
    for (const listener of listeners) listener(config, key)
    return config
  }

  // One change at a time: each waits for the one before, whether it failed or not.
  const inTurn = (step: () => Promise<NodeConfig>): Promise<NodeConfig> => {
    const done = turn.then(step)
    turn = done.catch(() => {})
    return done
  }

  return {
    current: () => config,
    set: (key, value) => inTurn(() => apply(key, value)),
    update: (key, change) =>
      inTurn(async () => {
        const value = change(config)
        return value === undefined ? config : apply(key, value)
      }),
    onChange(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
  }
}

/** config.json as written (an object), or the running config when there is no file. */
async function rawConfig(path: string, running: NodeConfig): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { ...running }
    throw new NodeError('config-unreadable', `cannot read ${path}: ${(e as Error).message}`, { status: 500 })
  }
  try {
    const raw = JSON.parse(text) as unknown
    if (typeof raw === 'object' && raw !== null && !Array.isArray(raw)) return raw as Record<string, unknown>
  } catch {
    // Said below: the operator's file is broken, and a change must not overwrite it.
  }
  throw new NodeError(
    'config-invalid',
    `${path} is not a JSON object any more; fix it by hand, then set the value again`,
    { status: 409 },
  )
}
