// `rebound datastores [add|remove|refresh]`, `rebound retention-volumes [add|remove|refresh]`:
// where master targets put replica disks and keep recovery points (S24).
import type { Command } from 'commander';
import type { DatastoreView, RetentionVolumeView } from '../control-plane/storage/storage-store.js';
import { formatSize } from '../util/size.js';
import { DEFAULT_RETENTION_PATH } from '../volumes/retention-rules.js';
import { CS_CONFIG_HELP, clientFor, wantsJson, yesNo } from './inventory-format.js';
import { printJson, printRows } from './output.js';

const size = (n: number) => formatSize(n);

function printDatastores(rows: DatastoreView[], json: boolean): void {
  printRows(
    rows,
    [
      { header: 'master target', value: (r) => r.master_target },
      { header: 'name', value: (r) => r.name },
      { header: 'path', value: (r) => r.path },
      { header: 'fs', value: (r) => r.fs_type },
      { header: 'free', value: (r) => size(r.free_bytes) },
      { header: 'capacity', value: (r) => size(r.capacity_bytes) },
      { header: 'problem', value: (r) => r.problem },
    ],
    json,
    'no datastores',
  );
}

function printRetentionVolumes(rows: RetentionVolumeView[], json: boolean): void {
  printRows(
    rows,
    [
      { header: 'master target', value: (r) => r.master_target },
      { header: 'path', value: (r) => r.path },
      { header: 'fs', value: (r) => r.fs_type },
      { header: 'mount point', value: (r) => r.mount_point },
      { header: 'free', value: (r) => size(r.free_bytes) },
      { header: 'capacity', value: (r) => size(r.capacity_bytes) },
      { header: 'valid', value: (r) => yesNo(r.valid) },
      { header: 'reason', value: (r) => r.invalid_reason },
    ],
    json,
    'no retention volumes',
  );
}

/** POST /storage/refresh, then say which master targets report their own volumes. */
async function refresh(cmd: Command): Promise<void> {
  const r = await (await clientFor(cmd)).post<{ probed: string[]; remote: string[] }>(
    '/api/v1/storage/refresh',
  );
  if (!wantsJson(cmd) && r.remote.length) {
    console.error(`master targets that probe and report their own volumes: ${r.remote.join(', ')}`);
  }
}

export function registerStorageCommands(program: Command): void {
  const ds = program
    .command('datastores')
    .description('datastores of master targets (list with no subcommand)')
    .option('--json', 'print JSON')
    .option('--cs-config <file>', CS_CONFIG_HELP)
    .action(async (_o, cmd: Command) => {
      printDatastores(
        await (await clientFor(cmd)).get<DatastoreView[]>('/api/v1/datastores'),
        wantsJson(cmd),
      );
    });

  ds.command('add <name> <path>')
    .description('add a datastore (a directory for replica disks) to a master target')
    .option('--master-target <name>', 'the master target (default: the built-in one)')
    .option('--json', 'print JSON')
    .action(async (name: string, path: string, o, cmd: Command) => {
      const d = await (await clientFor(cmd)).post<DatastoreView>('/api/v1/datastores', {
        name,
        path,
        ...(o.masterTarget ? { master_target: o.masterTarget } : {}),
      });
      if (wantsJson(cmd)) printJson(d);
      else
        console.log(
          `datastore ${d.name} added to ${d.master_target}: ${d.path}` +
            (d.problem ? ` (NOT usable: ${d.problem})` : ` (${d.fs_type}, ${size(d.free_bytes)} free)`),
        );
    });

  ds.command('remove <master-target> <name>')
    .description('remove a datastore no replicated item uses')
    .action(async (mt: string, name: string, _o, cmd: Command) => {
      await (await clientFor(cmd)).delete(
        `/api/v1/datastores/${encodeURIComponent(mt)}/${encodeURIComponent(name)}`,
      );
      console.log(`datastore ${name} of ${mt} removed`);
    });

  ds.command('refresh')
    .description('probe the datastores now (otherwise every 15 minutes) and list them')
    .option('--json', 'print JSON')
    .action(async (_o, cmd: Command) => {
      await refresh(cmd);
      printDatastores(
        await (await clientFor(cmd)).get<DatastoreView[]>('/api/v1/datastores'),
        wantsJson(cmd),
      );
    });

  const rv = program
    .command('retention-volumes')
    .description('retention volumes of master targets, validated per S24 (list with no subcommand)')
    .option('--json', 'print JSON')
    .option('--cs-config <file>', CS_CONFIG_HELP)
    .action(async (_o, cmd: Command) => {
      printRetentionVolumes(
        await (await clientFor(cmd)).get<RetentionVolumeView[]>('/api/v1/retention-volumes'),
        wantsJson(cmd),
      );
    });

  rv.command('add [path]')
    .description(`add a retention volume to a master target (default path ${DEFAULT_RETENTION_PATH})`)
    .option('--master-target <name>', 'the master target (default: the built-in one)')
    .option('--json', 'print JSON')
    .action(async (path: string | undefined, o, cmd: Command) => {
      const v = await (await clientFor(cmd)).post<RetentionVolumeView>('/api/v1/retention-volumes', {
        ...(path ? { path } : {}),
        ...(o.masterTarget ? { master_target: o.masterTarget } : {}),
      });
      if (wantsJson(cmd)) printJson(v);
      else if (v.valid)
        console.log(
          `retention volume ${v.path} added to ${v.master_target}: valid (${v.fs_type}, ${size(v.free_bytes)} free)`,
        );
      else
        console.log(`retention volume ${v.path} added to ${v.master_target}: NOT valid: ${v.invalid_reason}`);
    });

  rv.command('remove <master-target> <path>')
    .description('remove a retention volume no replicated item uses')
    .action(async (mt: string, path: string, _o, cmd: Command) => {
      await (await clientFor(cmd)).delete(
        `/api/v1/retention-volumes/${encodeURIComponent(mt)}?path=${encodeURIComponent(path)}`,
      );
      console.log(`retention volume ${path} of ${mt} removed`);
    });

  rv.command('refresh')
    .description('probe the retention volumes now (otherwise every 15 minutes) and list them')
    .option('--json', 'print JSON')
    .action(async (_o, cmd: Command) => {
      await refresh(cmd);
      printRetentionVolumes(
        await (await clientFor(cmd)).get<RetentionVolumeView[]>('/api/v1/retention-volumes'),
        wantsJson(cmd),
      );
    });
}
