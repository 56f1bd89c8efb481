// `rebound test-failover|cleanup-test-failover|failover|commit|reprotect|failback ITEM`: the
// recovery cycle of a replicated item. Each is a job (`--watch` follows it; the exit code
// says how it ended); a refusal exits non-zero with the server's reason and changes nothing.
import type { Command } from 'commander';
import { adminClient } from '../control-plane/client/connection.js';
import type { ItemView } from '../control-plane/items/item-view.js';
import { type JobJson, watchExitCode } from './job-format.js';
import { watchJob } from './job-watch.js';
import { printJson } from './output.js';

const CS_CONFIG_HELP = 'configuration server connection (default /var/lib/rebound/server/cli.json)';
const enc = encodeURIComponent;

interface Action {
  name: string;
  description: string;
  route: string;
  options?: (c: Command) => Command;
  body?: (o: Record<string, string | boolean | undefined>) => Record<string, unknown> | undefined;
}

const ACTIONS: Action[] = [
  {
    name: 'test-failover',
    description:
      'boot the machine at the recovery site on an isolated network from a point; replication goes on',
    route: 'test-failover',
    options: (c) =>
      c
        .option('--point <point>', 'latest | latest-app | a point id | an ISO time (default latest)')
        .option('--site <site>', 'the recovery site (default: the only other site)'),
    body: (o) => ({ point: o.point, site: o.site }),
  },
  {
    name: 'cleanup-test-failover',
    description: 'remove the test machine and its scratch data',
    route: 'cleanup-test-failover',
  },
  {
    name: 'failover',
    description:
      'bring the machine up at the recovery site: --planned (shut down, drained, nothing lost) or from a point',
    route: 'failover',
    options: (c) =>
      c
        .option('--planned', 'shut the source down and drain replication first (no data loss)')
        .option(
          '--point <point>',
          'latest | latest-processed | latest-app | a point id | an ISO time (default latest)',
        )
        .option('--site <site>', 'the recovery site (default: the only other site)'),
    body: (o) => ({ planned: o.planned === true ? true : undefined, point: o.point, site: o.site }),
  },
  { name: 'commit', description: 'make a failover final (its recovery points go)', route: 'commit' },
  {
    name: 'reprotect',
    description: 'replicate the failed-over (or failed-back) machine the other way, with the failback policy',
    route: 'reprotect',
    options: (c) =>
      c
        .option('--master-target <name>', 'default: the built-in one')
        .option('--process-server <name>', 'default: the built-in one')
        .option('--datastore <name>', 'required: new disks go there if the target disks are gone')
        .option('--retention-volume <path>', 'on the master target'),
    body: (o) => ({
      masterTarget: o.masterTarget,
      processServer: o.processServer,
      datastore: o.datastore,
      retentionVolume: o.retentionVolume,
    }),
  },
  {
    name: 'failback',
    description:
      'shut the recovered machine down, drain, and boot the original machine on the same data (S27)',
    route: 'failback',
  },
];

export function registerRecoveryCommands(program: Command): void {
  for (const a of ACTIONS) {
    let c = program.command(`${a.name} <item>`).description(`${a.description} (a job)`);
    c = a.options?.(c) ?? c;
    c.option('--watch', 'follow the job until it ends (exit code 0 if it succeeded)')
      .option('--json', 'print JSON')
      .option('--cs-config <file>', CS_CONFIG_HELP)
      .action(async (item: string, o) => {
        const client = await adminClient(o.csConfig);
        const body = JSON.parse(JSON.stringify(a.body?.(o) ?? {}));
        const r = await client.post<{ item: ItemView; job: JobJson }>(
          `/api/v1/items/${enc(item)}/${a.route}`,
          body,
        );
        if (o.json) printJson(r);
        else {
          console.log(
            `${a.name} of ${r.item.machine_name}: job ${r.job.id} (follow it with 'rebound jobs watch ${r.job.id.slice(0, 8)}')`,
          );
        }
        if (o.watch) process.exitCode = watchExitCode([await watchJob(client, r.job.id)]);
      });
  }
}
