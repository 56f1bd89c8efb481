// `rebound protect`, `rebound items`, `rebound unprotect`, `rebound recovery-points`:
// replicated items. Protecting and unprotecting are jobs (`--watch` follows them).

import type { Command } from 'commander';
import { ApiRequestError } from '../control-plane/client/api-client.js';
import { adminClient } from '../control-plane/client/connection.js';
import { listAll } from '../control-plane/client/list-all.js';
import type { ItemView } from '../control-plane/items/item-view.js';
import { type JobJson, watchExitCode } from './job-format.js';
import { watchJob } from './job-watch.js';
import { formatTable, printJson, printRows } from './output.js';

const CS_CONFIG_HELP = 'configuration server connection (default /var/lib/rebound/server/cli.json)';
const enc = encodeURIComponent;

const rpo = (s: number | null) => (s === null ? null : `${Math.round(s)} s`);

function formatItem(i: ItemView, replication: unknown, jobs: JobJson[]): string {
  const lines = [
    `machine ${i.machine_name}: ${i.state}${i.state === 'initial-replication' ? ` ${Math.floor(i.progress_pct)}%` : ''}`,
    `item: ${i.id} (${i.direction})`,
    `policy: ${i.policy_name}; process server: ${i.process_server_name}; master target: ${i.master_target_name}`,
    `datastore: ${i.datastore_name ?? '-'}; retention volume: ${i.retention_volume_path ?? '-'}`,
    `RPO: ${rpo(i.rpo_seconds) ?? '-'}`,
  ];
  for (const h of i.health) lines.push(`problem ${h.code}: ${h.message}`);
  const r = replication as { appliedThrough?: number; latestCrashPoint?: { time: string } | null } | null;
  if (r) {
    lines.push(
      `replica: applied through seq ${r.appliedThrough}; latest crash-consistent point ${r.latestCrashPoint?.time ?? '-'}`,
    );
  }
  if (jobs.length) {
    lines.push('jobs:');
    for (const j of jobs) lines.push(`  ${j.id.slice(0, 8)}  ${j.kind}  ${j.state}  ${j.created_at}`);
  }
  return lines.join('\n');
}

export function registerItemCommands(program: Command): void {
  program
    .command('protect <machine>')
    .description('enable replication of a registered machine (a job: rebound jobs watch JOB)')
    .requiredOption('--policy <policy>', 'the replication policy')
    .option('--process-server <name>', 'default: the built-in one (or the only one)')
    .option('--master-target <name>', 'default: the built-in one (or the only one)')
    .option('--datastore <name>', 'on the master target (default: its only one)')
    .option('--retention-volume <path>', 'on the master target (default: its only valid one)')
    .option('--watch', 'follow the job until it ends (exit code 0 if it succeeded)')
    .option('--json', 'print JSON')
    .option('--cs-config <file>', CS_CONFIG_HELP)
    .action(async (machine: string, o) => {
      const client = await adminClient(o.csConfig);
      const r = await client.post<{ item: ItemView; job: JobJson }>('/api/v1/items', {
        machine,
        policy: o.policy,
        processServer: o.processServer,
        masterTarget: o.masterTarget,
        datastore: o.datastore,
        retentionVolume: o.retentionVolume,
      });
      if (o.json) printJson(r);
      else {
        console.log(
          `protecting machine ${r.item.machine_name}: item ${r.item.id}, job ${r.job.id} ` +
            `(follow it with 'rebound jobs watch ${r.job.id.slice(0, 8)}')`,
        );
      }
      if (o.watch) process.exitCode = watchExitCode([await watchJob(client, r.job.id)]);
    });

  const items = program
    .command('items')
    .description('replicated items (list with no subcommand)')
    .option('--json', 'print JSON')
    .option('--cs-config <file>', CS_CONFIG_HELP)
    .action(async (o) => {
      const rows = await listAll<ItemView>(
        await adminClient(o.csConfig),
        '/api/v1/items',
        (i) => i.machine_name,
      );
      printRows(
        rows,
        [
          { header: 'machine', value: (i) => i.machine_name },
          { header: 'state', value: (i) => i.state },
          { header: 'progress', value: (i) => `${Math.floor(i.progress_pct)}%` },
          { header: 'rpo', value: (i) => rpo(i.rpo_seconds) },
          { header: 'policy', value: (i) => i.policy_name },
          { header: 'process server', value: (i) => i.process_server_name },
          { header: 'master target', value: (i) => i.master_target_name },
          {
            header: 'health',
            value: (i) => (i.health.length ? i.health.map((h) => h.code).join(',') : 'ok'),
          },
          { header: 'id', value: (i) => i.id },
        ],
        Boolean(o.json),
        'no replicated items',
      );
    });

  items
    .command('show <item>')
    .description('an item (its id or its machine’s name), its live replication status and recent jobs')
    .option('--json', 'print JSON')
    .action(async (ref: string, o, cmd: Command) => {
      const parent = cmd.parent?.opts() ?? {};
      const r = await (await adminClient(parent.csConfig)).get<{
        item: ItemView;
        replication: unknown;
        jobs: JobJson[];
      }>(`/api/v1/items/${enc(ref)}`);
      if (o.json || parent.json) printJson(r);
      else console.log(formatItem(r.item, r.replication, r.jobs));
    });

  program
    .command('unprotect <item>')
    .description('disable replication: deletes the replica and undo journal at the master target (a job)')
    .option('--yes', 'confirm the deletion (without it nothing happens and what would be deleted is shown)')
    .option('--watch', 'follow the job until it ends')
    .option('--json', 'print JSON')
    .option('--cs-config <file>', CS_CONFIG_HELP)
    .action(async (ref: string, o) => {
      const client = await adminClient(o.csConfig);
      let r: { item: ItemView; job: JobJson };
      try {
        r = await client.delete(`/api/v1/items/${enc(ref)}${o.yes ? '?confirm=true' : ''}`);
      } catch (e) {
        if (e instanceof ApiRequestError && e.code === 'confirmation-required') {
          throw new ApiRequestError(e.status, e.code, `${e.message} with --yes`, e.details);
        }
        throw e;
      }
      if (o.json) printJson(r);
      else {
        console.log(
          `unprotecting machine ${r.item.machine_name}: job ${r.job.id} ` +
            `(follow it with 'rebound jobs watch ${r.job.id.slice(0, 8)}')`,
        );
      }
      if (o.watch) process.exitCode = watchExitCode([await watchJob(client, r.job.id)]);
    });

  program
    .command('recovery-points <item>')
    .description('recovery points of a replicated item (older ones thinned out unless --all)')
    .option('--all', 'list every point')
    .option('--json', 'print JSON')
    .option('--cs-config <file>', CS_CONFIG_HELP)
    .action(async (ref: string, o) => {
      const r = await (await adminClient(o.csConfig)).get<{
        machine_name: string;
        applied_through: number;
        total: number;
        points: { seq: number; time: string; kind: string; tag: string }[];
      }>(`/api/v1/items/${enc(ref)}/recovery-points${o.all ? '?all=true' : ''}`);
      if (o.json) return printJson(r);
      if (r.points.length === 0) {
        return console.log(`machine ${r.machine_name} has no recovery point yet`);
      }
      console.log(
        formatTable(r.points, [
          { header: 'point', value: (p) => p.seq },
          { header: 'time', value: (p) => p.time },
          { header: 'kind', value: (p) => p.kind },
          { header: 'tag', value: (p) => p.tag },
        ]),
      );
      if (r.points.length < r.total)
        console.log(`${r.points.length} of ${r.total} points shown; --all lists every point`);
    });
}
