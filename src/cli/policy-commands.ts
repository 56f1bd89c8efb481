// `rebound policies [create|update|delete|show]`: replication policies (S14) and their
// failback policies (S15). Values are checked by the server, which names the field and range.
import type { Command } from 'commander';
import type { PolicyView } from '../control-plane/policies/policy-store.js';
import { CS_CONFIG_HELP, clientFor, wantsJson } from './inventory-format.js';
import { printJson, printRows } from './output.js';

const VALUE_OPTIONS: [flag: string, field: string, help: string][] = [
  [
    '--rpo-threshold-minutes <n>',
    'rpo_threshold_minutes',
    'RPO above this raises an alert (1-1440, default 15)',
  ],
  ['--retention-hours <n>', 'retention_hours', 'recovery point retention (1-720, default 24)'],
  [
    '--app-consistent-minutes <n>',
    'app_consistent_minutes',
    'app-consistent frequency (0 = off, max 720, default 60)',
  ],
  [
    '--crash-consistent-minutes <n>',
    'crash_consistent_minutes',
    'crash-consistent frequency (1-60, default 5)',
  ],
  ['--ack-mode <mode>', 'ack_mode', 'async (default), process-server or sync'],
];

function withValueOptions(cmd: Command): Command {
  for (const [flag, , help] of VALUE_OPTIONS) cmd.option(flag, help);
  return cmd.option('--json', 'print JSON');
}

/** The values given, as the API names them; numbers sent as numbers, anything else as typed. */
function valuesOf(o: Record<string, string | undefined>): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const [flag, field] of VALUE_OPTIONS) {
    const key = flag
      .slice(2)
      .split(' ')[0]
      .replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
    const v = o[key];
    if (v === undefined) continue;
    body[field] = field !== 'ack_mode' && /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
  }
  return body;
}

function describe(p: PolicyView): string {
  const app = p.app_consistent_minutes === 0 ? 'off' : `every ${p.app_consistent_minutes} min`;
  return (
    `policy ${p.name}: RPO threshold ${p.rpo_threshold_minutes} min, retention ${p.retention_hours} h, ` +
    `app-consistent ${app}, crash-consistent every ${p.crash_consistent_minutes} min, ack ${p.ack_mode}` +
    (p.failback_policy ? `; failback policy ${p.failback_policy}` : '') +
    (p.failback_of ? `; failback policy of ${p.failback_of} (not editable)` : '')
  );
}

export function registerPolicyCommands(program: Command): void {
  const policies = program
    .command('policies')
    .description('replication policies and their failback policies (list with no subcommand)')
    .option('--json', 'print JSON')
    .option('--cs-config <file>', CS_CONFIG_HELP)
    .action(async (_o, cmd: Command) => {
      const rows = await (await clientFor(cmd)).get<PolicyView[]>('/api/v1/policies');
      printRows(
        rows,
        [
          { header: 'name', value: (p) => p.name },
          { header: 'rpo threshold', value: (p) => `${p.rpo_threshold_minutes} min` },
          { header: 'retention', value: (p) => `${p.retention_hours} h` },
          {
            header: 'app-consistent',
            value: (p) => (p.app_consistent_minutes === 0 ? 'off' : `${p.app_consistent_minutes} min`),
          },
          { header: 'crash-consistent', value: (p) => `${p.crash_consistent_minutes} min` },
          { header: 'ack', value: (p) => p.ack_mode },
          {
            header: 'failback',
            value: (p) => (p.failback_of ? `policy of ${p.failback_of}` : p.failback_policy),
          },
        ],
        wantsJson(cmd),
        'no policies',
      );
    });

  withValueOptions(
    policies.command('create <name>').description('create a policy and its failback policy NAME-failback'),
  ).action(async (name: string, o, cmd: Command) => {
    const p = await (await clientFor(cmd)).post<PolicyView>('/api/v1/policies', { name, ...valuesOf(o) });
    if (wantsJson(cmd)) printJson(p);
    else console.log(describe(p));
  });

  withValueOptions(policies.command('update <name>').description('change values of a policy')).action(
    async (name: string, o, cmd: Command) => {
      const p = await (await clientFor(cmd)).patch<PolicyView>(
        `/api/v1/policies/${encodeURIComponent(name)}`,
        valuesOf(o),
      );
      if (wantsJson(cmd)) printJson(p);
      else console.log(describe(p));
    },
  );

  policies
    .command('show <name>')
    .description('show one policy')
    .option('--json', 'print JSON')
    .action(async (name: string, _o, cmd: Command) => {
      const p = await (await clientFor(cmd)).get<PolicyView>(`/api/v1/policies/${encodeURIComponent(name)}`);
      if (wantsJson(cmd)) printJson(p);
      else console.log(describe(p));
    });

  policies
    .command('delete <name>')
    .description('delete a policy and its failback policy (refused while a replicated item uses either)')
    .action(async (name: string, _o, cmd: Command) => {
      await (await clientFor(cmd)).delete(`/api/v1/policies/${encodeURIComponent(name)}`);
      console.log(`policy ${name} and its failback policy deleted`);
    });
}
