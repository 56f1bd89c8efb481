// `rebound sites ...`: the sites machines live in.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { adminClient } from '../control-plane/client/connection.js';
import type { Site } from '../control-plane/db/schema.js';
import { printJson, printRows } from './output.js';

export function registerSiteCommands(program: Command): void {
  const sites = program
    .command('sites')
    .description('sites (list with no subcommand)')
    .option('--json', 'print JSON')
    .option(
      '--cs-config <file>',
      'configuration server connection (default /var/lib/rebound/server/cli.json)',
    )
    .action(async (o) => {
      const rows = await (await adminClient(o.csConfig)).get<Site[]>('/api/v1/sites');
      printRows(
        rows,
        [
          { header: 'name', value: (s) => s.name },
          { header: 'adapter', value: (s) => s.adapter },
          { header: 'id', value: (s) => s.id },
        ],
        Boolean(o.json),
        'no sites',
      );
    });

  sites
    .command('add <name>')
    .description('add a site')
    .requiredOption('--adapter <kind>', 'site adapter: qemu or physical')
    .option('--dir <dir>', 'where the site keeps its machines (default: in the server data dir)')
    .option('--json', 'print JSON')
    .action(async (name: string, o, cmd: Command) => {
      const parent = cmd.parent?.opts() ?? {};
      const site = await (await adminClient(parent.csConfig)).post<Site>('/api/v1/sites', {
        name,
        adapter: o.adapter,
        ...(o.dir ? { dir: resolve(o.dir) } : {}),
      });
      if (o.json || parent.json) printJson(site);
      else console.log(`site ${site.name} added (${site.adapter}, id ${site.id})`);
    });

  sites
    .command('remove <name>')
    .description('remove a site that holds no machines')
    .action(async (name: string, _o, cmd: Command) => {
      const parent = cmd.parent?.opts() ?? {};
      await (await adminClient(parent.csConfig)).delete(`/api/v1/sites/${encodeURIComponent(name)}`);
      console.log(`site ${name} removed`);
    });
}
