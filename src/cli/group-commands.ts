// `rebound groups ...`: replication groups (machines that share recovery points and fail over
// at one of them) and their common points.
import type { Command } from 'commander';
import { adminClient } from '../control-plane/client/connection.js';
import type { GroupView } from '../control-plane/recovery/groups.js';
import { printJson, printRows } from './output.js';

const CS_CONFIG_HELP = 'configuration server connection (default /var/lib/rebound/server/cli.json)';
const enc = encodeURIComponent;

interface GroupPointJson {
  id: string;
  kind: string;
  taken_at: string;
  seqs: Record<string, number>;
}

const seqsText = (p: GroupPointJson) =>
  Object.entries(p.seqs)
    .map(([m, s]) => `${m}@${s}`)
    .join(' ');

export function registerGroupCommands(program: Command): void {
  const groups = program
    .command('groups')
    .description('replication groups (list with no subcommand)')
    .option('--json', 'print JSON')
    .option('--cs-config <file>', CS_CONFIG_HELP)
    .action(async (o) => {
      const rows = await (await adminClient(o.csConfig)).get<GroupView[]>('/api/v1/groups');
      printRows(
        rows,
        [
          { header: 'name', value: (g) => g.name },
          { header: 'machines', value: (g) => g.machines.map((m) => m.name).join(',') },
          {
            header: 'latest point',
            value: (g) => (g.latest_point ? `${g.latest_point.taken_at} (${g.latest_point.kind})` : '-'),
          },
        ],
        Boolean(o.json),
        'no replication groups',
      );
    });
  const client = (cmd: Command) => adminClient(cmd.parent?.opts().csConfig);
  const json = (o: { json?: boolean }, cmd: Command) => Boolean(o.json || cmd.parent?.opts().json);

  groups
    .command('create <name>')
    .description('group replicated machines: one OS type, one master target (S20)')
    .requiredOption('--machines <list>', 'comma-separated machine names')
    .option('--json', 'print JSON')
    .action(async (name: string, o, cmd: Command) => {
      const g = await (await client(cmd)).post<GroupView>('/api/v1/groups', {
        name,
        machines: String(o.machines)
          .split(',')
          .map((m) => m.trim())
          .filter(Boolean),
      });
      if (json(o, cmd)) printJson(g);
      else console.log(`replication group ${g.name}: ${g.machines.map((m) => m.name).join(', ')}`);
    });

  groups
    .command('show <name>')
    .option('--json', 'print JSON')
    .action(async (name: string, o, cmd: Command) => {
      const g = await (await client(cmd)).get<GroupView>(`/api/v1/groups/${enc(name)}`);
      if (json(o, cmd)) return printJson(g);
      console.log(`replication group ${g.name} (id ${g.id})`);
      for (const m of g.machines) console.log(`  ${m.name}  ${m.state}`);
      console.log(
        `latest common point: ${g.latest_point ? `${g.latest_point.taken_at} (${g.latest_point.kind})` : '-'}`,
      );
    });

  groups
    .command('delete <name>')
    .description('ungroup: the machines go on replicating, each on its own')
    .action(async (name: string, _o, cmd: Command) => {
      await (await client(cmd)).delete(`/api/v1/groups/${enc(name)}`);
      console.log(`replication group ${name} deleted`);
    });

  groups
    .command('point <name>')
    .description('take a common recovery point of the group now')
    .option('--app', 'app-consistent: every machine frozen (QEMU guest agent); default crash-consistent')
    .option('--json', 'print JSON')
    .action(async (name: string, o, cmd: Command) => {
      const p = await (await client(cmd)).post<GroupPointJson>(`/api/v1/groups/${enc(name)}/points`, {
        kind: o.app ? 'app' : 'crash',
      });
      if (json(o, cmd)) printJson(p);
      else console.log(`${p.kind}-consistent point ${p.taken_at}: ${seqsText(p)}`);
    });

  groups
    .command('points <name>')
    .description("the group's common recovery points, newest first")
    .option('--json', 'print JSON')
    .action(async (name: string, o, cmd: Command) => {
      const rows = await (await client(cmd)).get<GroupPointJson[]>(`/api/v1/groups/${enc(name)}/points`);
      printRows(
        rows,
        [
          { header: 'taken at', value: (p) => p.taken_at },
          { header: 'kind', value: (p) => p.kind },
          { header: 'machine@seq', value: seqsText },
        ],
        json(o, cmd),
        'no common points yet',
      );
    });
}
