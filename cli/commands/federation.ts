/**
 * `allmende federation create | cosign | show` (the genesis: protocol/SPEC.md §5). The founder signs the
 * genesis; every other founding steward co-signs the same signing bytes. The federation id is
 * the CID of the genesis without signatures, so it is printed at creation and never changes.
 */
import { randomBytes } from 'node:crypto'
import { resolve } from 'node:path'
import type { Command } from 'commander'
import {
  cosignGenesis,
  federationIdOf,
  type GenesisBody,
  type SignedRecord,
  signRecord,
  wellFormedProblem,
} from '../../protocol/index.js'
import { fromSignedRecord } from '../../protocol/record.js'
import { action, CliError, collect, examples, usage } from '../context.js'
import { type GenesisFile, readGenesisFile, writeGenesisFile } from '../genesis.js'
import { type KeyOptions, signerOf, withKey } from '../keys.js'
import {
  applyRuleOptions,
  defaultRules,
  describeRules,
  parseMembers,
  type RuleOptions,
  withRuleOptions,
} from '../rules.js'

function summary(file: string, g: GenesisFile) {
  return {
    federation: g.federation.toString(),
    file,
    name: g.record.body.name,
    author: g.record.author,
    cosigners: g.cosigned,
    missing: g.missing,
    complete: g.problem === undefined,
  }
}

export function registerFederation(cli: Command): void {
  const federation = cli
    .command('federation')
    .description('found a federation: create, co-sign and inspect a genesis')
  examples(federation, [
    'allmende federation create --name N --member DID:steward,voter ... --out genesis.car',
    'allmende federation cosign genesis.car',
    'allmende federation show genesis.car',
  ])

  registerCreate(federation)
  registerCosign(federation)
  registerShow(federation)
}

/** `federation create`: a genesis signed by the founder, waiting for the founding stewards' co-signatures. */
function registerCreate(federation: Command): void {
  const create = federation
    .command('create')
    .description('write a genesis signed by your identity (you must be one of the members)')
    .requiredOption('--name <name>', 'the federation name')
    .requiredOption(
      '--member <DID:ROLES[:WEIGHT]>',
      'a founding member (repeat); roles: auditor,publisher,steward,voter',
      collect,
    )
    .requiredOption('--out <file>', 'where to write the genesis (a CAR file)')
    .option('--force', 'replace --out if it exists')
  withRuleOptions(create, 'create')
  withKey(create, 'the founder key that signs the genesis')
  examples(create, [
    'allmende federation create --name "Open Models DE" --out genesis.car \\',
    '    --member did:key:z6MkA…:steward,voter --member did:key:z6MkB…:steward,voter:2 \\',
    '    --member did:key:z6MkC…:steward,publisher,auditor \\',
    '    --rule ratify-model:quorum=1/2,threshold=2/3 --require ratify-model:eval=1 --voting-period 7d',
  ])
  create.action(
    action<{ name: string; member: string[]; out: string; force?: boolean } & RuleOptions & KeyOptions>(
      async (ctx, opts) => {
        const members = parseMembers(opts.member)
        const stewards = members.filter((m) => m.roles.includes('steward')).length
        const rules = applyRuleOptions(defaultRules(stewards), opts)
        const problem = wellFormedProblem(members, rules)
        if (problem) throw usage(`these members and rules are not a well-formed federation: ${problem}`)
        const name = opts.name.trim()
        if (name.length === 0 || Buffer.byteLength(name) > 256) throw usage('--name: 1 to 256 bytes')
        const signer = await signerOf(opts)
        if (!members.some((m) => m.id === signer.did)) {
          throw usage(
            `your key ${signer.did} is not among the --member list: the genesis is signed by a founding member`,
          )
        }
        const body: GenesisBody = { name, members, rules, nonce: new Uint8Array(randomBytes(16)) }
        let genesis: SignedRecord<'genesis'>
        try {
          genesis = signRecord({ kind: 'genesis', at: Date.now(), body }, signer).record
        } catch (e) {
          throw usage(`not a valid genesis: ${(e as Error).message}`)
        }
        const out = resolve(opts.out)
        await writeGenesisFile(out, genesis, { overwrite: opts.force === true })
        const g = await readGenesisFile(out)
        const s = summary(out, g)
        ctx.out(s, [
          `federation ${s.federation}`,
          `genesis written to ${out}`,
          ...(s.missing.length > 0
            ? [
                `waiting for the co-signatures of ${s.missing.length} founding steward(s):`,
                ...s.missing.map((d) => `  ${d}`),
                `each runs: allmende federation cosign ${opts.out}`,
              ]
            : ['complete: start nodes with allmende node init --federation ' + opts.out]),
        ])
      },
    ),
  )
}

/** `federation cosign`: a founding steward's co-signature added to the genesis file. */
function registerCosign(federation: Command): void {
  const cosign = federation
    .command('cosign')
    .description(
      'add your co-signature to a genesis (each founding steward but its author) and rewrite the file',
    )
    .argument('<file>', 'the genesis file')
  withKey(cosign, 'the founding steward key to co-sign with')
  examples(cosign, [
    'allmende federation cosign genesis.car',
    'allmende federation cosign genesis.car --key steward.key',
  ])
  cosign.action(
    action<KeyOptions>(async (ctx, opts, [file]) => {
      const path = resolve(file!)
      const g = await readGenesisFile(path)
      const signer = await signerOf(opts)
      if (signer.did === g.record.author)
        throw new CliError('cosign-author', `you (${signer.did}) signed this genesis as its author already`)
      if (!g.stewards.includes(signer.did))
        throw new CliError('cosign-not-steward', `${signer.did} is not a founding steward of this genesis`)
      let after = g
      if (!g.cosigned.includes(signer.did)) {
        const cosigs = [...(g.record.cosigs ?? []), cosignGenesis(g.record, signer)].sort((a, b) =>
          a.id < b.id ? -1 : a.id > b.id ? 1 : 0,
        )
        const record = fromSignedRecord({ ...g.record, cosigs }).record
        if (!federationIdOf(record).equals(g.federation))
          throw new Error('co-signing changed the federation id')
        await writeGenesisFile(path, record, { overwrite: true })
        after = await readGenesisFile(path)
      } else {
        ctx.note('you had co-signed this genesis already; nothing changed')
      }
      const s = summary(path, after)
      ctx.out(s, [
        `co-signed federation ${s.federation} as ${signer.did}`,
        s.missing.length > 0
          ? `still missing: ${s.missing.join(', ')}`
          : `complete: every founding steward has signed${after.problem ? ` — but: ${after.problem.message}` : ''}`,
      ])
    }),
  )
}

/** `federation show`: the genesis's members and rules, and who has co-signed. */
function registerShow(federation: Command): void {
  const show = federation
    .command('show')
    .description('print a genesis: members, rules, and who has co-signed and who is missing')
    .argument('<file>', 'the genesis file')
  examples(show, ['allmende federation show genesis.car', 'allmende --json federation show genesis.car'])
  show.action(
    action(async (ctx, _opts, [file]) => {
      const path = resolve(file!)
      const g = await readGenesisFile(path)
      const body = g.record.body
      const s = {
        ...summary(path, g),
        at: g.record.at,
        members: body.members.map((m) => ({ id: m.id, roles: m.roles, weight: m.weight })),
        rules: body.rules,
        ...(g.problem ? { problem: g.problem } : {}),
      }
      ctx.out(s, [
        `federation ${s.federation}  "${s.name}"`,
        `author     ${s.author}`,
        `created    ${new Date(g.record.at).toISOString()}`,
        'members:',
        ...body.members.map(
          (m) =>
            `  ${m.id}  ${m.roles.join(',')}  weight ${m.weight}${m.id === g.record.author ? '  (author)' : g.cosigned.includes(m.id) ? '  (co-signed)' : g.missing.includes(m.id) ? '  (missing co-signature)' : ''}`,
        ),
        'rules:',
        ...describeRules(body.rules).map((l) => `  ${l}`),
        g.problem
          ? `not yet valid: ${g.problem.message}`
          : 'complete: every founding steward has signed; a node will take this genesis',
      ])
    }),
  )
}
