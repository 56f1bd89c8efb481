// `rebound test-failover|cleanup-test-failover|failover|commit|reprotect|failback ITEM|--plan PLAN`:
// the recovery cycle of a replicated item, or of every machine of a recovery plan. Each is a job (`--watch` follows it; the exit code
// says how it ended); a refusal exits non-zero with the server's reason and changes nothing.
import type { Command } from 'commander';
import { adminClient } from '../control-plane/client/connection.js';
import type { ItemView } from '../control-plane/items/item-view.js';
import type { PlanView } from '../control-plane/recovery/plan-store.js';
import { type JobJson, watchExitCode } from './job-format.js';
import { watchJob } from './job-watch.js';
import { printJson } from './output.js';
import { readJsonFile } from './plan-commands.js';

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
    let c = program.command(`${a.name} [item]`).description(`${a.description} (a job)`);
    c = a.options?.(c) ?? c;
    c.option('--plan <plan>', 'every machine of this recovery plan, group by group (instead of an item)');
    if (a.name === 'reprotect') {
      c.option(
        '--values <file>',
        'with --plan: JSON of every machine\'s values, {"NAME": {"datastore": ...}}',
      );
    }
    c.option('--watch', 'follow the job until it ends (exit code 0 if it succeeded)')
      .option('--json', 'print JSON')
      .option('--cs-config <file>', CS_CONFIG_HELP)
      .action(async (item: string | undefined, o) => {
        if ((item === undefined) === (o.plan === undefined)) {
          throw new Error(`${a.name}: name an item or --plan PLAN (one of them)`);
        }
        const client = await adminClient(o.csConfig);
        let body = JSON.parse(JSON.stringify(a.body?.(o) ?? {}));
        let r: { job: JobJson; what: string; raw: unknown };
        if (o.plan !== undefined) {
          if (a.name === 'reprotect') {
            if (!o.values)
              throw new Error(
                'reprotect --plan needs --values FILE: the values of every machine of the plan',
              );
            body = { machines: readJsonFile(o.values, 'values file') };
          }
          const x = await client.post<{ plan: PlanView; job: JobJson }>(
            `/api/v1/plans/${enc(o.plan)}/${a.route}`,
            body,
          );
          r = { job: x.job, what: `plan ${x.plan.name}`, raw: x };
        } else {
          const x = await client.post<{ item: ItemView; job: JobJson }>(
            `/api/v1/items/${enc(item!)}/${a.route}`,
            body,
          );
          r = { job: x.job, what: x.item.machine_name, raw: x };
        }
        if (o.json) printJson(r.raw);
        else {
          console.log(
            `${a.name} of ${r.what}: job ${r.job.id} (follow it with 'rebound jobs watch ${r.job.id.slice(0, 8)}')`,
          );
        }
        if (o.watch) process.exitCode = watchExitCode([await watchJob(client, r.job.id)]);
      });
  }
}
