// `rebound machines ...`: the machines agents registered, with their disks.

import type { Command } from 'commander';
import { adminClient } from '../control-plane/client/connection.js';
import { listAll } from '../control-plane/client/list-all.js';
import { formatTable, printJson, printRows } from './output.js';

interface DiskView {
  id: string;
  name: string;
  size_bytes: number;
  path: string | null;
}

interface MachineView {
  id: string;
  name: string;
  site: string | null;
  os_type: string;
  agent_name: string | null;
  address: string | null;
  registered_at: string | null;
  last_heartbeat_at: string | null;
  disks: DiskView[];
}

const CS_CONFIG = [
  '--cs-config <file>',
  'configuration server connection (default /var/lib/rebound/server/cli.json)',
] as const;

export function registerMachineCommands(program: Command): void {
  const machines = program
    .command('machines')
    .description('machines (list with no subcommand)')
    .option('--json', 'print JSON')
    .option(...CS_CONFIG)
    .action(async (o) => {
      const rows = await listAll<MachineView>(
        await adminClient(o.csConfig),
        '/api/v1/machines',
        (m) => m.name,
      );
      printRows(
        rows,
        [
          { header: 'name', value: (m) => m.name },
          { header: 'os', value: (m) => m.os_type },
          { header: 'site', value: (m) => m.site },
          { header: 'disks', value: (m) => m.disks.length },
          { header: 'last heartbeat', value: (m) => m.last_heartbeat_at },
          { header: 'id', value: (m) => m.id },
        ],
        Boolean(o.json),
        'no machines',
      );
    });

  machines
    .command('show <name>')
    .description('one machine and its disks')
    .option('--json', 'print JSON')
    .action(async (name: string, o, cmd: Command) => {
      const parent = cmd.parent?.opts() ?? {};
      const m = await (await adminClient(parent.csConfig)).get<MachineView>(
        `/api/v1/machines/${encodeURIComponent(name)}`,
      );
      if (o.json || parent.json) return printJson(m);
      const lines = [
        `machine ${m.name} (id ${m.id})`,
        `  os: ${m.os_type}   site: ${m.site ?? '-'}   agent: ${m.agent_name ?? '-'}   address: ${m.address ?? '-'}`,
        `  registered: ${m.registered_at ?? '-'}   last heartbeat: ${m.last_heartbeat_at ?? '-'}`,
      ];
      console.log(lines.join('\n'));
      if (m.disks.length === 0) console.log('  no disks reported');
      else
        console.log(
          formatTable(m.disks, [
            { header: 'disk', value: (d) => d.name },
            { header: 'size', value: (d) => d.size_bytes },
            { header: 'path', value: (d) => d.path },
            { header: 'id', value: (d) => d.id },
          ])
            .split('\n')
            .map((l) => `  ${l}`)
            .join('\n'),
        );
    });

  machines
    .command('remove <name>')
    .description('forget a machine that is not replicated (its agent must register again)')
    .action(async (name: string, _o, cmd: Command) => {
      const parent = cmd.parent?.opts() ?? {};
      await (await adminClient(parent.csConfig)).delete(`/api/v1/machines/${encodeURIComponent(name)}`);
      console.log(`machine ${name} removed`);
    });
}
