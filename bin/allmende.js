#!/usr/bin/env node
// The `allmende` command: the compiled CLI, bundled into one file (built by `npm run build`,
// which `npm ci` runs; see scripts/bundle.mjs for why it is bundled).
import { main } from '../dist/allmende.mjs'

await main(process.argv)
