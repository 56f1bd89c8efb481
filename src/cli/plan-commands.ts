// `rebound plans ...`: recovery plans. A plan is written as JSON:
//   { "groups": [ { "name": "db", "machines": ["db1", "db2"], "pre": "...", "post": "...",
//                   "manual": ["check the replica set"] }, ... ] }
// and run with `rebound failover --plan NAME` (and test-failover, commit, reprotect, failback).
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { adminClient } from '../control-plane/client/connection.js';
import type { PlanView } from '../control-plane/recovery/plan-store.js';
import { printJson, printRows } from './output.js';

const CS_CONFIG_HELP = 'configuration server connection (default /var/lib/rebound/server/cli.json)';
const enc = encodeURIComponent;

export function readJsonFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} ${path} is not JSON: ${(e as Error).message}`);
  }
}

export function registerPlanCommands(program: Command): void {
  const plans = program
    .command('plans')
    .description('recovery plans (list with no subcommand)')
    .option('--json', 'print JSON')
    .option('--cs-config <file>', CS_CONFIG_HELP)
    .action(async (o) => {
      const rows = await (await adminClient(o.csConfig)).get<PlanView[]>('/api/v1/plans');
      printRows(
        rows,
        [
          { header: 'name', value: (p) => p.name },
          {
            header: 'groups',
            value: (p) =>
              p.groups.map((g) => `${g.name}(${g.machines.map((m) => m.name).join(',')})`).join(' '),
          },
        ],
        Boolean(o.json),
        'no recovery plans',
      );
    });
  const client = (cmd: Command) => adminClient(cmd.parent?.opts().csConfig);
  const json = (o: { json?: boolean }, cmd: Command) => Boolean(o.json || cmd.parent?.opts().json);

  plans
    .command('create <name>')
    .description(
      'create a plan from a JSON file: {"groups": [{"name", "machines", "pre", "post", "manual"}]}',
    )
    .requiredOption('--file <file>', 'the plan as JSON')
    .option('--json', 'print JSON')
    .action(async (name: string, o, cmd: Command) => {
      const spec = readJsonFile(o.file, 'plan file') as { groups?: unknown };
      const p = await (await client(cmd)).post<PlanView>('/api/v1/plans', { name, groups: spec.groups });
      if (json(o, cmd)) printJson(p);
      else console.log(`recovery plan ${p.name}: ${p.groups.map((g) => g.name).join(' -> ')}`);
    });

  plans
    .command('show <name>')
    .option('--json', 'print JSON')
    .action(async (name: string, o, cmd: Command) => {
      const p = await (await client(cmd)).get<PlanView>(`/api/v1/plans/${enc(name)}`);
      if (json(o, cmd)) return printJson(p);
      console.log(`recovery plan ${p.name} (id ${p.id})`);
      p.groups.forEach((g, i) => {
        console.log(`${i + 1}. ${g.name}`);
        if (g.pre) console.log(`   pre:  ${g.pre}`);
        for (const m of g.machines)
          console.log(`   ${m.name}  ${m.state}${m.group ? `  (replication group ${m.group})` : ''}`);
        if (g.post) console.log(`   post: ${g.post}`);
        for (const a of g.manual) console.log(`   manual: ${a}`);
      });
    });

  plans.command('delete <name>').action(async (name: string, _o, cmd: Command) => {
    await (await client(cmd)).delete(`/api/v1/plans/${enc(name)}`);
    console.log(`recovery plan ${name} deleted`);
  });
}
