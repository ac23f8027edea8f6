/**
 * `allmende propose ratify | revoke | admit | remove | replace-key | rules`:
 * a proposal signed with your key, on the node's current head, closing after the federation's
 * voting period unless --closes says later.
 */
import type { Command } from 'commander'
import { type Action, signRecord, wellFormedProblem } from '../../protocol/index.js'
import { NodeClient, withNode } from '../client.js'
import { action, type Ctx, examples, usage } from '../context.js'
import { formatDuration, parseDuration } from '../durations.js'
import { type KeyOptions, signerOf, withKey } from '../keys.js'
import { parseCidArg, resolveManifest, type StateView, submit } from '../records.js'
import {
  applyRuleOptions,
  checkDid,
  parseRoles,
  parseWeight,
  type RuleOptions,
  withRuleOptions,
} from '../rules.js'

interface ProposeOptions extends KeyOptions {
  node?: string
  closes?: string
  basis?: string
  title?: string
  description?: string
}

type Build<O> = (
  opts: O,
  args: string[],
  state: StateView,
  client: NodeClient,
) => Promise<{ action: Action; title: string }>

function proposeCommand<O extends ProposeOptions>(
  parent: Command,
  name: string,
  description: string,
  args: string[],
  lines: string[],
  build: Build<O>,
  extra?: (cmd: Command) => void,
): Command {
  const cmd = parent.command(name).description(description)
  for (const a of args) cmd.argument(a)
  extra?.(cmd)
  cmd
    .option('--closes <dur>', "voting closes after this long (default: the federation's voting period)")
    .option('--basis <id>', "the governance state to propose on (default: the node's current head)")
    .option('--title <text>', 'a one-line title (default: made from the action)')
    .option('--description <text>', 'a longer description')
  withKey(cmd)
  withNode(cmd)
  examples(cmd, lines)
  cmd.action(action<O>(async (ctx, opts, positional) => propose(ctx, opts, positional, build)))
  return cmd
}

async function propose<O extends ProposeOptions>(ctx: Ctx, opts: O, args: string[], build: Build<O>) {
  let closesIn: number | undefined
  if (opts.closes !== undefined) {
    closesIn = parseDuration(opts.closes)
    if (closesIn === undefined)
      throw usage(`--closes: not a duration: "${opts.closes}" (use e.g. 30s, 2h, 7d)`)
  }
  const basis = opts.basis === undefined ? undefined : parseCidArg(opts.basis, '--basis')
  const client = new NodeClient(opts.node)
  const state = await client.get<StateView>('/state')
  const period = state.rules.votingPeriodMs
  // The rules of a proposal are those of its basis; they are the head's when the basis is the head.
  const onHead = basis === undefined || basis.toString() === state.head
  if (closesIn !== undefined && onHead && closesIn < period) {
    throw usage(
      `--closes ${opts.closes} is shorter than the federation's voting period (${formatDuration(period)})`,
    )
  }
  const built = await build(opts, args, state, client)
  const title = (opts.title ?? built.title).trim()
  if (title.length === 0 || Buffer.byteLength(title) > 512) throw usage('--title: 1 to 512 bytes')
  const signer = await signerOf(opts)
  const at = Date.now()
  const fields = {
    kind: 'proposal' as const,
    federation: parseCidArg(state.federation, 'federation'),
    at,
    body: {
      action: built.action,
      basis: basis ?? parseCidArg(state.head, 'head'),
      closesAt: at + (closesIn ?? period),
      title,
      ...(opts.description !== undefined ? { description: opts.description } : {}),
    },
  }
  let record: ReturnType<typeof signRecord<'proposal'>>
  try {
    record = signRecord(fields, signer)
  } catch (e) {
    throw usage(`not a valid proposal: ${(e as Error).message}`)
  }
  const answer = await submit(ctx, client, record)
  const out = {
    proposal: answer.id,
    closesAt: fields.body.closesAt,
    basis: fields.body.basis.toString(),
    status: answer.report?.status ?? 'applied',
  }
  ctx.out(out, [
    `proposal ${out.proposal}`,
    `${built.action.type}: "${title}", voting closes ${new Date(out.closesAt).toISOString()}`,
    `vote with: allmende vote ${out.proposal} yes|no|abstain`,
  ])
}

export function registerPropose(cli: Command): void {
  const p = cli
    .command('propose')
    .description('propose a decision: ratify or revoke a model version, or change the membership or rules')
  examples(p, [
    'allmende propose ratify mistral-7b-de@1.2.0',
    'allmende propose admit did:key:z6Mk… --roles voter --weight 1 --closes 14d',
    'allmende propose rules --voting-period 14d',
  ])

  proposeCommand<ProposeOptions & { manifest?: string }>(
    p,
    'ratify',
    'propose to ratify a published model version',
    ['<name@version>'],
    ['allmende propose ratify mistral-7b-de@1.2.0', 'allmende propose ratify org/model@2.0.0 --closes 14d'],
    async (opts, [ref], _state, client) => ({
      action: { type: 'ratify-model', manifest: await resolveManifest(client, ref!, opts.manifest) },
      title: `ratify ${ref}`,
    }),
    (cmd) => cmd.option('--manifest <cid>', 'the manifest to ratify when the version has rival manifests'),
  )

  proposeCommand<ProposeOptions & { manifest?: string; reason: string }>(
    p,
    'revoke',
    'propose to revoke a model version',
    ['<name@version>'],
    ['allmende propose revoke mistral-7b-de@1.2.0 --reason "training data licence withdrawn"'],
    async (opts, [ref], _state, client) => {
      const reason = opts.reason.trim()
      if (reason.length === 0) throw usage('--reason must not be empty')
      return {
        action: {
          type: 'revoke-model',
          manifest: await resolveManifest(client, ref!, opts.manifest),
          reason,
        },
        title: `revoke ${ref}`,
      }
    },
    (cmd) =>
      cmd
        .requiredOption('--reason <text>', 'why the version must be revoked')
        .option('--manifest <cid>', 'the manifest to revoke when the version has several'),
  )

  proposeCommand<ProposeOptions & { roles: string; weight: string }>(
    p,
    'admit',
    'propose to admit a member',
    ['<did>'],
    ['allmende propose admit did:key:z6Mk… --roles voter,publisher --weight 1'],
    async (opts, [did]) => {
      const member = {
        id: checkDid(did!, 'admit'),
        roles: parseRoles(opts.roles, '--roles'),
        weight: parseWeight(opts.weight, '--weight'),
      }
      return {
        action: { type: 'admit-member', member },
        title: `admit ${member.id} as ${member.roles.join(',')}`,
      }
    },
    (cmd) =>
      cmd
        .requiredOption('--roles <roles>', 'comma-separated: auditor, publisher, steward, voter')
        .option('--weight <n>', 'voting weight', '1'),
  )

  proposeCommand<ProposeOptions>(
    p,
    'remove',
    'propose to remove a member (its key can never return)',
    ['<did>'],
    ['allmende propose remove did:key:z6Mk… --title "left the consortium"'],
    async (_opts, [did], state) => {
      if (!state.members.some((m) => m.id === did)) throw usage(`${did} is not a member at the node's head`)
      return { action: { type: 'remove-member', id: did! }, title: `remove ${did}` }
    },
  )

  proposeCommand<ProposeOptions>(
    p,
    'replace-key',
    "propose to move a member's roles and weight to a new key (the old key is retired)",
    ['<did>', '<new-did>'],
    ['allmende propose replace-key did:key:z6MkOld… did:key:z6MkNew…'],
    async (_opts, [did, newDid]) => {
      if (did === newDid) throw usage('the new key must differ from the old one')
      return {
        action: { type: 'replace-key', id: did!, newId: checkDid(newDid!, 'replace-key') },
        title: `replace the key of ${did}`,
      }
    },
  )

  proposeCommand<ProposeOptions & RuleOptions>(
    p,
    'rules',
    "propose new rules: the node's current rules with the options given changed",
    [],
    [
      'allmende propose rules --voting-period 14d',
      'allmende propose rules --rule ratify-model:quorum=1/2,threshold=2/3 --require ratify-model:eval=2',
    ],
    async (opts, _args, state) => {
      const rules = applyRuleOptions(state.rules, opts)
      if (JSON.stringify(rules) === JSON.stringify(state.rules))
        throw usage('no rule changed: give at least one rule option')
      const problem = wellFormedProblem(state.members, rules)
      if (problem) throw usage(`these rules would leave an ill-formed federation: ${problem}`)
      return { action: { type: 'change-rules', rules }, title: 'change the rules' }
    },
    (cmd) => withRuleOptions(cmd, 'change'),
  )
}
