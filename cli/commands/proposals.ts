/** `allmende proposals [--open]` and `allmende proposal show ID`. */
import type { Command } from 'commander'
import { NodeClient, withNode } from '../client.js'
import { action, examples } from '../context.js'
import { formatDuration } from '../durations.js'
import { parseCidArg } from '../records.js'

export interface ProposalJson {
  id: string
  title: string
  author: string
  at: number
  closesAt: number
  basis: string
  action: { type: string; [k: string]: unknown }
  governance: boolean
  status: string
  reason?: { code: string; message: string }
  tally: { yes: number; no: number; abstain: number }
  eligible: number
  quorumNeeded?: number
  quorumMet?: boolean
  cast: number
  outcome?: string
  weightsVerified?: boolean
  decidedBy?: string
  equivocators: string[]
  confirmed: boolean
  timeLeftMs: number
  sealDeadline?: number
  countedVotes?: string[]
}

/** Rows as aligned columns. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()
  return [line(header), ...rows.map(line)]
}

function tallyText(p: ProposalJson): string {
  return `${p.tally.yes}/${p.tally.no}/${p.tally.abstain}`
}

function actionText(a: ProposalJson['action']): string {
  switch (a.type) {
    case 'admit-member':
      return `admit ${(a.member as { id: string }).id}`
    case 'remove-member':
      return `remove ${a.id as string}`
    case 'replace-key':
      return `replace-key ${a.id as string} → ${a.newId as string}`
    case 'ratify-model':
    case 'revoke-model':
      return `${a.type} ${a.manifest as string}`
    default:
      return a.type
  }
}

export function registerProposals(cli: Command): void {
  const list = withNode(
    cli
      .command('proposals')
      .description('list proposals, newest first (a table; JSON with --json)')
      .option('--open', 'only those still open for votes'),
  )
  examples(list, ['allmende proposals --open', 'allmende --json proposals'])
  list.action(
    action<{ node?: string; open?: boolean }>(async (ctx, opts) => {
      const client = new NodeClient(opts.node)
      const { proposals } = await client.get<{ proposals: ProposalJson[] }>(
        `/proposals${opts.open ? '?open' : ''}`,
      )
      const rows = proposals.map((p) => [
        p.id,
        p.status,
        p.action.type,
        tallyText(p),
        p.status === 'open' ? formatDuration(p.timeLeftMs) : '-',
        p.title,
      ])
      ctx.out(
        { proposals },
        proposals.length === 0
          ? opts.open
            ? 'no open proposals'
            : 'no proposals'
          : table(['ID', 'STATUS', 'ACTION', 'YES/NO/ABST', 'CLOSES IN', 'TITLE'], rows),
      )
    }),
  )

  const proposal = cli.command('proposal').description('look at one proposal')
  examples(proposal, ['allmende proposal show bafyrei…'])
  const show = withNode(
    proposal
      .command('show')
      .description(
        'a proposal: its action, the tally so far, the quorum needed, time left, seals and outcome',
      )
      .argument('<id>', 'the proposal id'),
  )
  examples(show, ['allmende proposal show bafyrei…', 'allmende --json proposal show bafyrei…'])
  show.action(
    action<{ node?: string }>(async (ctx, opts, [id]) => {
      const cid = parseCidArg(id!, 'proposal')
      const p = await new NodeClient(opts.node).get<ProposalJson>(`/proposals/${cid}`)
      const lines = [
        `proposal  ${p.id}`,
        `title     ${p.title}`,
        `action    ${actionText(p.action)}`,
        `author    ${p.author}`,
        `status    ${p.status}${p.reason ? ` (${p.reason.code}: ${p.reason.message})` : ''}`,
        `tally     yes ${p.tally.yes}, no ${p.tally.no}, abstain ${p.tally.abstain} (${p.cast} of ${p.eligible} eligible weight)`,
      ]
      if (p.quorumNeeded !== undefined)
        lines.push(`quorum    ${p.quorumNeeded} needed, ${p.quorumMet ? 'met' : 'not met yet'}`)
      lines.push(
        p.status === 'open'
          ? `closes    ${new Date(p.closesAt).toISOString()} (in ${formatDuration(p.timeLeftMs)})`
          : `closed    ${new Date(p.closesAt).toISOString()}`,
      )
      if (p.status === 'closed-awaiting-seals' && p.sealDeadline !== undefined)
        lines.push(`seals     awaited from the stewards until ${new Date(p.sealDeadline).toISOString()}`)
      if (p.outcome)
        lines.push(
          `outcome   ${p.outcome}${p.decidedBy ? ` (sealed by ${p.decidedBy})` : ''}${p.confirmed ? ', confirmed by a checkpoint' : ''}`,
        )
      if (p.weightsVerified !== undefined)
        lines.push(`weights   ${p.weightsVerified ? 'verified' : 'NOT verified'}`)
      if (p.equivocators.length > 0) lines.push(`equivocating stewards: ${p.equivocators.join(', ')}`)
      ctx.out(p, lines)
    }),
  )
}
