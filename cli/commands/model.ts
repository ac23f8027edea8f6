/**
 * `allmende model list | show N@V`. `model publish` lives with the weights code
 * and is added to the command returned here.
 */
import type { Command } from 'commander'
import { NodeClient, withNode } from '../client.js'
import { action, CliError, examples } from '../context.js'
import { getModel } from '../records.js'
import { fetchManifest } from '../verify-online.js'
import { registerModelHolders } from './model-holders.js'
import { table } from './proposals.js'
import { registerPublish } from './publish.js'

/** How far `model show` follows `base` links (a chain longer than this is cut, not an error). */
const MAX_LINEAGE = 16

interface ModelListEntry {
  key: string
  status: string
  manifests: string[]
  manifest?: string
  decision?: string
}

export function registerModel(cli: Command): Command {
  const model = cli.command('model').description('model versions: list, show (and publish)')
  examples(model, ['allmende model list', 'allmende model show mistral-7b-de@1.2.0'])

  const list = withNode(
    model.command('list').description('every model version the node knows, with its status'),
  )
  examples(list, ['allmende model list', 'allmende --json model list'])
  list.action(
    action<{ node?: string }>(async (ctx, opts) => {
      const { models } = await new NodeClient(opts.node).get<{ models: ModelListEntry[] }>('/models')
      const sorted = [...models].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      const out = sorted.map((m) => {
        const at = m.key.lastIndexOf('@')
        return {
          name: m.key.slice(0, at),
          version: m.key.slice(at + 1),
          status: m.status,
          manifest: m.manifest ?? null,
          proposal: m.decision ?? null,
          manifests: m.manifests,
        }
      })
      ctx.out(
        { models: out },
        out.length === 0
          ? 'no models'
          : table(
              ['MODEL', 'STATUS', 'MANIFEST'],
              out.map((m) => [`${m.name}@${m.version}`, m.status, m.manifest ?? m.manifests.join(',')]),
            ),
      )
    }),
  )

  const show = withNode(
    model
      .command('show')
      .description('the status of a model version: ratified, conflicted, revoked or proposed')
      .argument('<name@version>')
      .option('--ratified', 'exit 1 unless the version is ratified (for scripts)'),
  )
  examples(show, [
    'allmende model show mistral-7b-de@1.2.0',
    'allmende --json model show org/model@2.0.0 --ratified',
  ])
  show.action(
    action<{ node?: string; ratified?: boolean }>(async (ctx, opts, [ref]) => {
      const client = new NodeClient(opts.node)
      const m = await getModel(client, ref!)
      // Whether a counted checkpoint covers the decision: until it does, the status is the node's
      // word and no certificate can prove it (`certificate export` refuses, `verify` fails).
      const confirmed = m.proposal
        ? await client
            .get<{ confirmed?: unknown }>(`/proposals/${encodeURIComponent(m.proposal)}`)
            .then((p) => p.confirmed === true)
            .catch(() => false)
        : null
      // The manifest's facts (signature checked) and its lineage: the chain of `base` versions.
      const id = m.manifest ?? (m.manifests.length === 1 ? m.manifests[0]!.id : undefined)
      const body = id === undefined ? undefined : await fetchManifest(client, id)
      const lineage: string[] = []
      for (let base = body?.base, seen = new Set<string>(); base && lineage.length < MAX_LINEAGE; ) {
        const key = base.toString()
        if (seen.has(key)) break
        seen.add(key)
        const parent = await fetchManifest(client, key).catch(() => undefined)
        lineage.push(parent ? `${parent.name}@${parent.version}` : key)
        base = parent?.base
      }
      const details = body && {
        weights: body.weights.toString(),
        files: body.files.length,
        size: body.size,
        format: body.format,
        ...(body.parameters !== undefined ? { parameters: body.parameters } : {}),
        license: body.license,
        languages: body.languages,
        ...(body.card ? { card: body.card.toString() } : {}),
        ...(body.description !== undefined ? { description: body.description } : {}),
      }
      const out = {
        name: m.name,
        version: m.version,
        status: m.status,
        manifest: m.manifest,
        proposal: m.proposal,
        confirmed,
        manifests: m.manifests,
        ...(details ? { details } : {}),
        lineage,
      }
      ctx.out(out, [
        `${m.name}@${m.version}  ${m.status}${confirmed === false ? ' (final, not yet confirmed by a checkpoint: no certificate yet)' : ''}`,
        ...(m.manifest ? [`manifest  ${m.manifest}`] : []),
        ...(m.proposal ? [`${m.status === 'revoked' ? 'revoked by' : 'ratified by'}  ${m.proposal}`] : []),
        ...(m.manifest ? [] : m.manifests.map((x) => `manifest  ${x.id} (${x.status})`)),
        ...(details
          ? [
              `weights   ${details.weights} (${details.files} files, ${details.size} bytes, ${details.format})`,
              `license   ${details.license}; languages ${details.languages.join(', ')}`,
              ...(details.parameters !== undefined ? [`params    ${details.parameters}`] : []),
              ...(details.card ? [`card      ${details.card} (GET /ipfs/${details.card} on any node)`] : []),
            ]
          : []),
        ...(lineage.length > 0 ? [`lineage   ${[`${m.name}@${m.version}`, ...lineage].join(' ← ')}`] : []),
      ])
      if (opts.ratified && m.status !== 'ratified')
        throw new CliError('not-ratified', `${m.name}@${m.version} is ${m.status}, not ratified`)
    }),
  )
  registerPublish(model)
  registerModelHolders(model)
  return model
}
