// Direct access to a running configuration server's database, for rows that other parts of
// the server write (replicated items, registered master targets) before those parts exist in
// a test. Reads and checks go through the API; only such setup goes here.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { type OpenDatabase, openDatabase } from '../../src/control-plane/db/database.js';
import type { RunningConfigServer } from './config-server.js';

/** The database a server started by startConfigServer uses (its --db, or the default SQLite file). */
export function databaseOf(cs: RunningConfigServer): string {
  const args = cs.child.spawnargs;
  const i = args.indexOf('--db');
  return i >= 0 ? args[i + 1] : `sqlite:${join(cs.dataDir, 'rebound.db')}`;
}

export async function openServerDatabase(cs: RunningConfigServer): Promise<OpenDatabase> {
  return openDatabase(databaseOf(cs));
}

/** A machine with disks, replicated under a policy to the built-in components. Returns the item id. */
export async function seedItem(
  open: OpenDatabase,
  opts: { machine: string; disks: number; policy: string; masterTarget?: string },
): Promise<string> {
  const { db } = open;
  const now = new Date().toISOString();
  const policy = await db
    .selectFrom('policies')
    .select('id')
    .where('name', '=', opts.policy)
    .executeTakeFirstOrThrow();
  const ps = await db
    .selectFrom('process_servers')
    .select('id')
    .where('builtin', '=', 1)
    .executeTakeFirstOrThrow();
  const mt = await db
    .selectFrom('master_targets')
    .select('id')
    .where('name', '=', opts.masterTarget ?? 'builtin-mt')
    .executeTakeFirstOrThrow();
  const machineId = randomUUID();
  await db
    .insertInto('machines')
    .values({ id: machineId, name: opts.machine, site_id: null, os_type: 'linux', created_at: now })
    .execute();
  for (let i = 0; i < opts.disks; i++) {
    await db
      .insertInto('disks')
      .values({
        id: randomUUID(),
        machine_id: machineId,
        name: `disk${i}`,
        size_bytes: 2 ** 30,
        created_at: now,
      })
      .execute();
  }
  const id = randomUUID();
  await db
    .insertInto('items')
    .values({
      id,
      machine_id: machineId,
      policy_id: policy.id,
      process_server_id: ps.id,
      master_target_id: mt.id,
      state: 'protected',
      progress_pct: 100,
      health_json: '[]',
      direction: 'forward',
      created_at: now,
      updated_at: now,
    })
    .execute();
  return id;
}

/** A master target as registration would record it (not built in). */
export async function seedMasterTarget(open: OpenDatabase, name: string): Promise<void> {
  await open.db
    .insertInto('master_targets')
    .values({
      id: randomUUID(),
      name,
      address: '192.0.2.10:9860',
      builtin: 0,
      registered_at: new Date().toISOString(),
      max_disks: 60,
      has_snapshots: 0,
    })
    .execute();
}
