/**
 * Errors of the node side (STYLE.md 8): one root, `NodeError`, with a stable
 * `code`. Library errors are wrapped at this boundary so callers (the CLI,
 * the HTTP API) can map codes to exit statuses and messages without stack
 * traces for user mistakes.
 */
export class NodeError extends Error {
  static override name = 'NodeError'
  override name = 'NodeError'
  readonly code: string
  readonly status: number

  constructor(code: string, message: string, options: { status?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.status = options.status ?? 500
  }
}

export function isNodeError(e: unknown): e is NodeError {
  return e instanceof Error && e.name === 'NodeError' && typeof (e as NodeError).code === 'string'
}
