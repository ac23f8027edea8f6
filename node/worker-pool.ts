/**
 * Starting one of the project's worker threads, from the compiled tree or from sources.
 *
 * A worker module sits next to the module that starts it: `name.js` in the compiled tree and
 * beside the bundle (scripts/bundle.mjs builds each there), `name.ts` through tsx when running
 * from sources (tests). From sources the worker is TypeScript, so tsx's loader is registered in
 * the worker first: `--import tsx` in execArgv does not reach workers on Node 20.
 */
import { Worker } from 'node:worker_threads'

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
