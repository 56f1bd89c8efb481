// `rebound alerts [--all]`: open alerts (every alert with --all), newest first.
import type { Command } from 'commander';
import { adminClient } from '../control-plane/client/connection.js';
import type { Alert } from '../control-plane/db/schema.js';
import { printRows } from './output.js';

export function registerAlertCommands(program: Command): void {
  program
    .command('alerts')
    .description('open alerts, newest first (heartbeat-missing, disk-id-collision, ...)')
    .option('--all', 'cleared alerts too')
    .option('--json', 'print JSON')
    .option(
      '--cs-config <file>',
      'configuration server connection (default /var/lib/rebound/server/cli.json)',
    )
    .action(async (o) => {
      const rows = await (await adminClient(o.csConfig)).get<Alert[]>(
        `/api/v1/alerts${o.all ? '?all=true' : ''}`,
      );
      printRows(
        rows,
        [
          { header: 'severity', value: (a) => a.severity },
          { header: 'kind', value: (a) => a.kind },
          { header: 'raised', value: (a) => a.raised_at },
          ...(o.all ? [{ header: 'cleared', value: (a: Alert) => a.cleared_at }] : []),
          { header: 'message', value: (a) => a.message },
        ],
        Boolean(o.json),
        o.all ? 'no alerts' : 'no open alerts',
      );
    });
}
