#!/usr/bin/env node
// The `allmende` command: the compiled CLI (built by `npm run build`, which `npm ci` runs).
import { main } from '../dist/cli/main.js'

await main(process.argv)
