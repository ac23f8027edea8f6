/** Runs the CLI from the sources (`npx tsx cli/run.ts …`); the installed binary is bin/allmende.js. */
import { main } from './main.js'

await main(process.argv)
