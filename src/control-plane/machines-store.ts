// Machines and their disks in the database: the rules every writer (registration, heartbeats,
// the machines API) shares. A disk's id is unique across the deployment (S23): a disk id that
// already belongs to another machine is refused, naming both machines.
import type { Kysely } from 'kysely';
import { badRequest, conflict } from './api/errors.js';
import type { Database, Machine } from './db/schema.js';
import type { ReportedDisk } from './registration/protocol.js';

type Db = Kysely<Database>;

export async function machineByName(db: Db, name: string): Promise<Machine | undefined> {
  return db.selectFrom('machines').selectAll().where('name', '=', name).executeTakeFirst();
}

export async function machineOfAgent(db: Db, agentName: string): Promise<Machine | undefined> {
  return db.selectFrom('machines').selectAll().where('agent_name', '=', agentName).executeTakeFirst();
}

/** Refuses a report that names one disk twice. */
function checkReport(machine: string, disks: readonly ReportedDisk[]): void {
  const ids = new Set<string>();
  const names = new Set<string>();
  for (const d of disks) {
    if (ids.has(d.id)) throw badRequest(`machine '${machine}' reports disk id ${d.id} twice`);
    if (names.has(d.name)) throw badRequest(`machine '${machine}' reports disk name '${d.name}' twice`);
    ids.add(d.id);
    names.add(d.name);
  }
}

/** Throws 409 when any of the disks' ids belongs to another machine. */
export async function checkDiskIds(
  db: Db,
  machine: { id: string; name: string },
  disks: readonly ReportedDisk[],
): Promise<void> {
  checkReport(machine.name, disks);
  if (disks.length === 0) return;
  const taken = await db
    .selectFrom('disks')
    .innerJoin('machines', 'machines.id', 'disks.machine_id')
    .select(['disks.id as id', 'disks.name as disk', 'machines.name as machine'])
    .where(
      'disks.id',
      'in',
      disks.map((d) => d.id),
    )
    .where('disks.machine_id', '!=', machine.id)
    .orderBy('disks.id')
    .executeTakeFirst();
  if (taken) {
    const mine = disks.find((d) => d.id === taken.id)!;
    throw conflict(
      `disk id ${taken.id} of disk '${mine.name}' of machine '${machine.name}' already belongs to disk ` +
        `'${taken.disk}' of machine '${taken.machine}': disk ids must be unique across the deployment ` +
        '(machines cloned from one template share them: give the clone a fresh agent data dir)',
      { diskId: taken.id, machine: machine.name, otherMachine: taken.machine },
    );
  }
}

/**
 * Makes the machine's disk rows exactly the reported list (new disks added, sizes and paths
 * updated, disks no longer reported removed). Run inside the caller's transaction.
 */
export async function syncDisks(
  db: Db,
  machine: { id: string; name: string },
  disks: readonly ReportedDisk[],
  now: string,
): Promise<void> {
  await checkDiskIds(db, machine, disks);
  const rows = await db
    .selectFrom('disks')
    .select(['id', 'name', 'size_bytes', 'path'])
    .where('machine_id', '=', machine.id)
    .execute();
  const stale = rows.filter((r) => !disks.some((d) => d.id === r.id && d.name === r.name)).map((r) => r.id);
  if (stale.length > 0) await db.deleteFrom('disks').where('id', 'in', stale).execute();
  for (const d of disks) {
    const known = rows.find((r) => r.id === d.id && r.name === d.name);
    // Heartbeats repeat the same disks: write only what changed (a commit per heartbeat is
    // what limits a server with a thousand agents).
    if (known && known.size_bytes === d.sizeBytes && known.path === (d.path ?? null)) continue;
    if (known) {
      await db
        .updateTable('disks')
        .set({ size_bytes: d.sizeBytes, path: d.path ?? null })
        .where('id', '=', d.id)
        .execute();
    } else {
      await db
        .insertInto('disks')
        .values({
          id: d.id,
          machine_id: machine.id,
          name: d.name,
          size_bytes: d.sizeBytes,
          path: d.path ?? null,
          created_at: now,
        })
        .execute();
    }
  }
}
