/**
 * `allmende demo` through the real binary (`npm run build` first): the whole story runs, exits 0,
 * reports the offline verification ok and the tampered file by name, and removes its temporary
 * directory — also when interrupted with Ctrl-C (SIGINT).
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const bin = join(dirname(fileURLToPath(import.meta.url)), '../../bin/allmende.js')

interface Line {
  step?: number
  name?: string
  progress?: string
  done?: boolean
  ok?: boolean
  dir?: string
  file?: string
  status?: string
  problems?: { code: string; path?: string }[]
  error?: string
}

function runDemo(onLine?: (line: Line, kill: (signal: NodeJS.Signals) => void) => void): Promise<{
  code: number | null
  lines: Line[]
  stderr: string
}> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, '--json', 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] })
    const lines: Line[] = []
    let buffered = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString()
      let i = buffered.indexOf('\n')
      while (i >= 0) {
        const text = buffered.slice(0, i)
        buffered = buffered.slice(i + 1)
        if (text.trim().length > 0) {
          const line = JSON.parse(text) as Line
          lines.push(line)
          onLine?.(line, (s) => child.kill(s))
        }
        i = buffered.indexOf('\n')
      }
    })
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, lines, stderr }))
  })
}

describe('allmende demo', () => {
  it('runs the whole story, verifies offline, names the tampered file and cleans up', async () => {
    const { code, lines, stderr } = await runDemo()
    expect(code, `${stderr}\n${JSON.stringify(lines.at(-1))}`).toBe(0)
    const steps = lines.filter((l) => l.step !== undefined).map((l) => l.name)
    expect(steps).toEqual([
      'genesis',
      'nodes',
      'model',
      'publish',
      'attest',
      'propose',
      'vote',
      'seal',
      'checkpoint',
      'certificate',
      'verify',
      'tamper',
      'cleanup',
    ])
    const verify = lines.find((l) => l.name === 'verify')!
    expect(verify).toMatchObject({ ok: true, status: 'ratified', problems: [] })
    const tamper = lines.find((l) => l.name === 'tamper')!
    expect(tamper.ok).toBe(false)
    expect(tamper.file).toMatch(/\.safetensors$/)
    expect(tamper.problems).toEqual([expect.objectContaining({ code: 'sha256-mismatch', path: tamper.file })])
    expect(lines.at(-1)).toMatchObject({ done: true, ok: true })
    const dir = lines.find((l) => l.name === 'genesis')!.dir!
    expect(dir).toBeTruthy()
    expect(existsSync(dir)).toBe(false)
  }, 120_000)

  it('removes its temporary directory when interrupted with Ctrl-C', async () => {
    const { code, lines } = await runDemo((line, kill) => {
      if (line.name === 'nodes') kill('SIGINT')
    })
    expect(code).toBe(130)
    const dir = lines.find((l) => l.name === 'genesis')!.dir!
    expect(existsSync(dir)).toBe(false)
  }, 120_000)
})
