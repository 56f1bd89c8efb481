// What replicated items need from the inventory (machines, policies, process servers, master
// targets, datastores, retention volumes), read straight from their tables. The only place
// items read the inventory: when the inventory module offers lookups of its own, switch here.
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../db/schema.js';

type Db = Kysely<Database> | Transaction<Database>;

/** A machine by id or by name. */
export async function findMachine(db: Db, ref: string) {
  return (
    (await db.selectFrom('machines').selectAll().where('id', '=', ref).executeTakeFirst()) ??
    (await db.selectFrom('machines').selectAll().where('name', '=', ref).executeTakeFirst())
  );
}

/** A policy by name or by id. */
export async function findPolicy(db: Db, ref: string) {
  return (
    (await db.selectFrom('policies').selectAll().where('name', '=', ref).executeTakeFirst()) ??
    (await db.selectFrom('policies').selectAll().where('id', '=', ref).executeTakeFirst())
  );
}

export async function processServers(db: Db) {
  return db.selectFrom('process_servers').selectAll().orderBy('name').execute();
}

export async function masterTargets(db: Db) {
  return db.selectFrom('master_targets').selectAll().orderBy('name').execute();
}

export async function datastores(db: Db) {
  return db.selectFrom('datastores').selectAll().orderBy('name').execute();
}

export async function retentionVolumes(db: Db) {
  return db.selectFrom('retention_volumes').selectAll().orderBy('path').execute();
}

export async function diskCount(db: Db, machineId: string): Promise<number> {
  const r = await db
    .selectFrom('disks')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('machine_id', '=', machineId)
    .executeTakeFirst();
  return Number(r?.n ?? 0);
}

/** Disks of the machines replicated to a master target (S23: at most its max_disks). */
export async function disksAttachedTo(db: Db, masterTargetId: string): Promise<number> {
  const r = await db
    .selectFrom('disks')
    .innerJoin('items', 'items.machine_id', 'disks.machine_id')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('items.master_target_id', '=', masterTargetId)
    .executeTakeFirst();
  return Number(r?.n ?? 0);
}
