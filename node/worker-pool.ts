/**
 * The project's worker threads, one module for every pool (record signatures, file hashing, a
 * fetch's leaf hashing): starting a worker from the compiled tree or from sources, and a channel
 * to one worker whose answers come in the order of the requests. Why our own rather than piscina
 * or tinypool: docs/adr/0014-worker-pool.md.
 *
 * A worker module sits next to the module that starts it: `name.js` in the compiled tree and
 * beside the bundle (scripts/bundle.mjs builds each there), `name.ts` through tsx when running
 * from sources (tests). From sources the worker is TypeScript, so tsx's loader is registered in
 * the worker first: `--import tsx` in execArgv does not reach workers on Node 20.
 */
import { type TransferListItem, Worker } from 'node:worker_threads'

/** Starts the worker `name` (no extension) that sits beside the module at `from` (its import.meta.url). */
export function startWorker(from: string, name: string, workerData: unknown): Worker {
  const fromSources = from.endsWith('.ts')
  const url = new URL(`./${name}${fromSources ? '.ts' : '.js'}`, from)
  return fromSources
    ? new Worker(
        `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}) })`,
        { eval: true, workerData },
      )
    : new Worker(url, { workerData, execArgv: withoutLoaders(process.execArgv) })
}

/**
 * The process's flags without module loaders (`--import`, `--loader`, `--require` and their
 * values): a compiled worker is plain JavaScript, and a loader inherited from the process (tsx,
 * when the CLI runs from a TypeScript script) tripled a worker's start-up time.
 */
export function withoutLoaders(execArgv: readonly string[]): string[] {
  const loaders = ['--import', '--loader', '--experimental-loader', '--require', '-r']
  const out: string[] = []
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!
    if (loaders.includes(arg)) {
      i++ // its value follows
    } else if (!loaders.some((l) => arg.startsWith(`${l}=`))) out.push(arg)
  }
  return out
}

export interface ChannelOptions<Answer> {
  /** What the worker is, for the error when it exits early ("a hashing worker"). */
  readonly what: string
  /** Messages that are not the answer but news of the request under way (progress). */
  readonly isNews?: (message: Answer) => boolean
  /** The worker keeps the process alive only while it has requests under way. */
  readonly unrefWhenIdle?: boolean
}

interface Waiting<Answer> {
  readonly resolve: (answer: Answer) => void
  readonly reject: (e: Error) => void
  readonly onNews: ((news: Answer) => void) | undefined
}

/**
 * One worker that answers each request with one message, in the order of the requests (news of
 * the oldest request may come before its answer). A worker that fails or exits fails every request
 * under way and every later one.
 */
export class WorkerChannel<Request, Answer> {
  private readonly waiting: Waiting<Answer>[] = []
  failed: Error | undefined

  constructor(
    private readonly worker: Worker,
    private readonly options: ChannelOptions<Answer>,
  ) {
    worker.on('message', (message: Answer) => this.received(message))
    worker.on('error', (e) => this.fail(e))
    worker.on('exit', (code) => this.fail(new Error(`${options.what} exited (${code})`)))
    if (options.unrefWhenIdle) worker.unref()
  }

  /** Requests under way. */
  get pending(): number {
    return this.waiting.length
  }

  ask(
    request: Request,
    onNews?: (news: Answer) => void,
    transfer?: readonly TransferListItem[],
  ): Promise<Answer> {
    if (this.failed) return Promise.reject(this.failed)
    return new Promise((resolve, reject) => {
      // Busy workers keep the process alive until they answer; idle ones do not.
      if (this.options.unrefWhenIdle && this.waiting.length === 0) this.worker.ref()
      this.waiting.push({ resolve, reject, onNews })
      this.worker.postMessage(request, transfer)
    })
  }

  /** Ends the worker; requests still under way, and later ones, are refused. */
  async stop(reason = new Error(`${this.options.what} was stopped`)): Promise<void> {
    this.failed ??= reason
    await this.worker.terminate()
    this.fail(this.failed)
  }

  private received(message: Answer): void {
    if (this.options.isNews?.(message)) {
      this.waiting[0]?.onNews?.(message)
      return
    }
    this.waiting.shift()?.resolve(message)
    if (this.options.unrefWhenIdle && this.waiting.length === 0) this.worker.unref()
  }

  private fail(e: Error): void {
    this.failed ??= e
    for (const w of this.waiting.splice(0)) w.reject(this.failed)
  }
}

/** `count` channels to workers `name` beside `from` (see `startWorker`), each given `workerData`. */
export function startChannels<Request, Answer>(
  from: string,
  name: string,
  workerData: unknown,
  count: number,
  options: ChannelOptions<Answer>,
): WorkerChannel<Request, Answer>[] {
  return Array.from(
    { length: count },
    () => new WorkerChannel<Request, Answer>(startWorker(from, name, workerData), options),
  )
}
