// `rebound process-servers`, `rebound master-targets [set NAME ...]`: the data-plane components.
import type { Command } from 'commander';
import type { ComponentView, MasterTargetView } from '../control-plane/components/component-store.js';
import { CS_CONFIG_HELP, clientFor, formatHeartbeat, wantsJson, yesNo } from './inventory-format.js';
import { printJson, printRows } from './output.js';

export function registerComponentCommands(program: Command): void {
  program
    .command('process-servers')
    .description('process servers: built in or registered, and their last heartbeat')
    .option('--json', 'print JSON')
    .option('--cs-config <file>', CS_CONFIG_HELP)
    .action(async (_o, cmd: Command) => {
      const rows = await (await clientFor(cmd)).get<ComponentView[]>('/api/v1/process-servers');
      printRows(
        rows,
        [
          { header: 'name', value: (r) => r.name },
          { header: 'address', value: (r) => r.address },
          { header: 'built-in', value: (r) => yesNo(r.builtin) },
          {
            header: 'last heartbeat',
            value: (r) => formatHeartbeat(r.last_heartbeat_at, r.heartbeat_age_seconds),
          },
        ],
        wantsJson(cmd),
        'no process servers',
      );
    });

  const mts = program
    .command('master-targets')
    .description('master targets: attached disks against their limit, snapshots, last heartbeat')
    .option('--json', 'print JSON')
    .option('--cs-config <file>', CS_CONFIG_HELP)
    .action(async (_o, cmd: Command) => {
      const rows = await (await clientFor(cmd)).get<MasterTargetView[]>('/api/v1/master-targets');
      printRows(
        rows,
        [
          { header: 'name', value: (r) => r.name },
          { header: 'address', value: (r) => r.address },
          { header: 'built-in', value: (r) => yesNo(r.builtin) },
          { header: 'disks', value: (r) => `${r.attached_disks}/${r.max_disks}` },
          { header: 'snapshots', value: (r) => yesNo(r.has_snapshots) },
          {
            header: 'last heartbeat',
            value: (r) => formatHeartbeat(r.last_heartbeat_at, r.heartbeat_age_seconds),
          },
        ],
        wantsJson(cmd),
        'no master targets',
      );
    });

  mts
    .command('set <name>')
    .description('set a master target’s disk limit (1-60) or whether it has snapshots')
    .option('--max-disks <n>', 'at most this many disks attached (S23: 60 at most)')
    .option('--has-snapshots <yes|no>', 'whether the master target has snapshots (S23: then no reprotect)')
    .option('--json', 'print JSON')
    .action(async (name: string, o, cmd: Command) => {
      const body: { max_disks?: number; has_snapshots?: boolean } = {};
      if (o.maxDisks !== undefined) {
        const n = Number(o.maxDisks);
        if (!/^\d+$/.test(o.maxDisks)) throw new Error(`--max-disks '${o.maxDisks}' is not a whole number`);
        body.max_disks = n;
      }
      if (o.hasSnapshots !== undefined) {
        if (o.hasSnapshots !== 'yes' && o.hasSnapshots !== 'no') {
          throw new Error(`--has-snapshots '${o.hasSnapshots}' is not yes or no`);
        }
        body.has_snapshots = o.hasSnapshots === 'yes';
      }
      const mt = await (await clientFor(cmd)).patch<MasterTargetView>(
        `/api/v1/master-targets/${encodeURIComponent(name)}`,
        body,
      );
      if (wantsJson(cmd)) printJson(mt);
      else
        console.log(
          `master target ${mt.name}: ${mt.attached_disks}/${mt.max_disks} disks, snapshots ${yesNo(mt.has_snapshots)}`,
        );
    });
}
