/**
 * `npm run conformance -- DIR`: runs every scenario file in DIR (default:
 * the shared scenarios beside the project, else the copy in
 * fixtures/conformance). Last line: `N passed, M failed`; exit 1 on any failure.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runScenario } from './scenario.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

export function defaultScenarioDir(): string {
  const shared = resolve(root, '../shared/conformance/scenarios')
  return existsSync(shared) ? shared : join(root, 'fixtures/conformance/scenarios')
}

function main(): void {
  const dir = resolve(process.argv[2] ?? defaultScenarioDir())
  if (!existsSync(dir)) {
    console.error(`conformance: no such directory: ${dir}`)
    process.exit(2)
  }
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
  let passed = 0
  let failed = 0
  for (const file of files) {
    let scenario: Record<string, unknown>
    try {
      scenario = JSON.parse(readFileSync(join(dir, file), 'utf8'))
    } catch (e) {
      console.log(`FAIL ${file}: not valid JSON (${(e as Error).message})`)
      failed++
      continue
    }
    const result = runScenario(scenario, file)
    if (result.failures.length === 0) {
      passed++
      console.log(`ok   ${file} — ${result.name}`)
    } else {
      failed++
      console.log(`FAIL ${file} — ${result.name}`)
      for (const f of result.failures) console.log(`       ${f}`)
    }
  }
  console.log(`${passed} passed, ${failed} failed`)
  process.exit(failed > 0 ? 1 : 0)
}

main()
